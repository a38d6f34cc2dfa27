// AVX-512 versions of the CPU ops (compiled with -mavx512f etc.; selected at run time).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "aha/kernels.h"
#include "backends/cpu/exp_avx512.h"
#include "backends/cpu/ops.h"

namespace aha {
#if defined(AHA_AVX512BF16)
namespace avx512bf16 {
bool attention(const AttentionArgs& a);  // ops_avx512bf16.cpp: false where it does not apply
}
#endif
namespace avx512 {

static void rmsnorm(float* y, const float* x, const float* w, int64_t n, float eps) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  double ss = _mm512_reduce_add_ps(acc);
  for (; i < n; i++) ss += double(x[i]) * x[i];
  float r = float(1.0 / std::sqrt(ss / double(n) + eps));
  __m512 vr = _mm512_set1_ps(r);
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vr), _mm512_loadu_ps(w + i)));
  for (; i < n; i++) y[i] = x[i] * r * w[i];
}

static void swiglu(float* y, const float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (; i + 16 <= n; i += 16) {
    __m512 g = _mm512_loadu_ps(gate + i);
    __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(g, sig), _mm512_loadu_ps(up + i)));
  }
  for (; i < n; i++) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

static void add(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(x + i)));
  for (; i < n; i++) y[i] += x[i];
}

// Loads 16 K/V elements (f32, f16 or bf16) as floats; tail lanes masked.
template <DType T>
static inline __m512 load16(const uint8_t* p, int64_t i, __mmask16 m) {
  if constexpr (T == DType::F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * i));
  else if constexpr (T == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p + 2 * i)), 16));
  else return _mm512_maskz_loadu_ps(m, p + 4 * i);
}

constexpr int kMaxGroup = 16;
constexpr int kMaxVec = 40;  // head_dim up to 640: MLA's absorbed form attends over kv_lora_rank + rope (576 in DeepSeek-V3)
constexpr int kMaxBlock = 64;

// O[g0 .. g0 + HB) values 16 j0 .. 16 (j0 + DV) += P · V over the block's nt slots, in registers:
// per slot the HB probabilities broadcast once and each V vector loaded once for all HB heads.
template <DType T, int HB, int DV>
static inline void pv_tile(const uint8_t* const* vrows, int nt, const float (*p)[kMaxBlock], int g0, float* acc, int nvv,
                           int j0, __mmask16 vtail) {
  __m512 o[HB][DV];
  for (int h = 0; h < HB; h++)
    for (int j = 0; j < DV; j++) o[h][j] = _mm512_loadu_ps(acc + size_t((g0 + h) * nvv + j0 + j) * 16);
  for (int t = 0; t < nt; t++) {
    __m512 ph[HB];
    for (int h = 0; h < HB; h++) ph[h] = _mm512_set1_ps(p[g0 + h][t]);
#pragma GCC unroll 8
    for (int j = 0; j < DV; j++) {
      const __m512 v = load16<T>(vrows[t], (j0 + j) * 16, j0 + j == nvv - 1 ? vtail : __mmask16(0xFFFF));
      for (int h = 0; h < HB; h++) o[h][j] = _mm512_fmadd_ps(ph[h], v, o[h][j]);
    }
  }
  for (int h = 0; h < HB; h++)
    for (int j = 0; j < DV; j++) _mm512_storeu_ps(acc + size_t((g0 + h) * nvv + j0 + j) * 16, o[h][j]);
}

// The first n lanes (all 16 when n >= 16).
static inline __mmask16 first_lanes(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// Lane i = the sum of v[i]'s 16 lanes: 16 horizontal sums in 45 shuffles and adds, not 16 × 8.
static inline __m512 reduce16(const __m512 v[16]) {
  __m512 t[8], u[4];
  for (int i = 0; i < 8; i++) t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; i++) {
    const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
    u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // u[m]: per 128-bit block k, the block-k partial sums of v[4m .. 4m + 3]; add the blocks.
  const __m512 x01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
  const __m512 x23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(x01, x23, 0x88), _mm512_shuffle_f32x4(x01, x23, 0xDD));
}

// The per-lane products of slot t's K with each head's query, into dv[g][t - c], for a head
// size of NV whole vectors known at compile time (the common 64 and 128): K and q stay in registers.
template <DType T, int NV>
static inline void score_slots(const AttentionArgs& a, size_t boff, int c, int m, __m512 (*dv)[16]) {
  for (int t = c; t < c + m; t++) {
    const uint8_t* k = a.k0 + boff + size_t(t) * a.slot_stride;
    __m512 kv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; j++) kv[j] = load16<T>(k, j * 16, __mmask16(0xFFFF));
    for (int g = 0; g < a.group; g++) {
      const float* q = a.q + g * NV * 16;
      __m512 d0 = _mm512_mul_ps(_mm512_loadu_ps(q), kv[0]), d1 = _mm512_mul_ps(_mm512_loadu_ps(q + 16), kv[1]);
#pragma GCC unroll 8
      for (int j = 2; j < NV; j += 2) {
        d0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * j), kv[j], d0);
        d1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * j + 16), kv[j + 1], d1);
      }
      dv[g][t - c] = _mm512_add_ps(d0, d1);
    }
  }
}

template <DType T, int DV>
static inline void pv_heads(const uint8_t* const* vrows, int nt, const float (*p)[kMaxBlock], int group, float* acc, int nvv, int j0,
                            __mmask16 vtail) {
  int g0 = 0;
  for (; g0 + 3 <= group; g0 += 3) pv_tile<T, 3, DV>(vrows, nt, p, g0, acc, nvv, j0, vtail);
  if (group - g0 == 2) pv_tile<T, 2, DV>(vrows, nt, p, g0, acc, nvv, j0, vtail);
  else if (group - g0 == 1) pv_tile<T, 1, DV>(vrows, nt, p, g0, acc, nvv, j0, vtail);
}

// Online softmax over blocks of the cache: per block, scores for every query of the group,
// then the running max/sum and output accumulators are rescaled (flash-decoding style), the
// probabilities taken 16 slots at a time, and P · V accumulated in registers (pv_tile).
template <DType T>
static void attend(const AttentionArgs& a) {
  const int hd = a.head_dim, vd = a.v_dim > 0 ? a.v_dim : a.head_dim;
  const int nvec = (hd + 15) / 16, nvv = (vd + 15) / 16;
  const __mmask16 tail = (hd % 16) ? __mmask16((1u << (hd % 16)) - 1) : __mmask16(0xFFFF);
  const __mmask16 vtail = (vd % 16) ? __mmask16((1u << (vd % 16)) - 1) : __mmask16(0xFFFF);
  float mx[kMaxGroup], sum[kMaxGroup];
  float* acc = a.scratch;  // [group, nvv*16]
  for (int g = 0; g < a.group; g++) {
    mx[g] = -INFINITY;
    sum[g] = 0;
    std::memset(acc + g * nvv * 16, 0, sizeof(float) * nvv * 16);
  }
  alignas(64) float s[kMaxGroup][kMaxBlock];
  __m512 dv[kMaxGroup][16];
  const uint8_t* vrows[kMaxBlock];
  const int64_t bs = a.block_size;
  for (int64_t t0 = a.ctx_begin; t0 < a.n_ctx;) {
    const int nt = int(std::min<int64_t>({bs - t0 % bs, a.n_ctx - t0, int64_t(kMaxBlock)}));
    const size_t boff = size_t(a.blocks[t0 / bs]) * a.block_stride + size_t(t0 % bs) * a.slot_stride;
    // Scores, 16 slots at a time: each slot's K loaded once for every head, the per-lane
    // products of each (head, slot) kept and summed across lanes 16 at once.
    for (int c = 0; c < nt; c += 16) {
      const int m = std::min(16, nt - c);
      for (int t = c; t < c + m; t++) vrows[t] = a.v0 + boff + size_t(t) * a.slot_stride;
      if (hd == 128) {
        score_slots<T, 8>(a, boff, c, m, dv);
      } else if (hd == 64) {
        score_slots<T, 4>(a, boff, c, m, dv);
      } else {
        for (int t = c; t < c + m; t++) {
          const uint8_t* k = a.k0 + boff + size_t(t) * a.slot_stride;
          __m512 kv[kMaxVec];
          for (int j = 0; j < nvec; j++) kv[j] = load16<T>(k, j * 16, j == nvec - 1 ? tail : __mmask16(0xFFFF));
          for (int g = 0; g < a.group; g++) {
            const float* q = a.q + g * hd;
            __m512 d = _mm512_setzero_ps();
            for (int j = 0; j < nvec; j++) d = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(j == nvec - 1 ? tail : __mmask16(0xFFFF), q + j * 16), kv[j], d);
            dv[g][t - c] = d;
          }
        }
      }
      const __m512 sc = _mm512_set1_ps(a.scale);
      for (int g = 0; g < a.group; g++) {
        for (int t = m; t < 16; t++) dv[g][t] = _mm512_setzero_ps();
        _mm512_store_ps(s[g] + c, _mm512_mul_ps(reduce16(dv[g]), sc));
      }
    }
    for (int g = 0; g < a.group; g++) {
      __m512 vm = _mm512_set1_ps(mx[g]);
      for (int t = 0; t < nt; t += 16) {
        const __mmask16 m = first_lanes(nt - t);
        vm = _mm512_mask_max_ps(vm, m, vm, _mm512_loadu_ps(s[g] + t));
      }
      const float bm = _mm512_reduce_max_ps(vm);
      const float corr = std::exp(mx[g] - bm);
      mx[g] = bm;
      sum[g] *= corr;
      if (corr != 1.0f) {
        float* ag = acc + g * nvv * 16;
        const __m512 vc = _mm512_set1_ps(corr);
        for (int j = 0; j < nvv; j++) _mm512_storeu_ps(ag + j * 16, _mm512_mul_ps(_mm512_loadu_ps(ag + j * 16), vc));
      }
      __m512 vs = _mm512_setzero_ps();
      const __m512 vbm = _mm512_set1_ps(bm);
      for (int t = 0; t < nt; t += 16) {
        const __mmask16 m = first_lanes(nt - t);
        const __m512 p = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_loadu_ps(s[g] + t), vbm)));
        _mm512_storeu_ps(s[g] + t, p);
        vs = _mm512_add_ps(vs, p);
      }
      sum[g] += _mm512_reduce_add_ps(vs);
    }
    for (int j0 = 0; j0 < nvv;) {
      const int left = nvv - j0;
      if (left >= 8) pv_heads<T, 8>(vrows, nt, s, a.group, acc, nvv, j0, vtail), j0 += 8;
      else if (left >= 4) pv_heads<T, 4>(vrows, nt, s, a.group, acc, nvv, j0, vtail), j0 += 4;
      else if (left >= 2) pv_heads<T, 2>(vrows, nt, s, a.group, acc, nvv, j0, vtail), j0 += 2;
      else pv_heads<T, 1>(vrows, nt, s, a.group, acc, nvv, j0, vtail), j0 += 1;
    }
    t0 += nt;
  }
  for (int g = 0; g < a.group; g++) {
    const float inv = sum[g] > 0 ? 1.0f / sum[g] : 0.0f;
    const float* ag = acc + g * nvv * 16;
    float* o = a.out + g * vd;
    for (int i = 0; i < vd; i++) o[i] = ag[i] * inv;
    if (a.lse) a.lse[g] = sum[g] > 0 ? mx[g] + std::log(sum[g]) : -INFINITY;
  }
}

static void attention(const AttentionArgs& a) {
#if defined(AHA_AVX512BF16)
  // A bf16 cache on a CPU with vdpbf16ps (MLA's absorbed decode, no AMX): its own op.
  if (a.kv == DType::BF16 && cpu_has_avx512_bf16() && avx512bf16::attention(a)) return;
#endif
  if (a.group > kMaxGroup || a.head_dim > 16 * kMaxVec || a.tiled) {
    ref::attention(a);
    return;
  }
  switch (a.kv) {
    case DType::F16: return attend<DType::F16>(a);
    case DType::BF16: return attend<DType::BF16>(a);
    default: return attend<DType::F32>(a);
  }
}

// C += alpha A B in register tiles of 4 rows x 64 columns (16 accumulators), B read in panels of
// kKc rows x 64 columns that stay in L2 while every row block of A passes.
template <int MR>
static inline void gemm_tile(int64_t kc, int64_t nj, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  __mmask16 mk[4];
  for (int v = 0; v < 4; v++) {
    const int64_t left = nj - 16 * v;
    mk[v] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
  }
  __m512 acc[MR][4];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; p++) {
    __m512 b[4];
    for (int v = 0; v < 4; v++) b[v] = _mm512_maskz_loadu_ps(mk[v], B + p * ldb + 16 * v);
    for (int r = 0; r < MR; r++) {
      const __m512 a = _mm512_set1_ps(A[r * lda + p]);
      for (int v = 0; v < 4; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < 4; v++) {
      if (!mk[v]) continue;
      float* c = C + r * ldc + 16 * v;
      _mm512_mask_storeu_ps(c, mk[v], _mm512_fmadd_ps(acc[r][v], al, _mm512_maskz_loadu_ps(mk[v], c)));
    }
}

static void gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  constexpr int64_t kKc = 256;
  for (int64_t k0 = 0; k0 < k; k0 += kKc) {
    const int64_t kc = std::min(kKc, k - k0);
    for (int64_t j0 = 0; j0 < n; j0 += 64) {
      const int64_t nj = std::min<int64_t>(64, n - j0);
      int64_t i = 0;
      for (; i + 4 <= m; i += 4) gemm_tile<4>(kc, nj, alpha, A + i * lda + k0, lda, B + k0 * ldb + j0, ldb, C + i * ldc + j0, ldc);
      for (; i < m; i++) gemm_tile<1>(kc, nj, alpha, A + i * lda + k0, lda, B + k0 * ldb + j0, ldb, C + i * ldc + j0, ldc);
    }
  }
}

extern const CpuOps kOps = {rmsnorm, swiglu, add, attention, gemm};

}  // namespace avx512
}  // namespace aha
