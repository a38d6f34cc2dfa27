// The op harness: every optimized CPU op on every ISA this machine runs, against the scalar
// reference, over odd and even shapes, scored by normalized error ||a - b|| / ||b||.
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "aha/kernels.h"
#include "aha/model.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"
#include "check.h"

using namespace aha;

namespace {

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

}  // namespace

TEST(ops_elementwise_match_reference) {
  std::mt19937 rng(7);
  for (Isa isa : isas_here()) {
    const CpuOps& ops = cpu_ops(isa);
    for (int64_t n : {1, 7, 16, 33, 64, 1000, 1536}) {
      auto x = randn(size_t(n), rng, 3.0f), w = randn(size_t(n), rng), u = randn(size_t(n), rng);
      std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      ops.rmsnorm(a.data(), x.data(), w.data(), n, 1e-6f);
      ref::rmsnorm(b.data(), x.data(), w.data(), n, 1e-6f);
      CHECK_MSG(nerr(a, b) < 1e-6, isa_name(isa) << " rmsnorm n=" << n << " err " << nerr(a, b));
      ops.swiglu(a.data(), x.data(), u.data(), n);
      ref::swiglu(b.data(), x.data(), u.data(), n);
      CHECK_MSG(nerr(a, b) < 1e-6, isa_name(isa) << " swiglu n=" << n << " err " << nerr(a, b));
      a = x;
      b = x;
      ops.add(a.data(), w.data(), n);
      ref::add(b.data(), w.data(), n);
      CHECK(a == b);
    }
  }
}

TEST(ops_swiglu_extreme_inputs) {
  for (Isa isa : isas_here()) {
    std::vector<float> g = {-100.0f, -30.0f, -5.0f, 0.0f, 5.0f, 30.0f, 100.0f, 88.0f, -88.0f, 1e-20f, -1e-20f, 3.0f, -3.0f, 0.5f, 2.0f, 10.0f};
    std::vector<float> u(g.size(), 1.0f), a(g.size()), b(g.size());
    cpu_ops(isa).swiglu(a.data(), g.data(), u.data(), int64_t(g.size()));
    ref::swiglu(b.data(), g.data(), u.data(), int64_t(g.size()));
    for (size_t i = 0; i < g.size(); i++) CHECK_MSG(std::fabs(a[i] - b[i]) <= 1e-6f * (1 + std::fabs(b[i])), isa_name(isa) << " g=" << g[i] << " " << a[i] << " vs " << b[i]);
  }
}

// A paged K/V cache with scattered blocks for attention tests: K and V of n_blocks × bs slots
// of hd values, stored as `kv`.
struct TestCache {
  int64_t bs, n_blocks;
  int hd;
  DType kv;
  std::vector<uint8_t> K, V;
  std::vector<int32_t> blocks;
  bool tiled;
  // tiled: K in the 16-slot tile layout (AttentionArgs::tiled; bf16, bs a multiple of 16).
  TestCache(int64_t n_ctx, int hd_, DType kv_, std::mt19937& rng, int64_t bs_ = 16, bool tiled_ = false)
      : bs(bs_), n_blocks((n_ctx + bs_ - 1) / bs_ + 3), hd(hd_), kv(kv_), tiled(tiled_) {
    const size_t slot = size_t(hd) * kv_elem_bytes(kv);
    K.resize(size_t(n_blocks * bs) * slot);
    V.resize(K.size());
    auto kf = randn(size_t(n_blocks * bs * hd), rng), vf = randn(size_t(n_blocks * bs * hd), rng);
    if (tiled) {
      for (int64_t b = 0; b < n_blocks; b++)
        for (int64_t s = 0; s < bs; s++)
          for (int64_t i = 0; i < hd; i++)
            kv_store(K.data() + size_t(b * bs) * slot + kv_tiled_offset(s, i, hd),
                     &kf[size_t((b * bs + s) * hd + i)], 1, kv);
    } else {
      kv_store(K.data(), kf.data(), int64_t(kf.size()), kv);
    }
    kv_store(V.data(), vf.data(), int64_t(vf.size()), kv);
    for (int64_t b = 0; b < (n_ctx + bs - 1) / bs; b++) blocks.push_back(int32_t((b * 5 + 2) % n_blocks));  // scattered
  }
  size_t slot() const { return size_t(hd) * kv_elem_bytes(kv); }
  // MLA's absorbed shape (V = the first vd values of the K slot) over [begin, end), with the lse.
  void attend_range(const CpuOps& ops, const float* q, int group, int vd, int64_t begin, int64_t end, std::vector<float>& out,
                    std::vector<float>& lse) const {
    std::vector<float> scratch(size_t(group) * size_t((hd + 15) / 16 * 16) + 64);
    out.assign(size_t(group * vd), 0.0f);
    lse.assign(size_t(group), 0.0f);
    AttentionArgs a = args(q, out.data(), group, end, scratch.data(), true);
    a.v_dim = vd;
    a.ctx_begin = begin;
    a.lse = lse.data();
    ops.attention(a);
  }
  AttentionArgs args(const float* q, float* out, int group, int64_t n_ctx, float* scratch, bool shared_kv = false) const {
    AttentionArgs a{q, out, group, hd, float(1 / std::sqrt(double(hd))), n_ctx, blocks.data(), bs, K.data(), shared_kv ? K.data() : V.data(),
                    size_t(bs) * slot(), slot(), kv, scratch};
    a.tiled = tiled;
    return a;
  }
};

// Whether attention on this ISA may round the query and the probabilities to bf16 for its products
// on a bf16 cache: AMX-BF16 tiles, and vdpbf16ps where AVX-512 runs on a CPU with AVX512-BF16.
bool bf16_products(Isa isa, DType kv) {
  return kv == DType::BF16 && (isa == Isa::Amx || ((isa == Isa::Avx512 || isa == Isa::Avx512Vnni) && cpu_has_avx512_bf16()));
}

// Attention over a paged cache with scattered block tables, f32/f16/bf16 K/V, several GQA groups.
TEST(ops_attention_matches_reference) {
  std::mt19937 rng(11);
  for (Isa isa : isas_here()) {
    for (DType kv : {DType::F32, DType::F16, DType::BF16})
      for (int group : {1, 2, 6, 7, 16})
        for (int hd : {16, 40, 64, 128, 288, 576})
          for (int64_t n_ctx : {1, 5, 16, 17, 100}) {
            TestCache c(n_ctx, hd, kv, rng);
            auto q = randn(size_t(group * hd), rng, 0.5f);
            std::vector<float> out(size_t(group * hd)), want(out.size()), scratch(size_t(group) * size_t((hd + 15) / 16 * 16) + 64);
            AttentionArgs a = c.args(q.data(), out.data(), group, n_ctx, scratch.data());
            cpu_ops(isa).attention(a);
            a.out = want.data();
            ref::attention(a);
            const double tol = bf16_products(isa, kv) ? 1e-2 : 2e-6;
            CHECK_MSG(nerr(out, want) < tol, isa_name(isa) << " " << dtype_name(kv) << " group=" << group << " hd=" << hd << " n_ctx=" << n_ctx << " err " << nerr(out, want));
          }
  }
}

// MLA's absorbed shape (V = the first v_dim values of the K slot) over part of the context, with
// the log-sum-exp that merges parts: two halves merged equal the whole range, on every ISA.
TEST(ops_attention_ranges_merge) {
  std::mt19937 rng(12);
  double amx_worst = 0, bf16_worst = 0;
  std::vector<Isa> isas = isas_here();
  isas.push_back(Isa::Scalar);
  for (Isa isa : isas)
    for (auto [kv, tiled] : {std::pair{DType::F32, false}, std::pair{DType::F16, false}, std::pair{DType::BF16, false}, std::pair{DType::BF16, true}})
      for (auto [group, hd, vd] : {std::tuple{16, 576, 512}, std::tuple{16, 192, 128}, std::tuple{5, 96, 64}, std::tuple{4, 48, 32}, std::tuple{3, 40, 24}})
        for (int64_t n_ctx : {1, 15, 33, 300, 700}) {
          if (tiled && hd % 32) continue;  // the tile layout holds whole 32-value columns
          TestCache c(n_ctx, hd, kv, rng, 16, tiled);
          auto q = randn(size_t(group * hd), rng, 0.5f);
          auto run = [&](const CpuOps& ops, int64_t begin, int64_t end, std::vector<float>& out, std::vector<float>& lse) {
            c.attend_range(ops, q.data(), group, vd, begin, end, out, lse);
          };
          const CpuOps &ref_ops = cpu_ops(Isa::Scalar), &ops = cpu_ops(isa);
          std::vector<float> want, want_lse, whole, whole_lse, o1, l1, o2, l2;
          run(ref_ops, 0, n_ctx, want, want_lse);
          run(ops, 0, n_ctx, whole, whole_lse);
          const int64_t mid = n_ctx * 2 / 5;
          run(ops, 0, mid, o1, l1);
          run(ops, mid, n_ctx, o2, l2);
          std::vector<float> merged(want.size());
          for (int g = 0; g < group; g++) {
            const float m = std::max(l1[size_t(g)], l2[size_t(g)]), lse = m + std::log(std::exp(l1[size_t(g)] - m) + std::exp(l2[size_t(g)] - m));
            for (int v = 0; v < vd; v++)
              merged[size_t(g * vd + v)] = std::exp(l1[size_t(g)] - lse) * o1[size_t(g * vd + v)] + std::exp(l2[size_t(g)] - lse) * o2[size_t(g * vd + v)];
            CHECK_NEAR(lse, want_lse[size_t(g)], 2e-2);
            CHECK_NEAR(whole_lse[size_t(g)], want_lse[size_t(g)], 2e-2);
          }
          if (mid == 0)
            for (int g = 0; g < group; g++) CHECK_MSG(std::isinf(l1[size_t(g)]) && l1[size_t(g)] < 0, "an empty range has lse -inf");
          const double tol = bf16_products(isa, kv) ? 1e-2 : 2e-6;
          if (bf16_products(isa, kv)) (isa == Isa::Amx ? amx_worst : bf16_worst) = std::max({isa == Isa::Amx ? amx_worst : bf16_worst, nerr(whole, want), nerr(merged, want)});
          CHECK_MSG(nerr(whole, want) < tol, isa_name(isa) << " " << dtype_name(kv) << (tiled ? " tiled" : "") << " whole " << group << "x" << hd << "/" << vd << " n_ctx=" << n_ctx << " err " << nerr(whole, want));
          CHECK_MSG(nerr(merged, want) < tol, isa_name(isa) << " " << dtype_name(kv) << (tiled ? " tiled" : "") << " merged " << group << "x" << hd << "/" << vd << " n_ctx=" << n_ctx << " err " << nerr(merged, want));
        }
  if (cpu_has_amx_bf16()) check::note("AMX-BF16 attention on bf16 K/V: worst normalized error " + std::to_string(amx_worst));
  else check::note("no AMX-BF16 here: the bf16 tile attention is not exercised");
  if (cpu_has_avx512_bf16()) check::note("AVX512-BF16 attention on bf16 K/V: worst normalized error " + std::to_string(bf16_worst));
  else check::note("no AVX512-BF16 here: the vdpbf16ps attention is not exercised");
}

// Slots outside the attended range may hold anything (a freed sequence's stale entries, NaN
// included): the result over [begin, end) must not see them, on every ISA and layout.
TEST(ops_attention_ignores_slots_outside_the_range) {
  std::mt19937 rng(13);
  std::vector<Isa> isas = isas_here();
  for (Isa isa : isas)
    for (bool tiled : {false, true}) {
      const int group = 16, hd = 576, vd = 512;
      const int64_t begin = 21, end = 70;  // partial first and last tiles
      TestCache c(end, hd, DType::BF16, rng, 16, tiled);
      auto q = randn(size_t(group * hd), rng, 0.5f);
      auto run = [&](std::vector<float>& out, std::vector<float>& lse) { c.attend_range(cpu_ops(isa), q.data(), group, vd, begin, end, out, lse); };
      std::vector<float> clean, clean_lse, dirty, dirty_lse;
      run(clean, clean_lse);
      // NaN into every slot of the range's blocks outside [begin, end).
      AttentionArgs probe = c.args(q.data(), clean.data(), group, end, nullptr, true);  // addresses only
      probe.tiled = tiled;
      const uint16_t nan = 0x7fc0;
      for (int64_t t = begin / 16 * 16; t < (end + 15) / 16 * 16; t++) {
        if (t >= begin && t < end) continue;
        for (int i = 0; i < hd; i++) std::memcpy(const_cast<uint8_t*>(kv_element(probe, c.K.data(), t, i)), &nan, 2);
      }
      run(dirty, dirty_lse);
      bool same = dirty == clean && dirty_lse == clean_lse;
      for (float x : dirty) same = same && std::isfinite(x);
      CHECK_MSG(same, isa_name(isa) << (tiled ? " tiled" : "") << ": NaN slots outside the range changed the result");
    }
}

// Interleaved rope on rows permuted the way llama.cpp's converter permutes Q/K equals neox rope.
TEST(ops_rope_layouts_agree) {
  std::mt19937 rng(3);
  const int64_t hd = 16, nh = 3;
  std::vector<float> inv(hd / 2);
  for (int64_t i = 0; i < hd / 2; i++) inv[size_t(i)] = float(std::pow(10000.0, -2.0 * double(i) / hd));
  auto x = randn(size_t(nh * hd), rng);
  std::vector<float> perm(x.size());
  for (int64_t h = 0; h < nh; h++)
    for (int64_t i = 0; i < hd / 2; i++) {
      perm[size_t(h * hd + 2 * i)] = x[size_t(h * hd + i)];
      perm[size_t(h * hd + 2 * i + 1)] = x[size_t(h * hd + i + hd / 2)];
    }
  rope(x.data(), nh, hd, 37, inv.data(), true);
  rope(perm.data(), nh, hd, 37, inv.data(), false);
  for (int64_t h = 0; h < nh; h++)
    for (int64_t i = 0; i < hd / 2; i++) {
      CHECK_NEAR(perm[size_t(h * hd + 2 * i)], x[size_t(h * hd + i)], 1e-6);
      CHECK_NEAR(perm[size_t(h * hd + 2 * i + 1)], x[size_t(h * hd + i + hd / 2)], 1e-6);
    }
  // position 0 is the identity
  auto y = randn(size_t(hd), rng), y0 = y;
  rope(y.data(), 1, hd, 0, inv.data(), true);
  CHECK(y == y0);
}

// matmul on two threads (decode chunks, prefill panels, AMX's whole-share panels) against the
// single-threaded scalar reference, every ISA here, for row counts on both sides of the
// decode / prefill and VNNI / AMX hand-offs and an odd number of weight rows.
TEST(ops_matmul_matches_reference) {
  std::mt19937 rng(5);
  const Isa was = active_isa();
  ThreadPool pool(2);
  MatmulScratch scratch;
  for (DType t : {DType::F16, DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t k = traits(t).block == 256 ? 512 : 96, n_out = 70;
    std::vector<float> wf = randn(size_t(k * n_out), rng, 0.5f);
    std::vector<uint8_t> w(row_bytes(t, k) * size_t(n_out));
    for (int64_t r = 0; r < n_out; r++) quantize_row(t, wf.data() + r * k, w.data() + size_t(r) * row_bytes(t, k), k);
    Tensor W;
    W.name = "w";
    W.dtype = t;
    W.ne = {k, n_out};
    W.data = w.data();
    W.row_bytes = row_bytes(t, k);
    for (int64_t m : {1, 3, 5, 8, 17, 40}) {
      const std::vector<float> x = randn(size_t(m * k), rng);
      std::vector<float> want(size_t(m * n_out));
      matmul_reference(W, x.data(), m, want.data());
      for (Isa isa : isas_here()) {
        set_active_isa(isa);
        std::vector<float> got(want.size(), -1.0f);
        matmul(W, x.data(), m, got.data(), pool, scratch);
        CHECK_MSG(nerr(got, want) < 1e-5, dtype_name(t) << " " << isa_name(isa) << " m " << m << ": error " << nerr(got, want));
      }
    }
  }
  set_active_isa(was);
}

// FP8 rows (DeepSeek-V3's e4m3 with a scale per 128-element block): every ISA's kernel against
// the scalar reference, decode and prefill shapes, odd row counts, codes over the whole range
// (subnormals included, the NaN code left out as the checkpoints leave it out).
TEST(ops_fp8_matmul_matches_reference) {
  std::mt19937 rng(8);
  const Isa was = active_isa();
  ThreadPool pool(2);
  MatmulScratch scratch;
  for (int64_t k : {128, 384}) {
    const int64_t n_out = 37;
    std::vector<uint8_t> w(row_bytes(DType::FP8_B128, k) * size_t(n_out));
    std::uniform_int_distribution<int> code(0, 253);
    std::uniform_real_distribution<float> sc(1e-4f, 2e-3f);
    for (int64_t r = 0; r < n_out; r++)
      for (int64_t b = 0; b < k / 128; b++) {
        uint8_t* blk = w.data() + size_t(r) * row_bytes(DType::FP8_B128, k) + size_t(b) * 132;
        const float s = sc(rng);
        std::memcpy(blk, &s, 4);
        for (int j = 0; j < 128; j++) {
          const int c = code(rng);
          blk[4 + j] = uint8_t(c >= 0x7F ? c + 1 : c);  // 0..0x7E, 0x80..0xFE
        }
      }
    Tensor W;
    W.name = "w";
    W.dtype = DType::FP8_B128;
    W.ne = {k, n_out};
    W.data = w.data();
    W.row_bytes = row_bytes(DType::FP8_B128, k);
    for (int64_t m : {1, 3, 9, 40}) {
      const std::vector<float> x = randn(size_t(m * k), rng);
      std::vector<float> want(size_t(m * n_out));
      set_active_isa(Isa::Scalar);
      matmul(W, x.data(), m, want.data(), pool, scratch);
      // the scalar kernel against the row dequantized by hand
      std::vector<float> row(static_cast<size_t>(k)), by_hand(want.size());
      for (int64_t j = 0; j < n_out; j++) {
        dequantize_row(DType::FP8_B128, w.data() + size_t(j) * W.row_bytes, row.data(), k);
        for (int64_t i = 0; i < m; i++) {
          double s = 0;
          for (int64_t c = 0; c < k; c++) s += double(row[size_t(c)]) * x[size_t(i * k + c)];
          by_hand[size_t(i * n_out + j)] = float(s);
        }
      }
      CHECK_MSG(nerr(want, by_hand) < 1e-6, "fp8 scalar kernel vs dequantized rows: " << nerr(want, by_hand));
      for (Isa isa : isas_here()) {
        set_active_isa(isa);
        std::vector<float> got(want.size(), -1.0f);
        matmul(W, x.data(), m, got.data(), pool, scratch);
        CHECK_MSG(nerr(got, want) < 1e-5, "fp8_b128 " << isa_name(isa) << " k " << k << " m " << m << ": error " << nerr(got, want));
      }
    }
  }
  set_active_isa(was);
}

// The training backward's f32 product, every ISA against the scalar one: shapes around the
// 4-row and 64-column register tiles and the 256-deep panels, leading dimensions wider than the
// operands, alpha, and C accumulated into (not overwritten).
TEST(ops_gemm_matches_reference) {
  std::mt19937 rng(17);
  for (Isa isa : isas_here())
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 17, 5}, {4, 64, 256}, {9, 70, 300}, {16, 129, 513}, {2, 200, 40}}) {
      const int64_t lda = k + 3, ldb = n + 5, ldc = n + 2;
      auto A = randn(size_t(m * lda), rng), B = randn(size_t(k * ldb), rng), C0 = randn(size_t(m * ldc), rng);
      std::vector<float> got = C0, want = C0;
      cpu_ops(isa).gemm(m, n, k, 0.5f, A.data(), lda, B.data(), ldb, got.data(), ldc);
      ref::gemm(m, n, k, 0.5f, A.data(), lda, B.data(), ldb, want.data(), ldc);
      CHECK_MSG(nerr(got, want) < 1e-5, isa_name(isa) << " m " << m << " n " << n << " k " << k << ": error " << nerr(got, want));
    }
}

// Several products in one region (matmul_many): mixed dtypes, packed and not, decode-sized and
// one prefill-sized, the same activation row shared by two jobs, each against the reference.
TEST(ops_matmul_many_matches_reference) {
  std::mt19937 rng(21);
  ThreadPool pool(2);
  MatmulScratch scratch;
  struct W {
    std::vector<uint8_t> bytes, packed;
    Tensor t;
  };
  std::vector<W> ws;
  const std::vector<std::pair<DType, int64_t>> shapes = {{DType::Q8_0, 256}, {DType::Q8_0, 70}, {DType::Q4_K, 48}, {DType::F16, 33}, {DType::Q8_0, 200}, {DType::Q6_K, 32}};
  for (auto [t, n_out] : shapes) {
    const int64_t k = 512;
    W w;
    auto f = randn(size_t(k * n_out), rng, 0.5f);
    w.bytes.resize(row_bytes(t, k) * size_t(n_out));
    for (int64_t r = 0; r < n_out; r++) quantize_row(t, f.data() + r * k, w.bytes.data() + size_t(r) * row_bytes(t, k), k);
    w.t.name = "w";
    w.t.dtype = t;
    w.t.ne = {k, n_out};
    w.t.row_bytes = row_bytes(t, k);
    if (has_packed_layout(t) && n_out != 70) {
      w.packed.resize(packed_bytes(t, k, n_out));
      pack_rows(t, w.bytes.data(), k, n_out, 0, n_out, w.packed.data());
    }
    ws.push_back(std::move(w));
  }
  for (auto& w : ws) {
    w.t.data = w.bytes.data();
    w.t.packed = w.packed.empty() ? nullptr : w.packed.data();
  }
  const std::vector<int64_t> ms = {1, 1, 3, 4, 9, 2};
  std::vector<std::vector<float>> xs, ys, want;
  for (size_t j = 0; j < ws.size(); j++) xs.push_back(randn(size_t(ms[j] * 512), rng));
  std::vector<MatmulJob> jobs;
  for (size_t j = 0; j < ws.size(); j++) {
    ys.emplace_back(size_t(ms[j] * ws[j].t.rows()), -1.0f);
    want.emplace_back(ys.back().size());
    matmul_reference(ws[j].t, (j == 1 ? xs[0] : xs[j]).data(), ms[j], want.back().data());
  }
  for (size_t j = 0; j < ws.size(); j++) jobs.push_back({&ws[j].t, (j == 1 ? xs[0] : xs[j]).data(), ms[j], ys[j].data()});
  matmul_many(jobs.data(), jobs.size(), pool, scratch);
  for (size_t j = 0; j < ws.size(); j++)
    CHECK_MSG(nerr(ys[j], want[j]) < 1e-5, "job " << j << " (" << dtype_name(ws[j].t.dtype) << ", m " << ms[j] << "): error " << nerr(ys[j], want[j]));
}

// Weights packed at load (kernels.h; q8_0 and q4_K) through matmul, every ISA with packed
// kernels, against the scalar reference on the file's layout: row counts that are and are not multiples of the
// 16-row group, an odd and an even number of blocks, decode (1..4 rows), the VNNI micro-tiles'
// activation tails, AMX's 16-row tails and its hand-off to VNNI (< 16 rows, < 32 for q4_K). The pad rows are zero.
TEST(ops_packed_matmul_matches_reference) {
  std::mt19937 rng(9);
  const Isa was = active_isa();
  ThreadPool pool(2);
  MatmulScratch scratch;
  int checked = 0;
  for (DType t : {DType::Q8_0, DType::Q4_K})
  for (int64_t k : t == DType::Q8_0 ? std::vector<int64_t>{96, 128, 1536} : std::vector<int64_t>{256, 1536})
    for (int64_t n_out : {16, 70, 200}) {
      std::vector<float> wf = randn(size_t(k * n_out), rng, 0.5f);
      std::vector<uint8_t> w(row_bytes(t, k) * size_t(n_out));
      for (int64_t r = 0; r < n_out; r++) quantize_row(t, wf.data() + r * k, w.data() + size_t(r) * row_bytes(t, k), k);
      std::vector<uint8_t> packed(packed_bytes(t, k, n_out) + 64);
      uint8_t* pk = packed.data() + (64 - uintptr_t(packed.data()) % 64) % 64;
      pack_rows(t, w.data(), k, n_out, 0, n_out, pk);
      const size_t rb = row_bytes(t, k);
      for (int64_t b = 0; t == DType::Q8_0 && b < k / 32; b++)  // q8_0's pad rows: +128 quants (zero), zero scales
        for (int64_t r = n_out; r < (n_out + 15) / 16 * 16; r++) {
          const uint8_t* g = pk + size_t(r / 16 * 16) * rb;
          CHECK(g[b * 512 + (r % 16) * 4] == 0x80);
          CHECK(g[(k / 32) * 512 + (b * 16 + r % 16) * 2] == 0);
        }
      Tensor W;
      W.name = "w";
      W.dtype = t;
      W.ne = {k, n_out};
      W.data = w.data();
      W.row_bytes = rb;
      W.packed = pk;
      for (int64_t m : {1, 2, 3, 4, 5, 7, 8, 17, 40}) {
        const std::vector<float> x = randn(size_t(m * k), rng);
        std::vector<float> want(size_t(m * n_out));
        matmul_reference(W, x.data(), m, want.data());
        for (Isa isa : isas_here()) {
          if (!packed_weight_kernel(t, isa)) continue;
          set_active_isa(isa);
          std::vector<float> got(want.size() + 16, -1.0f);
          matmul(W, x.data(), m, got.data(), pool, scratch);
          for (size_t i = want.size(); i < got.size(); i++) CHECK(got[i] == -1.0f);  // nothing written past y
          got.resize(want.size());
          CHECK_MSG(nerr(got, want) < 1e-5, "packed " << dtype_name(t) << " " << isa_name(isa) << " k " << k << " n " << n_out << " m " << m << ": error " << nerr(got, want));
          checked++;
        }
      }
    }
  set_active_isa(was);
  if (best_isa() == Isa::Amx || best_isa() == Isa::Avx512Vnni) CHECK(checked > 0);
}
