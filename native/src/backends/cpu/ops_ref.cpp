// Scalar reference ops: the plain math, no intrinsics. Optimized kernels are tested against these.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/ops.h"

namespace aha {

namespace ref {

void rmsnorm(float* y, const float* x, const float* w, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += double(x[i]) * x[i];
  float r = float(1.0 / std::sqrt(ss / double(n) + eps));
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

void swiglu(float* y, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float g = gate[i];
    y[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static float load(const uint8_t* p, DType t) {
  float f;
  kv_load(&f, p, 1, t);
  return f;
}

void attention(const AttentionArgs& a) {
  const int vd = a.v_dim > 0 ? a.v_dim : a.head_dim;
  const int64_t c0 = a.ctx_begin, n = a.n_ctx - a.ctx_begin;
  std::vector<double> s(size_t(std::max<int64_t>(n, 0)));
  for (int g = 0; g < a.group; g++) {
    const float* q = a.q + int64_t(g) * a.head_dim;
    float* o = a.out + int64_t(g) * vd;
    if (n <= 0) {
      for (int i = 0; i < vd; i++) o[i] = 0;
      if (a.lse) a.lse[g] = -INFINITY;
      continue;
    }
    double mx = -INFINITY;
    for (int64_t t = 0; t < n; t++) {
      double d = 0;
      for (int i = 0; i < a.head_dim; i++) d += double(q[i]) * load(kv_element(a, a.k0, c0 + t, i), a.kv);
      s[size_t(t)] = d * a.scale;
      if (s[size_t(t)] > mx) mx = s[size_t(t)];
    }
    double sum = 0;
    for (int64_t t = 0; t < n; t++) sum += (s[size_t(t)] = std::exp(s[size_t(t)] - mx));
    for (int i = 0; i < vd; i++) {
      double acc = 0;
      for (int64_t t = 0; t < n; t++) acc += s[size_t(t)] * load(kv_element(a, a.v0, c0 + t, i), a.kv);
      o[i] = float(acc / sum);
    }
    if (a.lse) a.lse[g] = float(mx + std::log(sum));
  }
}

void gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++) s += double(A[i * lda + p]) * double(B[p * ldb + j]);
      C[i * ldc + j] += float(double(alpha) * s);
    }
}

}  // namespace ref

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq, bool neox) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; i++) {
    double ang = double(pos) * double(inv_freq[i]);
    float c = float(std::cos(ang)), s = float(std::sin(ang));
    for (int64_t h = 0; h < n_heads; h++) {
      float* v = x + h * head_dim;
      int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
      float a = v[i0], b = v[i1];
      v[i0] = a * c - b * s;
      v[i1] = a * s + b * c;
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += (x[i] = std::exp(x[i] - mx));
  float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

#if defined(AHA_X86)
namespace avx512 {
extern const CpuOps kOps;
}
#endif
#if defined(AHA_AMX)
namespace amx {
const CpuOps& ops();
}
#endif

static const CpuOps kRefOps = {ref::rmsnorm, ref::swiglu, ref::add, ref::attention, ref::gemm};

const CpuOps& cpu_ops(Isa isa) {
#if defined(AHA_AMX)
  if (isa == Isa::Amx && cpu_has_amx_bf16()) return amx::ops();
#endif
#if defined(AHA_X86)
  if (isa == Isa::Avx512 || isa == Isa::Avx512Vnni || isa == Isa::Amx) return avx512::kOps;
#endif
  return kRefOps;
}

}  // namespace aha
