// Quantization codecs and dot-product kernels: round-trip error per dtype, every ISA's tile
// against the scalar reference tile (normalized error ||a - b|| / ||b||), activation
// quantizers byte-exact across ISAs, fp16/bf16 edge cases, and fixed quantizer outputs.
// Bit-compatibility with llama.cpp's gguf-py is checked by tests/oracle/check_quants.py.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "aha/kernels.h"
#include "check.h"

using namespace aha;

namespace {

const DType kFileTypes[] = {DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                            DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};
const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                              DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// The optimized ISAs this machine runs (the others are skipped; quant_isas_here says which).
std::vector<Isa> isas_here() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx, Isa::Neon})
    if (isa_supported(i)) out.push_back(i);
  return out;
}

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, int64_t k) {
  const size_t rb = row_bytes(t, k);
  std::vector<uint8_t> q(rb * (x.size() / size_t(k)));
  for (size_t r = 0; r < x.size() / size_t(k); r++) quantize_row(t, x.data() + r * size_t(k), q.data() + r * rb, k);
  return q;
}

uint16_t h(float f) { return f32_to_fp16(f); }
float bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Exactly representable inputs (multiples of 1/256 in [-4, 4)), the same in tests/oracle/check_quants.py.
std::vector<float> lcg_input(size_t n) {
  std::vector<float> x(n);
  uint32_t s = 12345;
  for (auto& v : x) {
    s = s * 1664525u + 1013904223u;
    v = float(int((s >> 8) % 2048) - 1024) / 256.0f;
  }
  return x;
}

uint64_t fnv1a(const std::vector<uint8_t>& b) {
  uint64_t hsh = 1469598103934665603ull;
  for (uint8_t c : b) hsh = (hsh ^ c) * 1099511628211ull;
  return hsh;
}

}  // namespace

// Which kernel sets the tests below run here, and which they skip because this CPU (or OS) lacks them.
TEST(quant_isas_here) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx, Isa::Neon})
    std::printf("     %-10s %s\n", isa_name(i), isa_supported(i) ? "tested" : "SKIPPED: not supported by this CPU/OS");
  CHECK(isa_supported(Isa::Scalar) && isa_supported(best_isa()));
}

// dequantize(quantize(x)) of Gaussian rows: rmse / rms(x) below a bound per dtype, about 1.2x
// what the codec gives (bits per weight in parentheses).
TEST(quant_roundtrip_error) {
  struct Bound {
    DType t;
    double rel_rmse;
  };
  const Bound bounds[] = {
      {DType::F16, 2.5e-4},  // 16: 11-bit significand
      {DType::BF16, 2e-3},   // 16: 8-bit significand
      {DType::Q8_0, 6.5e-3},  // 8.5
      {DType::Q8_K, 8.5e-3},  // 9.1 (activation dtype: 256-value blocks)
      {DType::Q6_K, 2.1e-2},  // 6.6
      {DType::Q5_1, 4.5e-2}, {DType::Q5_0, 5.2e-2}, {DType::Q5_K, 4.3e-2},  // 6, 5.5, 5.5
      {DType::Q4_1, 9.2e-2}, {DType::Q4_0, 0.1}, {DType::Q4_K, 8.5e-2},     // 5, 4.5, 4.5
  };
  std::mt19937 rng(1);
  const int64_t k = 1024;
  const std::vector<float> x = randn(size_t(k) * 16, rng, 0.7f);
  double sx = 0;
  for (float v : x) sx += double(v) * v;
  double rel[sizeof(bounds) / sizeof(bounds[0])];
  for (const Bound& b : bounds) {
    const std::vector<uint8_t> q = quantize(b.t, x, k);
    std::vector<float> y(x.size());
    for (size_t r = 0; r < 16; r++) dequantize_row(b.t, q.data() + r * row_bytes(b.t, k), y.data() + r * size_t(k), k);
    double se = 0;
    for (size_t i = 0; i < x.size(); i++) se += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    rel[&b - bounds] = std::sqrt(se / sx);
    check::note(std::string(dtype_name(b.t)) + ": rmse/rms " + std::to_string(rel[&b - bounds]));
  }
  for (const Bound& b : bounds)
    CHECK_MSG(rel[&b - bounds] < b.rel_rmse, dtype_name(b.t) << ": rmse/rms " << rel[&b - bounds] << " >= " << b.rel_rmse);
}

// Blocks that are all zero, constant, or with a tiny or huge range stay finite and close.
TEST(quant_roundtrip_edge_blocks) {
  for (DType t : kFileTypes) {
    const int64_t k = 256;
    for (float scale : {0.0f, 1e-30f, 1e-6f, 1.0f, 3e4f}) {
      std::vector<float> x(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; i++) x[size_t(i)] = scale * (i % 3 == 0 ? 1.0f : (i % 3 == 1 ? -0.5f : 0.25f));
      std::vector<uint8_t> q(row_bytes(t, k));
      quantize_row(t, x.data(), q.data(), k);
      std::vector<float> y(static_cast<size_t>(k));
      dequantize_row(t, q.data(), y.data(), k);
      for (int64_t i = 0; i < k; i++) {
        CHECK_MSG(std::isfinite(y[size_t(i)]), dtype_name(t) << " scale " << scale << ": y[" << i << "] = " << y[size_t(i)]);
        // Within 0.15 of the block's largest magnitude (q4's 4-bit grid is the coarsest), plus
        // 1e-6 for fp16 scales, whose subnormals step by 6e-8 (times up to 31 quant levels).
        CHECK_MSG(std::fabs(y[size_t(i)] - x[size_t(i)]) <= scale * 0.15f + 1e-6f,
                  dtype_name(t) << " scale " << scale << ": x " << x[size_t(i)] << " -> " << y[size_t(i)]);
      }
    }
  }
}

// Every ISA's tile against the scalar reference tile, on the same quantized activations, over
// odd shapes and strides wider than a row; the reference against the dequantized math. The
// sizes cross every kernel's blocking: micro-tiles of up to 8 rows, AMX's 16-row tiles in pairs
// (and its hand-off to the VNNI tiles below 8 activation rows).
TEST(quant_tiles_match_reference) {
  std::mt19937 rng(7);
  const int sizes[] = {1, 2, 3, 5, 7, 8, 16, 33, 70};
  for (DType wt : kWeightTypes) {
    const WeightKernel* ref = weight_kernel(wt, Isa::Scalar);
    CHECK_MSG(ref, "no reference kernel for " << dtype_name(wt));
    const int64_t blk = traits(wt).block;
    std::vector<int64_t> ks;
    if (blk == 1) ks = {1, 7, 16, 33, 100};
    else if (blk == 32) ks = {32, 96, 288};
    else ks = {256, 768};
    for (int64_t k : ks) {
      const int nmax = 70;
      const size_t ws = row_bytes(wt, k) + 13;  // odd padding: rows start unaligned
      const std::vector<float> wf = randn(size_t(k) * nmax, rng, 0.5f);
      // Sized to end with the last row, so a sanitizer build catches reads past it.
      std::vector<uint8_t> w(ws * (nmax - 1) + row_bytes(wt, k));
      for (int r = 0; r < nmax; r++) quantize_row(wt, wf.data() + size_t(r) * size_t(k), w.data() + size_t(r) * ws, k);
      const size_t as = row_bytes(ref->act, k) + 5;
      std::vector<float> af = randn(size_t(k) * nmax, rng, 2.0f);
      std::vector<uint8_t> a(as * (nmax - 1) + row_bytes(ref->act, k));
      for (int r = 0; r < nmax; r++) quantize_act(ref->act, af.data() + size_t(r) * size_t(k), a.data() + size_t(r) * as, k, Isa::Scalar);

      // The reference tile against double-precision dot products of the dequantized rows.
      {
        std::vector<float> wd(size_t(k) * nmax), ad(size_t(k) * nmax);
        for (int r = 0; r < nmax; r++) {
          dequantize_row(wt, w.data() + size_t(r) * ws, wd.data() + size_t(r) * size_t(k), k);
          dequantize_row(ref->act, a.data() + size_t(r) * as, ad.data() + size_t(r) * size_t(k), k);
        }
        std::vector<float> y(size_t(nmax) * nmax), yd(size_t(nmax) * nmax);
        ref->tile(k, w.data(), ws, nmax, a.data(), as, nmax, y.data(), size_t(nmax));
        for (int i = 0; i < nmax; i++)
          for (int j = 0; j < nmax; j++) {
            double s = 0;
            for (int64_t e = 0; e < k; e++) s += double(ad[size_t(i) * size_t(k) + size_t(e)]) * wd[size_t(j) * size_t(k) + size_t(e)];
            yd[size_t(i) * nmax + size_t(j)] = float(s);
          }
        const double e = nerr(y.data(), yd.data(), y.size());
        CHECK_MSG(e < 1e-5, dtype_name(wt) << " k " << k << ": reference tile vs dequantized math, error " << e);
      }

      for (Isa isa : isas_here()) {
        const WeightKernel* kern = weight_kernel(wt, isa);
        CHECK_MSG(kern && kern->act == ref->act, dtype_name(wt) << " on " << isa_name(isa));
        double worst = 0;
        for (int nw : sizes)
          for (int na : sizes) {
            const size_t ys = size_t(nw) + 3;
            std::vector<float> y(ys * size_t(na), -1.0f), yr(ys * size_t(na), -1.0f);
            ref->tile(k, w.data(), ws, nw, a.data(), as, na, yr.data(), ys);
            kern->tile(k, w.data(), ws, nw, a.data(), as, na, y.data(), ys);
            for (int i = 0; i < na; i++)
              for (size_t j = size_t(nw); j < ys; j++)
                CHECK_MSG(y[size_t(i) * ys + j] == -1.0f, dtype_name(wt) << " " << isa_name(isa) << ": wrote outside the tile");
            const double e = nerr(y.data(), yr.data(), y.size());
            worst = std::max(worst, e);
            CHECK_MSG(e < 1e-5, dtype_name(wt) << " " << isa_name(isa) << " k " << k << " nw " << nw << " na " << na << ": error " << e);
          }
        char buf[128];
        std::snprintf(buf, sizeof buf, "%s %s k %lld: worst error %.2e", dtype_name(wt), isa_name(isa), (long long)k, worst);
        check::note(buf);
      }
    }
  }
}

// The activation quantizers of every ISA produce the scalar quantizer's bytes.
TEST(quant_act_bytes_match_reference) {
  std::mt19937 rng(3);
  for (DType act : {DType::Q8_0, DType::Q8_K}) {
    const int64_t k = 2048;
    std::vector<float> x = randn(size_t(k), rng, 3.0f);
    for (int64_t i = 0; i < 256; i++) x[size_t(i)] = 0.0f;  // an all-zero block
    x[300] = -9.5f;                                            // a negative extreme sets the sign
    x[310] = 9.5f;
    for (int64_t i = 512; i < 768; i++) x[size_t(i)] = float(i % 9) - 4.0f;  // ties at .5 after scaling
    const size_t rb = row_bytes(act, k);
    std::vector<uint8_t> ref(rb);
    quantize_act(act, x.data(), ref.data(), k, Isa::Scalar);
    for (Isa isa : isas_here()) {
      std::vector<uint8_t> got(rb, 0xAB);
      quantize_act(act, x.data(), got.data(), k, isa);
      CHECK_MSG(got == ref, dtype_name(act) << " on " << isa_name(isa) << " differs from the scalar quantizer");
    }
  }
}

TEST(quant_fp16_edge_cases) {
  CHECK(h(0.0f) == 0x0000);
  CHECK(h(-0.0f) == 0x8000);
  CHECK(h(1.0f) == 0x3c00);
  CHECK(h(-2.0f) == 0xc000);
  CHECK(h(65504.0f) == 0x7bff);                                  // largest finite
  CHECK(h(65519.996f) == 0x7bff);                                // below the rounding midpoint
  CHECK(h(65520.0f) == 0x7c00);                                  // midpoint rounds (to even) to inf
  CHECK(h(1e10f) == 0x7c00);
  CHECK(h(-INFINITY) == 0xfc00);
  CHECK((h(NAN) & 0x7c00) == 0x7c00 && (h(NAN) & 0x03ff) != 0);  // stays a nan
  CHECK(h(bits(0x7f800001)) == 0x7e00);                          // signalling nan comes out quiet
  CHECK(h(std::ldexp(1.0f, -14)) == 0x0400);                     // smallest normal
  CHECK(h(std::ldexp(1.0f, -24)) == 0x0001);                     // smallest subnormal
  CHECK(h(std::ldexp(1.0f, -25)) == 0x0000);                     // tie between 0 and 2^-24: to even
  CHECK(h(std::ldexp(1.0f, -25) * 1.0001f) == 0x0001);
  CHECK(h(std::ldexp(3.0f, -25)) == 0x0002);                     // tie 1.5 subnormal steps: to even (2)
  CHECK(h(std::ldexp(1023.0f, -24)) == 0x03ff);                  // largest subnormal
  CHECK(h(std::ldexp(2047.0f, -25)) == 0x0400);                  // rounds up into the normals
  CHECK(h(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);              // tie: to even
  CHECK(h(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);              // tie: to even (up)
  CHECK(h(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
  CHECK(h(std::ldexp(1.0f, -140)) == 0x0000);                    // f32 subnormal
  // Every half converts to f32 and back to itself (nans stay nans).
  for (uint32_t v = 0; v < 65536; v++) {
    const float f = fp16_to_f32(uint16_t(v));
    if ((v & 0x7c00) == 0x7c00 && (v & 0x3ff)) {
      CHECK(std::isnan(f));
      continue;
    }
    CHECK_MSG(f32_to_fp16(f) == v, "half " << v << " -> " << f << " -> " << f32_to_fp16(f));
  }
  CHECK(fp16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_f32(0x8400) == -std::ldexp(1.0f, -14));
  CHECK(std::isinf(fp16_to_f32(0x7c00)));
}

TEST(quant_bf16_edge_cases) {
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(-0.0f) == 0x8000);
  CHECK(f32_to_bf16(bits(0x3f808000)) == 0x3f80);  // tie: to even (down)
  CHECK(f32_to_bf16(bits(0x3f818000)) == 0x3f82);  // tie: to even (up)
  CHECK(f32_to_bf16(bits(0x3f808001)) == 0x3f81);
  CHECK(f32_to_bf16(bits(0x7f7fffff)) == 0x7f80);  // largest f32 rounds to inf
  CHECK(f32_to_bf16(INFINITY) == 0x7f80);
  CHECK(f32_to_bf16(bits(0x7f800001)) == 0x7fc0);  // signalling nan comes out quiet
  CHECK(f32_to_bf16(bits(0xffc00000)) == 0xffc0);
  CHECK(f32_to_bf16(bits(0x00000001)) == 0x0000);  // f32 subnormals round like any value
  CHECK(f32_to_bf16(bits(0x00018000)) == 0x0002);
  for (uint32_t v = 0; v < 65536; v++) {
    const float f = bf16_to_f32(uint16_t(v));
    if (std::isnan(f)) continue;
    CHECK(f32_to_bf16(f) == v);
    CHECK(fbits(f) == v << 16);
  }
}

// float8_e4m3fn, every code, against values written out by hand from the format (1 sign, 4
// exponent bits with bias 7, 3 mantissa bits, no infinities, S.1111.111 NaN): the extremes, the
// subnormals, and that the code order is the value order.
TEST(quant_e4m3_every_code) {
  CHECK(e4m3_to_f32(0x00) == 0.0f && std::signbit(e4m3_to_f32(0x80)));
  CHECK(e4m3_to_f32(0x01) == 0.001953125f);   // smallest subnormal: 2^-9
  CHECK(e4m3_to_f32(0x07) == 0.013671875f);   // largest subnormal: 7/8 · 2^-6
  CHECK(e4m3_to_f32(0x08) == 0.015625f);      // smallest normal: 2^-6
  CHECK(e4m3_to_f32(0x38) == 1.0f);
  CHECK(e4m3_to_f32(0x3C) == 1.5f);
  CHECK(e4m3_to_f32(0x7E) == 448.0f);         // largest finite
  CHECK(e4m3_to_f32(0xFE) == -448.0f);
  CHECK(std::isnan(e4m3_to_f32(0x7F)) && std::isnan(e4m3_to_f32(0xFF)));
  for (int b = 1; b < 0x7F; b++) {
    CHECK(e4m3_to_f32(uint8_t(b)) > e4m3_to_f32(uint8_t(b - 1)));
    CHECK(e4m3_to_f32(uint8_t(b | 0x80)) == -e4m3_to_f32(uint8_t(b)));
  }
  // An FP8_B128 row: each 128-block's codes times its scale.
  std::vector<uint8_t> row(2 * 132);
  const float s0 = 0.5f, s1 = -3.0f;
  std::memcpy(row.data(), &s0, 4);
  std::memcpy(row.data() + 132, &s1, 4);
  for (int j = 0; j < 128; j++) row[size_t(4 + j)] = uint8_t(j), row[size_t(136 + j)] = uint8_t(0x80 | (j % 0x7F));
  std::vector<float> out(256);
  dequantize_row(DType::FP8_B128, row.data(), out.data(), 256);
  for (int j = 0; j < 128; j++) {
    CHECK(out[size_t(j)] == e4m3_to_f32(uint8_t(j)) * s0 || (j == 0x7F && std::isnan(out[size_t(j)])));
    CHECK(out[size_t(128 + j)] == e4m3_to_f32(uint8_t(0x80 | (j % 0x7F))) * s1);
  }
  CHECK(row_bytes(DType::FP8_B128, 256) == 264);
}

TEST(quant_dtype_table) {
  DType t;
  CHECK(dtype_from_name("q4_K", &t) && t == DType::Q4_K);
  CHECK(dtype_from_name("Q8_0", &t) && t == DType::Q8_0);
  CHECK(dtype_from_name("BF16", &t) && t == DType::BF16);
  CHECK(!dtype_from_name("q4_k_m", &t));
  CHECK(!dtype_traits(10));  // q2_K: no codec here
  CHECK(row_bytes(DType::Q4_K, 512) == 288);
  CHECK(row_bytes(DType::Q5_1, 64) == 48);
  CHECK(row_bytes(DType::BF16, 3) == 6);
  CHECK_THROWS(row_bytes(DType::Q4_0, 33), "not a whole number");
  for (DType d : kFileTypes) CHECK(can_quantize(d) && std::string(dtype_name(d)) == traits(d).name);
}

// Fixed inputs quantize to fixed bytes, the same on every call. The legacy dtypes' hashes are
// what gguf-py's quantizers give for this input (see tests/oracle/check_quants.py); the
// K-quants' are this port of llama.cpp's reference quantizers, pinned against drift.
TEST(quant_known_bytes) {
  const int64_t k = 512;
  const std::vector<float> x = lcg_input(size_t(k) * 2);
  struct Known {
    DType t;
    uint64_t hash;
  };
  const Known known[] = {
      {DType::F16, 0xe3fd0c6506ced7edull},  {DType::BF16, 0xaa3d279ba3dae217ull}, {DType::Q4_0, 0xead56dfa0971fe66ull},
      {DType::Q4_1, 0x198995cd7431b64dull}, {DType::Q5_0, 0xc2588c6ee42fff7dull}, {DType::Q5_1, 0x0c99cd77cdb95100ull},
      {DType::Q8_0, 0x8cab3a2323257846ull}, {DType::Q4_K, 0x38028a931f44d82aull}, {DType::Q5_K, 0xc2a64c3e96bb2ac8ull}, {DType::Q6_K, 0x217565cdbfd5f978ull},
      {DType::Q8_K, 0x380abadab1fe7fb5ull},
  };
  std::string wrong;
  for (const Known& kn : known) {
    const std::vector<uint8_t> q1 = quantize(kn.t, x, k), q2 = quantize(kn.t, x, k);
    CHECK_MSG(q1 == q2, dtype_name(kn.t) << ": quantize_row is not deterministic");
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%016llx", (unsigned long long)fnv1a(q1));
    check::note(std::string(dtype_name(kn.t)) + ": " + buf);
    if (fnv1a(q1) != kn.hash) wrong += std::string(" ") + dtype_name(kn.t);
  }
  CHECK_MSG(wrong.empty(), "bytes differ from the known ones for" << wrong);
  // A q4_0 block spelled out: the largest magnitude (-2) gets d = -2 / -8 = 0.25 and quant 0.
  std::vector<float> b(32);
  for (int i = 0; i < 32; i++) b[size_t(i)] = float(i - 8) * 0.0625f;  // -0.5 .. 1.4375
  b[5] = -2.0f;
  std::vector<uint8_t> q(18);
  quantize_row(DType::Q4_0, b.data(), q.data(), 32);
  const uint8_t expect[18] = {0x00, 0x34, 0xA6, 0xA6, 0xB7, 0xB7, 0xB7, 0xB0, 0xC8,
                              0xC8, 0xC8, 0xC8, 0xD9, 0xD9, 0xD9, 0xD9, 0xEA, 0xEA};  // gguf-py's bytes
  CHECK_MSG(std::memcmp(q.data(), expect, 18) == 0, "q4_0 block bytes");
}
