// AVX2 + FMA + F16C dot-product tiles. Tested against dot_ref.cpp. Same scheme as
// dot_avx512.cpp (read its header comment) on 256-bit vectors: a step is one 32-block, a
// K-quant super-block is 8 chunks of 32, and the micro-tiles are smaller (16 registers).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "backends/cpu/dot.h"
#include "core/quants.h"

namespace aha {

namespace avx2 {

namespace {

using MicroFn = void (*)(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys);

inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline uint16_t ld16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t ld32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float ldf(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline __m256 half8(const uint8_t* p) { return _mm256_set1_ps(_cvtsh_ss(ld16(p))); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Sums of u8 x s8 products over each 4 bytes -> 8 s32 lanes.
inline __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }

// The 32 nibbles of a 16-byte q4 block in element order (low nibbles 0-15, high 16-31).
inline __m256i nibbles(const uint8_t* p) {
  const __m128i x = load128(p);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0F));
}

// 16 where bit j of the 32-bit qh at p is set, in byte j.
inline __m256i high_bits(const uint8_t* p) {
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(ld32(p))), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));  // all bits but bit (j % 8)
  return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(16));
}

// ---- weights over q8_0 activations, one 32-block a step.

constexpr size_t kQ8 = sizeof(block_q8_0);

struct ActQ8 {
  __m256i q;
  __m256 d;
};
inline ActQ8 load_q8_0(const uint8_t* b) { return {load256(b + 2), half8(b)}; }
inline __m256i act_sums(__m256i q) { return dot_u8s8(_mm256_set1_epi8(1), q); }

template <bool Five>
struct QSym {
  static constexpr size_t kBlock = Five ? sizeof(block_q5_0) : sizeof(block_q4_0);
  static constexpr int kRW = 2, kRA = 3, kRW1 = 4;
  struct W {
    __m256i q;
    __m256 d;
  };
  struct A {
    __m256i q, off;
    __m256 d;
  };
  static W load_w(const uint8_t* b) {
    if constexpr (Five) return {_mm256_or_si256(nibbles(b + 6), high_bits(b + 2)), half8(b)};
    else return {nibbles(b + 2), half8(b)};
  }
  static A load_a(const uint8_t* b) {
    const ActQ8 a = load_q8_0(b);
    return {a.q, _mm256_slli_epi32(act_sums(a.q), Five ? 4 : 3), a.d};
  }
  static void madd(__m256& acc, const W& w, const A& a) {
    const __m256i s = _mm256_sub_epi32(dot_u8s8(w.q, a.q), a.off);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(w.d, a.d), acc);
  }
};

template <bool Five>
struct QMin {
  static constexpr size_t kBlock = Five ? sizeof(block_q5_1) : sizeof(block_q4_1);
  static constexpr int kRW = 2, kRA = 3, kRW1 = 4;
  struct W {
    __m256i q;
    __m256 d, m;
  };
  struct A {
    __m256i q;
    __m256 d, sd;
  };
  static W load_w(const uint8_t* b) {
    if constexpr (Five) return {_mm256_or_si256(nibbles(b + 8), high_bits(b + 4)), half8(b), half8(b + 2)};
    else return {nibbles(b + 4), half8(b), half8(b + 2)};
  }
  static A load_a(const uint8_t* b) {
    const ActQ8 a = load_q8_0(b);
    return {a.q, a.d, _mm256_mul_ps(_mm256_cvtepi32_ps(act_sums(a.q)), a.d)};
  }
  static void madd(__m256& acc, const W& w, const A& a) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(w.q, a.q)), _mm256_mul_ps(w.d, a.d), acc);
    acc = _mm256_fmadd_ps(w.m, a.sd, acc);
  }
};

struct Q8_0 {
  static constexpr size_t kBlock = sizeof(block_q8_0);
  static constexpr int kRW = 2, kRA = 3, kRW1 = 4;
  struct W {
    __m256i q, absq;
    __m256 d;
  };
  using A = ActQ8;
  static W load_w(const uint8_t* b) {
    const __m256i q = load256(b + 2);
    return {q, _mm256_abs_epi8(q), half8(b)};
  }
  static A load_a(const uint8_t* b) { return load_q8_0(b); }
  static void madd(__m256& acc, const W& w, const A& a) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(w.absq, _mm256_sign_epi8(a.q, w.q))), _mm256_mul_ps(w.d, a.d), acc);
  }
};

// Weight rows are prefetched this many bytes ahead (see dot_avx512.cpp).
constexpr int kPrefetch = 512;

template <class K, int RW, int RA>
struct MicroQ {
  // One block: RW weight blocks against RA activation blocks, act(c) giving activation c's.
  template <class Act>
  static inline void step(__m256 (&acc)[RW][RA], const uint8_t* w, size_t ws, Act act) {
    typename K::W wv[RW];
#pragma GCC unroll 8
    for (int r = 0; r < RW; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(w + size_t(r) * ws) + kPrefetch, _MM_HINT_T0);
      wv[r] = K::load_w(w + size_t(r) * ws);
    }
#pragma GCC unroll 8
    for (int c = 0; c < RA; c++) {
      const typename K::A& av = act(c);
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++) K::madd(acc[r][c], wv[r], av);
    }
  }
  static void store(__m256 (&acc)[RW][RA], float* y, size_t ys) {
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) y[size_t(c) * ys + size_t(r)] = hsum(acc[r][c]);
  }
  // a: q8_0 activation rows, as bytes apart.
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m256 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm256_setzero_ps();
    for (int64_t b = 0; b < k / QK; b++) {
      const uint8_t* ab = a + size_t(b) * kQ8;
      step(acc, w + size_t(b) * K::kBlock, ws, [&](int c) { return K::load_a(ab + size_t(c) * as); });
    }
    store(acc, y, ys);
  }
};

// The same over activations prepared by tile_q: rows of K::A per block, as bytes apart.
template <class K, int RW, int RA>
struct MicroQX {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    using M = MicroQ<K, RW, RA>;
    __m256 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm256_setzero_ps();
    for (int64_t b = 0; b < k / QK; b++)
      M::step(acc, w + size_t(b) * K::kBlock, ws,
              [&](int c) -> const typename K::A& { return reinterpret_cast<const typename K::A*>(a + size_t(c) * as)[b]; });
    M::store(acc, y, ys);
  }
};

// ---- float weights over f32 activations, 8 a step, scalar tail.

struct F32 {
  static constexpr size_t kBytes = 4;
  static constexpr int kRW = 4, kRA = 2, kRW1 = 4;
  static __m256 load(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
  static float one(const uint8_t* p) { return ldf(p); }
};
struct F16 {
  static constexpr size_t kBytes = 2;
  static constexpr int kRW = 4, kRA = 2, kRW1 = 4;
  static __m256 load(const uint8_t* p) { return _mm256_cvtph_ps(load128(p)); }
  static float one(const uint8_t* p) { return _cvtsh_ss(ld16(p)); }
};
struct BF16 {
  static constexpr size_t kBytes = 2;
  static constexpr int kRW = 4, kRA = 2, kRW1 = 4;
  static __m256 load(const uint8_t* p) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16)); }
  static float one(const uint8_t* p) { return bf16_to_f32(ld16(p)); }
};

template <class K, int RW, int RA>
struct MicroF {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m256 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      __m256 wv[RW];
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++) wv[r] = K::load(w + size_t(r) * ws + size_t(i) * K::kBytes);
#pragma GCC unroll 8
      for (int c = 0; c < RA; c++) {
        const __m256 av = _mm256_loadu_ps(reinterpret_cast<const float*>(a + size_t(c) * as + size_t(i) * 4));
#pragma GCC unroll 8
        for (int r = 0; r < RW; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], av, acc[r][c]);
      }
    }
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) {
        float s = hsum(acc[r][c]);
        for (int64_t j = i; j < k; j++)
          s += K::one(w + size_t(r) * ws + size_t(j) * K::kBytes) * ldf(a + size_t(c) * as + size_t(j) * 4);
        y[size_t(c) * ys + size_t(r)] = s;
      }
  }
};

// ---- K-quants over q8_K activations: a super-block is 8 chunks of 32 values (see the
// MicroK comment in dot_avx512.cpp for the kernel interface).

constexpr size_t kQ8K = sizeof(block_q8_K);  // d at 0, qs at 4, bsums at 260

// 8 scales then 8 mins of a q4_K/q5_K block as 16 x s16 (lanes 0-7 in the low 128 bits).
inline __m256i k4_scales_mins(const uint8_t* s) {
  const __m128i q = load128(s);
  const __m128i a = _mm_shuffle_epi32(q, _MM_SHUFFLE(2, 1, 2, 0));  // u0 u2 u1 u2
  const __m128i b = _mm_shuffle_epi32(q, _MM_SHUFFLE(1, 1, 0, 0));  // u0 u0 u1 u1
  const __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_set_epi32(4, 0, 0, 0)),
                                   _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
  const __m128i hi = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
  return _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));
}

// Every s16 lane = s16 lane j (0..7) of a 128-bit half duplicated into both halves.
inline __m256i bcast16(__m256i dup, int j) { return _mm256_shuffle_epi8(dup, _mm256_set1_epi16(short(((2 * j + 1) << 8) | (2 * j)))); }

template <bool Five>
struct Q45K {
  static constexpr size_t kBlock = Five ? sizeof(block_q5_K) : sizeof(block_q4_K);
  static constexpr size_t kQs = Five ? 48 : 16;
  static constexpr int kRW = 2, kRA = 2, kRW1 = 2;
  struct S {
    __m256i sc;  // the 8 scales (s16) in both 128-bit halves
    __m256i mins;  // min of sub-block j in s16 lanes 2j, 2j + 1 (matching bsums)
    __m256 d, dmin;
  };
  static S prep(const uint8_t* b) {
    const __m256i sm = k4_scales_mins(b + 4);
    const __m256i m = _mm256_permute2x128_si256(sm, sm, 0x11);
    const __m256i mi = _mm256_set_epi8(15, 14, 15, 14, 13, 12, 13, 12, 11, 10, 11, 10, 9, 8, 9, 8, 7, 6, 7, 6, 5, 4, 5, 4, 3, 2, 3, 2,
                                       1, 0, 1, 0);
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(int(ld32(b))));
    return {_mm256_permute2x128_si256(sm, sm, 0x00), _mm256_shuffle_epi8(m, mi), _mm256_broadcastss_ps(dd),
            _mm256_broadcastss_ps(_mm_movehdup_ps(dd))};
  }
  static __m256i start(__m256& acc, const S& s, const uint8_t* ab) {
    const __m256i im = _mm256_madd_epi16(load256(ab + 260), s.mins);
    acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(im), _mm256_mul_ps(s.dmin, _mm256_set1_ps(ldf(ab))), acc);
    return _mm256_setzero_si256();
  }
  // Chunk j = sub-block j: low nibbles of qs[32 (j/2)..] for even j, high for odd; 5th bit j of qh.
  static void chunk(const uint8_t* b, const S& s, int j, __m256i& q, __m256i& sc) {
    const __m256i x = load256(b + kQs + 32 * (j / 2));
    q = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(x, 4) : x, _mm256_set1_epi8(0x0F));
    if constexpr (Five) {
      const __m256i hb = load256(b + 16);
      const __m256i h = j <= 4 ? _mm256_slli_epi16(hb, 4 - j) : _mm256_srli_epi16(hb, j - 4);  // bit j -> bit 4
      q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    }
    sc = bcast16(s.sc, j);
  }
  static void finish(__m256& acc, __m256i isum, const S& s, const uint8_t* ab) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s.d, _mm256_set1_ps(ldf(ab))), acc);
  }
};

struct Q6K {
  static constexpr size_t kBlock = sizeof(block_q6_K);  // ql 0, qh 128, scales 192, d 208
  static constexpr int kRW = 2, kRA = 2, kRW1 = 2;
  struct S {
    __m256i lo, hi;  // scales 0-7 / 8-15 (s16) in both 128-bit halves
    __m256i off;     // -32 x the 16 scales
    __m256 d;
  };
  static S prep(const uint8_t* b) {
    const __m256i sc = _mm256_cvtepi8_epi16(load128(b + 192));
    return {_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11),
            _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 5)), half8(b + 208)};
  }
  static __m256i start(__m256&, const S& s, const uint8_t* ab) { return _mm256_madd_epi16(load256(ab + 260), s.off); }
  // Chunk j = values 32j..32j+31 = group g = j % 4 of half h = j / 4: nibble g / 2 of
  // ql[64 h + 32 (g & 1)..], bits 2g, 2g + 1 of qh[32 h..]; scales 2j (lanes 0-7), 2j + 1 (8-15).
  static void chunk(const uint8_t* b, const S& s, int j, __m256i& q, __m256i& sc) {
    const int h = j / 4, g = j % 4;
    const __m256i x = load256(b + 64 * h + 32 * (g & 1));
    const __m256i lo = _mm256_and_si256(g / 2 ? _mm256_srli_epi16(x, 4) : x, _mm256_set1_epi8(0x0F));
    const __m256i hb = load256(b + 128 + 32 * h);
    const __m256i hi = 2 * g <= 4 ? _mm256_slli_epi16(hb, 4 - 2 * g) : _mm256_srli_epi16(hb, 2 * g - 4);
    q = _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    const int j0 = (2 * j) % 8, j1 = (2 * j + 1) % 8;
    const __m256i idx = _mm256_set_m128i(_mm_set1_epi16(short(((2 * j1 + 1) << 8) | (2 * j1))), _mm_set1_epi16(short(((2 * j0 + 1) << 8) | (2 * j0))));
    sc = _mm256_shuffle_epi8(j < 4 ? s.lo : s.hi, idx);
  }
  static void finish(__m256& acc, __m256i isum, const S& s, const uint8_t* ab) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s.d, _mm256_set1_ps(ldf(ab))), acc);
  }
};

template <class K, int RW, int RA>
struct MicroK {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m256 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < k / QK_K; sb++) {
      const uint8_t* wb = w + size_t(sb) * K::kBlock;
      const uint8_t* ab = a + size_t(sb) * kQ8K;
      typename K::S st[RW];
      __m256i isum[RW][RA];
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++) {
        for (size_t off = 0; off < K::kBlock; off += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wb + size_t(r) * ws) + 3 * K::kBlock + off, _MM_HINT_T0);
        st[r] = K::prep(wb + size_t(r) * ws);
      }
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RA; c++) isum[r][c] = K::start(acc[r][c], st[r], ab + size_t(c) * as);
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) {
        __m256i q[RW], sc[RW];
#pragma GCC unroll 8
        for (int r = 0; r < RW; r++) K::chunk(wb + size_t(r) * ws, st[r], j, q[r], sc[r]);
#pragma GCC unroll 8
        for (int c = 0; c < RA; c++) {
          const __m256i av = load256(ab + size_t(c) * as + 4 + 32 * size_t(j));
#pragma GCC unroll 8
          for (int r = 0; r < RW; r++)
            isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], av), sc[r]));
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RA; c++) K::finish(acc[r][c], isum[r][c], st[r], ab + size_t(c) * as);
    }
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) y[size_t(c) * ys + size_t(r)] = hsum(acc[r][c]);
  }
};

// ---- tiles

template <template <class, int, int> class M, class K, int RW, int... RA>
constexpr std::array<MicroFn, sizeof...(RA)> micro_row(std::integer_sequence<int, RA...>) {
  return {&M<K, RW, RA + 1>::run...};
}
template <template <class, int, int> class M, class K, int... RW>
constexpr std::array<std::array<MicroFn, K::kRA>, sizeof...(RW)> micro_grid(std::integer_sequence<int, RW...>) {
  return {micro_row<M, K, RW + 1>(std::make_integer_sequence<int, K::kRA>())...};
}
template <template <class, int, int> class M, class K, int... RW>
constexpr std::array<MicroFn, sizeof...(RW)> micro_col(std::integer_sequence<int, RW...>) {
  return {&M<K, RW + 1, 1>::run...};
}

template <template <class, int, int> class M, class K>
void tile(int64_t k, const void* w, size_t ws, int nw, const void* a, size_t as, int na, float* y, size_t ys) {
  static constexpr auto grid = micro_grid<M, K>(std::make_integer_sequence<int, K::kRW>());
  static constexpr auto col = micro_col<M, K>(std::make_integer_sequence<int, K::kRW1>());
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  if (na == 1) {
    for (int r0 = 0; r0 < nw; r0 += K::kRW1)
      col[size_t(std::min(K::kRW1, nw - r0) - 1)](k, wb + size_t(r0) * ws, ws, ab, as, y + r0, ys);
    return;
  }
  for (int r0 = 0; r0 < nw; r0 += K::kRW) {
    const int rw = std::min(K::kRW, nw - r0);
    for (int c0 = 0; c0 < na; c0 += K::kRA)
      grid[size_t(rw - 1)][size_t(std::min(K::kRA, na - c0) - 1)](k, wb + size_t(r0) * ws, ws, ab + size_t(c0) * as, as,
                                                                  y + size_t(c0) * ys + size_t(r0), ys);
  }
}

// Tiles of the q8_0-activation kernels: with several weight row groups to sweep, each
// activation block is prepared once into a per-thread buffer (see dot_avx512.cpp).
template <class K>
void tile_q(int64_t k, const void* w, size_t ws, int nw, const void* a, size_t as, int na, float* y, size_t ys) {
  if (na == 1 || nw <= K::kRW) return tile<MicroQ, K>(k, w, ws, nw, a, as, na, y, ys);
  static constexpr auto grid = micro_grid<MicroQX, K>(std::make_integer_sequence<int, K::kRW>());
  const int64_t nb = k / QK;
  thread_local std::vector<typename K::A> buf;
  if (buf.size() < size_t(na * nb)) buf.resize(size_t(na * nb));
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  for (int c = 0; c < na; c++)
    for (int64_t b = 0; b < nb; b++) buf[size_t(c * nb + b)] = K::load_a(ab + size_t(c) * as + size_t(b) * kQ8);
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(buf.data());
  const size_t xs = size_t(nb) * sizeof(typename K::A);
  for (int r0 = 0; r0 < nw; r0 += K::kRW) {
    const int rw = std::min(K::kRW, nw - r0);
    for (int c0 = 0; c0 < na; c0 += K::kRA)
      grid[size_t(rw - 1)][size_t(std::min(K::kRA, na - c0) - 1)](k, wb + size_t(r0) * ws, ws, xb + size_t(c0) * xs, xs,
                                                                  y + size_t(c0) * ys + size_t(r0), ys);
  }
}

// ---- activation quantizers: the bytes of quantize_row_q8_0_ref / quantize_row_q8_K_ref.

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// roundf: to nearest, ties away from zero.
inline __m256 round_away(__m256 p) {
  const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(p, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 one = _mm256_or_ps(_mm256_and_ps(p, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
  return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

// 32 s32 (each in -127..127) -> 32 int8 in order.
inline __m256i pack32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

void quantize_q8_0(const float* x, void* out, int64_t k) {
  uint8_t* y = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < k / QK; b++, x += QK, y += kQ8) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) m = _mm256_max_ps(m, abs_ps(v[i] = _mm256_loadu_ps(x + 8 * i)));
    const float d = hmax(m) / 127, id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    std::memcpy(y, &dh, 2);
    const __m256 s = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v[i], s)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 2), pack32(q[0], q[1], q[2], q[3]));
  }
}

void quantize_q8_K(const float* x, void* out, int64_t k) {
  uint8_t* y = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < k / QK_K; b++, x += QK_K, y += kQ8K) {
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < QK_K / 8; i++) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + 8 * i)));
    const float amax = hmax(m);
    if (amax == 0) {
      std::memset(y, 0, kQ8K);
      continue;
    }
    float max = 0;
    for (int i = 0; i < QK_K / 8; i++) {
      const int e = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * i)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (e) {
        max = x[8 * i + __builtin_ctz(unsigned(e))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 s = _mm256_set1_ps(iscale);
    for (int i = 0; i < QK_K / 32; i++) {
      __m256i q[4];
      for (int j = 0; j < 4; j++)
        q[j] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * i + 8 * j), s)), _mm256_set1_epi32(127));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 4 + 32 * i), pack32(q[0], q[1], q[2], q[3]));
      const int16_t s0 = int16_t(hsum_i32(_mm256_add_epi32(q[0], q[1]))), s1 = int16_t(hsum_i32(_mm256_add_epi32(q[2], q[3])));
      std::memcpy(y + 260 + 4 * i, &s0, 2);
      std::memcpy(y + 262 + 4 * i, &s1, 2);
    }
    const float d = 1 / iscale;
    std::memcpy(y, &d, 4);
  }
}

const WeightKernel kKernels[] = {
    {DType::F32, DType::F32, tile<MicroF, F32>},
    {DType::F16, DType::F32, tile<MicroF, F16>},
    {DType::BF16, DType::F32, tile<MicroF, BF16>},
    {DType::Q4_0, DType::Q8_0, tile_q<QSym<false>>},
    {DType::Q4_1, DType::Q8_0, tile_q<QMin<false>>},
    {DType::Q5_0, DType::Q8_0, tile_q<QSym<true>>},
    {DType::Q5_1, DType::Q8_0, tile_q<QMin<true>>},
    {DType::Q8_0, DType::Q8_0, tile_q<Q8_0>},
    {DType::Q4_K, DType::Q8_K, tile<MicroK, Q45K<false>>},
    {DType::Q5_K, DType::Q8_K, tile<MicroK, Q45K<true>>},
    {DType::Q6_K, DType::Q8_K, tile<MicroK, Q6K>},
};

}  // namespace

const CpuDotKernels kDot = {kKernels, int(sizeof(kKernels) / sizeof(kKernels[0])), quantize_q8_0, quantize_q8_K};

}  // namespace avx2

}  // namespace aha
