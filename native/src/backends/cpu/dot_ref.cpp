// Scalar reference dot-product tiles: the plain math, no intrinsics. Each block's integer
// dot product is exact; blocks are combined in float (double for the float dtypes), in order.
// Every optimized tile is tested against these.
#include <cstring>

#include "backends/cpu/dot.h"
#include "core/quants.h"

namespace aha {

namespace ref {

namespace {

float h2f(uint16_t h) { return fp16_to_f32(h); }

// Weight row w · activation row a of k elements; one function per weight dtype.

float dot_f32(int64_t k, const uint8_t* w, const uint8_t* a) {
  double s = 0;
  for (int64_t i = 0; i < k; i++) {
    float x, y;
    std::memcpy(&x, w + 4 * i, 4);
    std::memcpy(&y, a + 4 * i, 4);
    s += double(x) * y;
  }
  return float(s);
}

template <bool Bf16>
float dot_half(int64_t k, const uint8_t* w, const uint8_t* a) {
  double s = 0;
  for (int64_t i = 0; i < k; i++) {
    uint16_t h;
    float y;
    std::memcpy(&h, w + 2 * i, 2);
    std::memcpy(&y, a + 4 * i, 4);
    s += double(Bf16 ? bf16_to_f32(h) : fp16_to_f32(h)) * y;
  }
  return float(s);
}

// FP8 rows (FP8_B128): per 128-element block an f32 scale, then 128 e4m3 codes.
float dot_fp8_b128(int64_t k, const uint8_t* w, const uint8_t* a) {
  double s = 0;
  for (int64_t b = 0; b < k / 128; b++, w += 132) {
    float scale;
    std::memcpy(&scale, w, 4);
    double sb = 0;
    for (int j = 0; j < 128; j++) {
      float y;
      std::memcpy(&y, a + 4 * (b * 128 + j), 4);
      sb += double(e4m3_to_f32(w[4 + j])) * y;
    }
    s += sb * scale;
  }
  return float(s);
}

// Sum of the 32 int8 activation quants of a q8_0 block.
int qsum(const block_q8_0& b) {
  int s = 0;
  for (int j = 0; j < QK; j++) s += b.qs[j];
  return s;
}

float dot_q4_0(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* x = reinterpret_cast<const block_q4_0*>(w);
  auto* y = reinterpret_cast<const block_q8_0*>(a);
  float s = 0;
  for (int64_t b = 0; b < k / QK; b++) {
    int sumi = 0;
    for (int j = 0; j < QK / 2; j++)
      sumi += ((x[b].qs[j] & 0xF) - 8) * y[b].qs[j] + ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK / 2];
    s += h2f(x[b].d) * h2f(y[b].d) * float(sumi);
  }
  return s;
}

float dot_q4_1(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* x = reinterpret_cast<const block_q4_1*>(w);
  auto* y = reinterpret_cast<const block_q8_0*>(a);
  float s = 0;
  for (int64_t b = 0; b < k / QK; b++) {
    int sumi = 0;
    for (int j = 0; j < QK / 2; j++)
      sumi += (x[b].qs[j] & 0xF) * y[b].qs[j] + (x[b].qs[j] >> 4) * y[b].qs[j + QK / 2];
    const float da = h2f(y[b].d);
    s += h2f(x[b].d) * da * float(sumi) + h2f(x[b].m) * da * float(qsum(y[b]));
  }
  return s;
}

float dot_q5_0(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* x = reinterpret_cast<const block_q5_0*>(w);
  auto* y = reinterpret_cast<const block_q8_0*>(a);
  float s = 0;
  for (int64_t b = 0; b < k / QK; b++) {
    uint32_t qh;
    std::memcpy(&qh, x[b].qh, 4);
    int sumi = 0;
    for (int j = 0; j < QK / 2; j++) {
      const int q0 = ((x[b].qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
      const int q1 = ((x[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
      sumi += q0 * y[b].qs[j] + q1 * y[b].qs[j + QK / 2];
    }
    s += h2f(x[b].d) * h2f(y[b].d) * float(sumi);
  }
  return s;
}

float dot_q5_1(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* x = reinterpret_cast<const block_q5_1*>(w);
  auto* y = reinterpret_cast<const block_q8_0*>(a);
  float s = 0;
  for (int64_t b = 0; b < k / QK; b++) {
    uint32_t qh;
    std::memcpy(&qh, x[b].qh, 4);
    int sumi = 0;
    for (int j = 0; j < QK / 2; j++) {
      const int q0 = (x[b].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int q1 = (x[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      sumi += q0 * y[b].qs[j] + q1 * y[b].qs[j + QK / 2];
    }
    const float da = h2f(y[b].d);
    s += h2f(x[b].d) * da * float(sumi) + h2f(x[b].m) * da * float(qsum(y[b]));
  }
  return s;
}

float dot_q8_0(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* x = reinterpret_cast<const block_q8_0*>(w);
  auto* y = reinterpret_cast<const block_q8_0*>(a);
  float s = 0;
  for (int64_t b = 0; b < k / QK; b++) {
    int sumi = 0;
    for (int j = 0; j < QK; j++) sumi += x[b].qs[j] * y[b].qs[j];
    s += h2f(x[b].d) * h2f(y[b].d) * float(sumi);
  }
  return s;
}

// q4_K and q5_K: x = d * sc[j] * q - dmin * mn[j] per sub-block j of 32.
template <bool Five>
float dot_qk45(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* y = reinterpret_cast<const block_q8_K*>(a);
  const size_t bytes = Five ? sizeof(block_q5_K) : sizeof(block_q4_K);
  float s = 0;
  for (int64_t b = 0; b < k / QK_K; b++) {
    // q4_K and q5_K share the d, dmin, scales prefix.
    auto* x4 = reinterpret_cast<const block_q4_K*>(w + size_t(b) * bytes);
    auto* x5 = reinterpret_cast<const block_q5_K*>(w + size_t(b) * bytes);
    const uint8_t* qs = Five ? x5->qs : x4->qs;
    int isum = 0, imin = 0;
    for (int j = 0; j < QK_K / 32; j++) {
      uint8_t sc, mn;
      get_scale_min_k4(j, x4->scales, &sc, &mn);
      int dot = 0, asum = 0;
      for (int l = 0; l < 32; l++) {
        int q = (j & 1) ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 0xF;
        if (Five) q |= ((x5->qh[l] >> j) & 1) << 4;
        dot += q * y[b].qs[32 * j + l];
        asum += y[b].qs[32 * j + l];
      }
      isum += sc * dot;
      imin += mn * asum;
    }
    s += h2f(x4->d) * y[b].d * float(isum) - h2f(x4->dmin) * y[b].d * float(imin);
  }
  return s;
}

float dot_q6_K(int64_t k, const uint8_t* w, const uint8_t* a) {
  auto* x = reinterpret_cast<const block_q6_K*>(w);
  auto* y = reinterpret_cast<const block_q8_K*>(a);
  float s = 0;
  for (int64_t b = 0; b < k / QK_K; b++) {
    int isum = 0;
    for (int e = 0; e < QK_K; e++) {
      // element e = 128 h + 32 g + l: ql byte (64 h + l + 32 (g & 1)), nibble g / 2; qh bits 2 g of byte 32 h + l.
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const int lo = (x[b].ql[64 * h + l + 32 * (g & 1)] >> (4 * (g / 2))) & 0xF;
      const int hi = (x[b].qh[32 * h + l] >> (2 * g)) & 3;
      isum += x[b].scales[e / 16] * ((lo | (hi << 4)) - 32) * y[b].qs[e];
    }
    s += h2f(x[b].d) * y[b].d * float(isum);
  }
  return s;
}

template <float (*Dot)(int64_t, const uint8_t*, const uint8_t*)>
void tile(int64_t k, const void* w, size_t w_stride, int nw, const void* a, size_t a_stride, int na, float* y,
          size_t y_stride) {
  for (int i = 0; i < na; i++)
    for (int j = 0; j < nw; j++)
      y[size_t(i) * y_stride + size_t(j)] =
          Dot(k, static_cast<const uint8_t*>(w) + size_t(j) * w_stride, static_cast<const uint8_t*>(a) + size_t(i) * a_stride);
}

void quantize_q8_0(const float* x, void* out, int64_t k) { quantize_row_q8_0_ref(x, static_cast<block_q8_0*>(out), k); }
void quantize_q8_K(const float* x, void* out, int64_t k) { quantize_row_q8_K_ref(x, static_cast<block_q8_K*>(out), k); }

const WeightKernel kKernels[] = {
    {DType::F32, DType::F32, tile<dot_f32>},
    {DType::F16, DType::F32, tile<dot_half<false>>},
    {DType::BF16, DType::F32, tile<dot_half<true>>},
    {DType::FP8_B128, DType::F32, tile<dot_fp8_b128>},
    {DType::Q4_0, DType::Q8_0, tile<dot_q4_0>},
    {DType::Q4_1, DType::Q8_0, tile<dot_q4_1>},
    {DType::Q5_0, DType::Q8_0, tile<dot_q5_0>},
    {DType::Q5_1, DType::Q8_0, tile<dot_q5_1>},
    {DType::Q8_0, DType::Q8_0, tile<dot_q8_0>},
    {DType::Q4_K, DType::Q8_K, tile<dot_qk45<false>>},
    {DType::Q5_K, DType::Q8_K, tile<dot_qk45<true>>},
    {DType::Q6_K, DType::Q8_K, tile<dot_q6_K>},
};

}  // namespace

const CpuDotKernels kDot = {kKernels, int(sizeof(kKernels) / sizeof(kKernels[0])), quantize_q8_0, quantize_q8_K};

}  // namespace ref

}  // namespace aha
