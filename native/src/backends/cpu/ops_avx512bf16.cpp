// AVX-512 BF16 attention over a bf16 cache, for CPUs with AVX512_BF16 and no AMX (Zen 4 and 5,
// Cooper Lake; on AMX machines the tile op runs): MLA's absorbed decode, up to 16 query heads
// against one shared latent "KV head", with vdpbf16ps (16 lanes x a pair of bf16 products, f32
// sums). Tested against ops_ref.cpp on every ISA that has it.
//
// Per range of slots, in blocks of up to kBlock slots (online softmax):
//  1. scores, lanes = heads: S_t += Qᵀ[pair i] · broadcast(K_t[pair i]), Qᵀ the scaled query as
//     bf16 pairs per head made once, K's pairs broadcast straight from the cache;
//  2. the running max and sum per head (all lanes at once), the output rescaled when the max
//     grows, P_t = exp(S_t - max) as (P_t0, P_t1) bf16 pairs per head for two slots;
//  3. O += P · V, lanes = values: the V rows of two slots interleaved into value pairs
//     (vpunpck{l,h}wd, so O's lanes come out in the unpack's order and are put back at the end)
//     times the broadcast P pair of each head, 8 heads x 32 values in registers at a time.
// Slots are read only inside [ctx_begin, n_ctx): stale slots past a sequence's end are never
// touched. Both cache layouts: slot-major, and the 16-slot tiled one (the cache made on an AMX
// machine, run here when the ISA is switched).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/exp_avx512.h"
#include "backends/cpu/ops.h"
#include "core/aligned.h"

namespace aha {
namespace avx512bf16 {

namespace {

constexpr int kBlock = 32;  // slots per online-softmax block: their V rows stay in L1 for step 3
constexpr int kMaxHeadDim = 1024;

struct Buffers {
  aligned_vector<uint32_t> qp;  // [head_dim / 2][16 heads]: (q[h][2i], q[h][2i + 1]) · scale, bf16
  aligned_vector<float> s;      // [kBlock][16 heads]
  aligned_vector<uint32_t> pp;  // [kBlock / 2][16 heads]: (P[t0][h], P[t1][h]), bf16
  aligned_vector<float> o;      // [16 heads][v_dim], per 32 values in the unpack's lane order
};

Buffers& buffers() {
  thread_local Buffers b;
  return b;
}

inline __m512i bf16_pairs(__m512 lo, __m512 hi) {  // dword i = (bf16(lo[i]), bf16(hi[i]))
  const __m512i a = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(lo)));
  const __m512i b = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(hi)));
  return _mm512_or_si512(a, _mm512_slli_epi32(b, 16));
}

inline __m512 dp(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}

// Scores of N slots (rows r[0..N)): S lanes = heads. Two accumulators per slot (even and odd
// pairs) keep eight independent chains in flight.
template <int N>
inline void scores(const uint32_t* qp, int groups, const uint8_t* const* r, size_t kstep, float* s) {
  __m512 acc[N][2];
  for (int n = 0; n < N; n++) acc[n][0] = acc[n][1] = _mm512_setzero_ps();
  for (int c = 0; c < groups; c++) {
    const uint32_t* q = qp + size_t(c) * 256;
#pragma GCC unroll 16
    for (int p = 0; p < 16; p++) {
      const __m512i qv = _mm512_load_si512(q + 16 * p);
#pragma GCC unroll 4
      for (int n = 0; n < N; n++) {
        uint32_t k;
        std::memcpy(&k, r[n] + size_t(c) * kstep + 4 * p, 4);
        acc[n][p & 1] = dp(acc[n][p & 1], qv, _mm512_set1_epi32(int(k)));
      }
    }
  }
  for (int n = 0; n < N; n++) _mm512_store_ps(s + 16 * n, _mm512_add_ps(acc[n][0], acc[n][1]));
}

// O[hh .. hh + 8) += P · V over `pairs` slot pairs, 32 values (column group dg) at a time.
template <int H>
inline void pv(const uint32_t* pp, int pairs, const uint8_t* const* r, size_t kstep, int dg, int hh, float* o, size_t ostride) {
  __m512 lo[H], hi[H];
  float* base = o + size_t(hh) * ostride + size_t(dg) * 32;
  for (int h = 0; h < H; h++) lo[h] = _mm512_load_ps(base + h * ostride), hi[h] = _mm512_load_ps(base + h * ostride + 16);
  for (int j = 0; j < pairs; j++) {
    const __m512i a = _mm512_loadu_si512(r[2 * j] + size_t(dg) * kstep), b = _mm512_loadu_si512(r[2 * j + 1] + size_t(dg) * kstep);
    const __m512i vl = _mm512_unpacklo_epi16(a, b), vh = _mm512_unpackhi_epi16(a, b);
    const uint32_t* p = pp + 16 * j + hh;
#pragma GCC unroll 8
    for (int h = 0; h < H; h++) {
      const __m512i ph = _mm512_set1_epi32(int(p[h]));
      lo[h] = dp(lo[h], vl, ph);
      hi[h] = dp(hi[h], vh, ph);
    }
  }
  for (int h = 0; h < H; h++) _mm512_store_ps(base + h * ostride, lo[h]), _mm512_store_ps(base + h * ostride + 16, hi[h]);
}

}  // namespace

bool attention(const AttentionArgs& a) {
  const int hd = a.head_dim, vd = a.v_dim > 0 ? a.v_dim : a.head_dim;
  if (a.kv != DType::BF16 || a.group > 16 || hd % 32 || hd > kMaxHeadDim || vd % 32 || vd > hd || a.v0 != a.k0) return false;
  const int64_t c0 = a.ctx_begin, c1 = a.n_ctx;
  if (c1 <= c0) {
    std::memset(a.out, 0, sizeof(float) * size_t(a.group) * size_t(vd));
    if (a.lse)
      for (int g = 0; g < a.group; g++) a.lse[g] = -INFINITY;
    return true;
  }
  Buffers& B = buffers();
  const int groups = hd / 32, vgroups = vd / 32, G = a.group;
  B.qp.resize(size_t(hd / 2) * 16);
  B.s.resize(size_t(kBlock) * 16);
  B.pp.resize(size_t(kBlock / 2) * 16);
  B.o.assign(size_t(16) * size_t(vd), 0.0f);

  // Qᵀ pairs: a 16 x 16 dword transpose per 32 values of every head.
  {
    const __m512 sc = _mm512_set1_ps(a.scale);
    for (int c = 0; c < groups; c++) {
      alignas(64) uint32_t rows[16][16];
      for (int h = 0; h < 16; h++) {
        if (h < G) {
          const float* q = a.q + size_t(h) * size_t(hd) + 32 * c;
          const __m512 x0 = _mm512_mul_ps(_mm512_loadu_ps(q), sc), x1 = _mm512_mul_ps(_mm512_loadu_ps(q + 16), sc);
          // dword i = (q[2i], q[2i + 1]): the evens and the odds of the 32 values, paired.
          const __m512i idx_e = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
          const __m512i idx_o = _mm512_add_epi32(idx_e, _mm512_set1_epi32(1));
          const __m512 ev = _mm512_permutex2var_ps(x0, idx_e, x1), od = _mm512_permutex2var_ps(x0, idx_o, x1);
          _mm512_store_si512(rows[h], bf16_pairs(ev, od));
        } else {
          _mm512_store_si512(rows[h], _mm512_setzero_si512());
        }
      }
      for (int i = 0; i < 16; i++)
        for (int h = 0; h < 16; h++) B.qp[size_t(c) * 256 + size_t(i) * 16 + size_t(h)] = rows[h][i];
    }
  }

  const size_t kstep = a.tiled ? kv_tiled_offset(0, 32, hd) : 64;  // a slot's 32-value column c at row + c × kstep
  const size_t ostride = size_t(vd);
  __m512 m_run = _mm512_set1_ps(-INFINITY), l_run = _mm512_setzero_ps();
  const uint8_t* r[kBlock + 1];
  for (int64_t t0 = c0; t0 < c1; t0 += kBlock) {
    const int n = int(std::min<int64_t>(kBlock, c1 - t0));
    for (int i = 0; i < n; i++) r[i] = kv_element(a, a.k0, t0 + i, 0);
    // 1. Scores.
    int i = 0;
    for (; i + 4 <= n; i += 4) scores<4>(B.qp.data(), groups, r + i, kstep, B.s.data() + 16 * i);
    for (; i < n; i++) scores<1>(B.qp.data(), groups, r + i, kstep, B.s.data() + 16 * i);
    // 2. Online softmax, all heads at once.
    __m512 m_new = m_run;
    for (int t = 0; t < n; t++) m_new = _mm512_max_ps(m_new, _mm512_load_ps(B.s.data() + 16 * t));
    if (_mm512_cmp_ps_mask(m_new, m_run, _CMP_GT_OQ)) {
      const __m512 corr = exp512(_mm512_sub_ps(m_run, m_new));  // ~0 on the first block (m_run = -inf)
      alignas(64) float cf[16];
      _mm512_store_ps(cf, corr);
      for (int h = 0; h < G; h++) {
        const __m512 c = _mm512_set1_ps(cf[h]);
        float* oh = B.o.data() + size_t(h) * ostride;
        for (int v = 0; v < vd; v += 16) _mm512_store_ps(oh + v, _mm512_mul_ps(_mm512_load_ps(oh + v), c));
      }
      l_run = _mm512_mul_ps(l_run, corr);
    }
    m_run = m_new;
    const int pairs = (n + 1) / 2;
    for (int j = 0; j < pairs; j++) {
      const __m512 p0 = exp512(_mm512_sub_ps(_mm512_load_ps(B.s.data() + 32 * j), m_new));
      const __m512 p1 = 2 * j + 1 < n ? exp512(_mm512_sub_ps(_mm512_load_ps(B.s.data() + 32 * j + 16), m_new)) : _mm512_setzero_ps();
      l_run = _mm512_add_ps(l_run, _mm512_add_ps(p0, p1));
      _mm512_store_si512(B.pp.data() + 16 * j, bf16_pairs(p0, p1));
    }
    if (n % 2) r[n] = r[n - 1];  // the odd slot's partner has P = 0: any readable row does
    // 3. O += P · V.
    for (int dg = 0; dg < vgroups; dg++)
      for (int hh = 0; hh < G; hh += 8) pv<8>(B.pp.data(), pairs, r, kstep, dg, hh, B.o.data(), ostride);
  }
  alignas(64) float l[16], mx[16];
  _mm512_store_ps(l, l_run);
  _mm512_store_ps(mx, m_run);
  for (int g = 0; g < G; g++) {
    const float inv = 1.0f / l[g];
    const float* og = B.o.data() + size_t(g) * ostride;
    float* out = a.out + size_t(g) * size_t(vd);
    // Lane j of the unpacked low half is value 8 (j / 4) + j % 4 of the 32; of the high half, + 4.
    for (int v = 0; v < vd; v += 32)
      for (int j = 0; j < 16; j++) {
        const int d = 8 * (j / 4) + j % 4;
        out[v + d] = og[v + j] * inv;
        out[v + d + 4] = og[v + 16 + j] * inv;
      }
    if (a.lse) a.lse[g] = mx[g] + std::log(l[g]);
  }
  return true;
}

}  // namespace avx512bf16
}  // namespace aha
