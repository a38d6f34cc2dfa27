// AVX-512 (F/BW/DQ/VL) dot-product tiles, compiled twice: without VNNI into namespace avx512
// (dot_avx512.cpp) and with it into avx512vnni (dot_avx512vnni.cpp), where the int8 products
// become vpdpbusd / vpdpwssd. Tested against dot_ref.cpp.
//
// A tile is swept in micro-tiles of RW weight rows x RA activation rows with RW*RA vector
// accumulators: each weight vector loaded (and unpacked) is used RA times, each activation
// vector RW times. Decode (one activation row) uses taller micro-tiles (kRW1 rows) so more
// weight rows stream at once.
//
// Integer products use vpmaddubsw (u8 x s8 -> s16 pairs) then vpmaddwd (-> s32), or vpdpbusd
// (u8 x s8 -> s32, accumulating) with VNNI. Weight quants
// stay unsigned as stored (q4: 0..15, q5: 0..31, q6: 0..63) and their offset (-8, -16, -32) is
// subtracted through the sums of the activation quants; signed q8_0 weights move their sign
// onto the activation (|w| * (sign(w) a)). No s16 sum saturates (63 * 127 * 2 < 32767), so
// every block's integer dot product is exact and only the float summation order differs
// from the reference.
// GCC 12's _mm512_undefined_*() self-initialize, which -Wuninitialized reports in every inlined intrinsic.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "backends/cpu/dot.h"
#include "core/quants.h"

namespace aha {

namespace AHA_DOT_AVX512_NS {

namespace {

using MicroFn = void (*)(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys);

inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m512i load512(const uint8_t* p) { return _mm512_loadu_si512(p); }
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

// acc + the sums of u8 x s8 products over each 4 bytes -> 16 s32 lanes.
inline __m512i dot_u8s8_acc(__m512i acc, __m512i u, __m512i s) {
#if defined(__AVX512VNNI__)
  return _mm512_dpbusd_epi32(acc, u, s);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}
inline __m512i dot_u8s8(__m512i u, __m512i s) {
#if defined(__AVX512VNNI__)
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
#else
  return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}
// acc + the s16 pair products x * y summed into s32 lanes.
inline __m512i madd16_acc(__m512i acc, __m512i x, __m512i y) {
#if defined(__AVX512VNNI__)
  return _mm512_dpwssd_epi32(acc, x, y);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(x, y));
#endif
}

// f32 lanes 0-7 = fp16 at p, lanes 8-15 = fp16 at p + off (0 when Half).
template <bool Half>
inline __m512 scales2(const uint8_t* p, size_t off) {
  const __m128i lo = _mm_set1_epi16(short(ld16(p)));
  const __m128i hi = Half ? _mm_setzero_si128() : _mm_set1_epi16(short(ld16(p + off)));
  return _mm512_cvtph_ps(_mm256_set_m128i(hi, lo));
}

// The first 32 bytes of a pair of blocks of `block` bytes at p (only the first block when Half;
// the rest zero), for reading both blocks' fp16 scales with one load.
template <bool Half>
inline __m256i pair_head(const uint8_t* p, size_t block) {
  return Half ? _mm256_maskz_loadu_epi8(__mmask32((1u << block) - 1), p) : load256(p);
}

// f32 lanes 0-7 = the fp16 at byte O0 (< 16) of head, lanes 8-15 = the fp16 at byte O1 (16..30).
template <int O0, int O1>
inline __m512 scales_at(__m256i head) {
  static_assert(O0 >= 0 && O0 < 15 && O1 >= 16 && O1 < 31, "fp16 offsets");
  const __m256i idx = _mm256_set_m128i(_mm_set1_epi16(short(((O1 - 15) << 8) | (O1 - 16))), _mm_set1_epi16(short(((O0 + 1) << 8) | O0)));
  return _mm512_cvtph_ps(_mm256_shuffle_epi8(head, idx));
}

// 32 bytes at p, then 32 bytes at p + off (zeros when Half).
template <bool Half>
inline __m512i two256(const uint8_t* p, size_t off) {
  const __m256i lo = load256(p);
  return Half ? _mm512_zextsi256_si512(lo) : _mm512_inserti64x4(_mm512_castsi256_si512(lo), load256(p + off), 1);
}

// Per 16-bit lane shift counts: `lo` in the lower 256 bits, `hi` in the upper.
inline __m512i shift_halves(short lo, short hi) {
  return _mm512_inserti64x4(_mm512_set1_epi16(lo), _mm256_set1_epi16(hi), 1);
}

// The 32 nibbles of the 16-byte q4 block(s) at p (and p + off) as bytes 0..15 in element order:
// each 16 bytes are broadcast to two 128-bit lanes, the first keeps the low nibbles, the second the high.
template <bool Half>
inline __m512i nibbles2(const uint8_t* p, size_t off) {
  const __m256i a = _mm256_broadcastsi128_si256(load128(p));
  const __m512i x = Half ? _mm512_zextsi256_si512(a)
                         : _mm512_inserti64x4(_mm512_castsi256_si512(a), _mm256_broadcastsi128_si256(load128(p + off)), 1);
  const __m512i shift = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0, 0x0004000400040004,
                                         0x0004000400040004, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi16(x, shift), _mm512_set1_epi8(0x0F));
}

// 5th bits of two q5 blocks (32-bit qh at p and p + off) added as 16 to their bytes.
template <bool Half>
inline __m512i add_high_bit(__m512i q, const uint8_t* p, size_t off) {
  const uint64_t bits = uint64_t(ld32(p)) | (Half ? 0 : uint64_t(ld32(p + off)) << 32);
  return _mm512_mask_add_epi8(q, _cvtu64_mask64(bits), q, _mm512_set1_epi8(16));
}

// ---- weights over q8_0 activations. A kernel K has W / A (one step of weight / activation in
// registers), load_w<Half>(block), load_a<Half>(block) and madd(acc, W, A). A step is two
// 32-blocks; an odd last block is a Half step with the upper lanes zero.

constexpr size_t kQ8 = sizeof(block_q8_0);

struct ActQ8 {
  __m512i q;  // 64 int8
  __m512 d;   // 8 lanes per block
};

template <bool Half>
inline ActQ8 load_q8_0(const uint8_t* b) {
  return {two256<Half>(b + 2, kQ8), scales2<Half>(b, kQ8)};
}

// Activation quant sums laid out like dot_u8s8's lanes.
inline __m512i act_sums(__m512i q) { return dot_u8s8(_mm512_set1_epi8(1), q); }

// q4_0 / q5_0: x = d (q - Off).
template <bool Five>
struct QSym {
  static constexpr size_t kBlock = Five ? sizeof(block_q5_0) : sizeof(block_q4_0);
  static constexpr int kRW = 4, kRA = 4, kRW1 = 6;
  struct W {
    __m512i q;
    __m512 d;
  };
  struct A {
    __m512i q, noff;  // noff: -Off x the activation sums
    __m512 d;
  };
  template <bool Half>
  static W load_w(const uint8_t* b) {
    const __m512 d = scales_at<0, int(kBlock)>(pair_head<Half>(b, kBlock));
    if constexpr (Five) return {add_high_bit<Half>(nibbles2<Half>(b + 6, kBlock), b + 2, kBlock), d};
    else return {nibbles2<Half>(b + 2, kBlock), d};
  }
  template <bool Half>
  static A load_a(const uint8_t* b) {
    const ActQ8 a = load_q8_0<Half>(b);
    return {a.q, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(act_sums(a.q), Five ? 4 : 3)), a.d};
  }
  static void madd(__m512& acc, const W& w, const A& a) {
    const __m512i s = dot_u8s8_acc(a.noff, w.q, a.q);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(w.d, a.d), acc);
  }
};

// q4_1 / q5_1: x = d q + m; the m term is m * da * (sum of the activation quants).
template <bool Five>
struct QMin {
  static constexpr size_t kBlock = Five ? sizeof(block_q5_1) : sizeof(block_q4_1);
  static constexpr int kRW = 4, kRA = 3, kRW1 = 6;
  struct W {
    __m512i q;
    __m512 d, m;
  };
  struct A {
    __m512i q;
    __m512 d, sd;  // sd: da x the activation sums
  };
  template <bool Half>
  static W load_w(const uint8_t* b) {
    const __m256i head = pair_head<Half>(b, kBlock);
    const __m512 d = scales_at<0, int(kBlock)>(head), m = scales_at<2, int(kBlock) + 2>(head);
    if constexpr (Five) return {add_high_bit<Half>(nibbles2<Half>(b + 8, kBlock), b + 4, kBlock), d, m};
    else return {nibbles2<Half>(b + 4, kBlock), d, m};
  }
  template <bool Half>
  static A load_a(const uint8_t* b) {
    const ActQ8 a = load_q8_0<Half>(b);
    return {a.q, a.d, _mm512_mul_ps(_mm512_cvtepi32_ps(act_sums(a.q)), a.d)};
  }
  static void madd(__m512& acc, const W& w, const A& a) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_u8s8(w.q, a.q)), _mm512_mul_ps(w.d, a.d), acc);
    acc = _mm512_fmadd_ps(w.m, a.sd, acc);
  }
};

struct Q8_0 {
  static constexpr size_t kBlock = sizeof(block_q8_0);
  static constexpr int kRW = 4, kRA = 4, kRW1 = 8;  // decode: 8 rows in flight (bench_dot: 3-5% over 6 on two threads)
  template <bool Half>
  static __m512 scales(const uint8_t* b) {
    return scales2<Half>(b, kBlock);
  }
#if defined(__AVX512VNNI__)
  // w + 128 as u8 against the signed activation quants: the 128 x (sum of a) this adds is
  // taken off through the accumulator's start value, computed once per activation block.
  struct W {
    __m512i uq;
    __m512 d;
  };
  struct A {
    __m512i q, ncorr;
    __m512 d;
  };
  template <bool Half>
  static W load_w(const uint8_t* b) {
    return {_mm512_xor_si512(two256<Half>(b + 2, kBlock), _mm512_set1_epi8(char(0x80))), scales<Half>(b)};
  }
  template <bool Half>
  static A load_a(const uint8_t* b) {
    const ActQ8 a = load_q8_0<Half>(b);
    return {a.q, _mm512_sub_epi32(_mm512_setzero_si512(), dot_u8s8(_mm512_set1_epi8(char(0x80)), a.q)), a.d};
  }
  static void madd(__m512& acc, const W& w, const A& a) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_u8s8_acc(a.ncorr, w.uq, a.q)), _mm512_mul_ps(w.d, a.d), acc);
  }
#else
  // |w| as u8 against sign(w) a (vpmaddubsw's u8 x s8 cannot take w + 128: its pair sums would saturate).
  struct W {
    __m512i absq;
    __mmask64 neg;
    __m512 d;
  };
  using A = ActQ8;
  template <bool Half>
  static W load_w(const uint8_t* b) {
    const __m512i q = two256<Half>(b + 2, kBlock);
    return {_mm512_abs_epi8(q), _mm512_movepi8_mask(q), scales<Half>(b)};
  }
  template <bool Half>
  static A load_a(const uint8_t* b) {
    return load_q8_0<Half>(b);
  }
  static void madd(__m512& acc, const W& w, const A& a) {
    const __m512i sa = _mm512_mask_sub_epi8(a.q, w.neg, _mm512_setzero_si512(), a.q);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_u8s8(w.absq, sa)), _mm512_mul_ps(w.d, a.d), acc);
  }
#endif
};

// Weight rows are prefetched this many bytes ahead: with several rows streaming at once the
// hardware prefetcher alone leaves the decode loop waiting on DRAM.
constexpr int kPrefetch = 512;

template <class K, int RW, int RA>
struct MicroQ {
  // One step: RW weight block pairs against RA activation steps, act(c) giving activation c's.
  template <bool Half, class Act>
  static inline void step(__m512 (&acc)[RW][RA], const uint8_t* w, size_t ws, Act act) {
    typename K::W wv[RW];
#pragma GCC unroll 8
    for (int r = 0; r < RW; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(w + size_t(r) * ws) + kPrefetch, _MM_HINT_T0);
      wv[r] = K::template load_w<Half>(w + size_t(r) * ws);
    }
#pragma GCC unroll 8
    for (int c = 0; c < RA; c++) {
      const typename K::A& av = act(c);
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++) K::madd(acc[r][c], wv[r], av);
    }
  }
  static void store(__m512 (&acc)[RW][RA], float* y, size_t ys) {
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) y[size_t(c) * ys + size_t(r)] = _mm512_reduce_add_ps(acc[r][c]);
  }
  // a: q8_0 activation rows, as bytes apart.
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m512 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_ps();
    const int64_t nb = k / QK;
    for (int64_t b = 0; b + 1 < nb; b += 2) {
      const uint8_t* ab = a + size_t(b) * kQ8;
      step<false>(acc, w + size_t(b) * K::kBlock, ws, [&](int c) { return K::template load_a<false>(ab + size_t(c) * as); });
    }
    if (nb & 1) {
      const uint8_t* ab = a + size_t(nb - 1) * kQ8;
      step<true>(acc, w + size_t(nb - 1) * K::kBlock, ws, [&](int c) { return K::template load_a<true>(ab + size_t(c) * as); });
    }
    store(acc, y, ys);
  }
};

// The same over activations prepared by expand_acts: rows of K::A per step, as bytes apart.
template <class K, int RW, int RA>
struct MicroQX {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    using M = MicroQ<K, RW, RA>;
    __m512 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_ps();
    const int64_t nb = k / QK;
    auto act = [&](int64_t s) {
      return [=](int c) -> const typename K::A& { return reinterpret_cast<const typename K::A*>(a + size_t(c) * as)[s]; };
    };
    for (int64_t b = 0; b + 1 < nb; b += 2) M::template step<false>(acc, w + size_t(b) * K::kBlock, ws, act(b / 2));
    if (nb & 1) M::template step<true>(acc, w + size_t(nb - 1) * K::kBlock, ws, act(nb / 2));
    M::store(acc, y, ys);
  }
};

// ---- float weights over f32 activations: 16 elements a step, masked tail.

struct F32 {
  static constexpr size_t kBytes = 4;
  static constexpr int kRW = 4, kRA = 4, kRW1 = 8;
  static __m512 load(const uint8_t* p) { return _mm512_loadu_ps(p); }
  static __m512 load_mask(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};

struct F16 {
  static constexpr size_t kBytes = 2;
  static constexpr int kRW = 4, kRA = 4, kRW1 = 8;
  static __m512 load(const uint8_t* p) { return _mm512_cvtph_ps(load256(p)); }
  static __m512 load_mask(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};

struct BF16 {
  static constexpr size_t kBytes = 2;
  static constexpr int kRW = 4, kRA = 4, kRW1 = 8;
  static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 load(const uint8_t* p) { return widen(load256(p)); }
  static __m512 load_mask(const uint8_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
};

template <class K, int RW, int RA>
struct MicroF {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m512 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      __m512 wv[RW];
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++) wv[r] = K::load(w + size_t(r) * ws + size_t(i) * K::kBytes);
#pragma GCC unroll 8
      for (int c = 0; c < RA; c++) {
        const __m512 av = _mm512_loadu_ps(a + size_t(c) * as + size_t(i) * 4);
#pragma GCC unroll 8
        for (int r = 0; r < RW; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], av, acc[r][c]);
      }
    }
    if (i < k) {
      const __mmask16 m = __mmask16((1u << (k - i)) - 1);
      __m512 wv[RW];
      for (int r = 0; r < RW; r++) wv[r] = K::load_mask(w + size_t(r) * ws + size_t(i) * K::kBytes, m);
      for (int c = 0; c < RA; c++) {
        const __m512 av = _mm512_maskz_loadu_ps(m, a + size_t(c) * as + size_t(i) * 4);
        for (int r = 0; r < RW; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], av, acc[r][c]);
      }
    }
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) y[size_t(c) * ys + size_t(r)] = _mm512_reduce_add_ps(acc[r][c]);
  }
};

// ---- FP8 rows (FP8_B128) over f32 activations: per 128-element block an f32 scale, then 128
// e4m3 codes. An e4m3fn code b is the fp16 number with bits (b & 0x80) << 8 | (b & 0x7F) << 7,
// times 2^8 (the exponent biases differ by 8; subnormals map to subnormals), so 16 codes widen
// with one shift pair and a vcvtph2ps, and the 2^8 folds into the block's scale. (The NaN code
// would read as ±480; DeepSeek's checkpoints hold none.)
struct FP8 {
  static constexpr int kRW = 4, kRA = 4, kRW1 = 8;
  static __m512 load16(const uint8_t* p) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8),
                                      _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7F)), 7));
    return _mm512_cvtph_ps(h);
  }
};

template <class K, int RW, int RA>
struct MicroFp8 {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m512 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_ps();
    for (int64_t b = 0; b < k / 128; b++) {
      __m512 part[RW][RA];
      for (auto& row : part)
        for (auto& v : row) v = _mm512_setzero_ps();
      const uint8_t* wb = w + size_t(b) * 132;
#pragma GCC unroll 2
      for (int j = 0; j < 128; j += 16) {
        __m512 wv[RW];
#pragma GCC unroll 8
        for (int r = 0; r < RW; r++) wv[r] = K::load16(wb + size_t(r) * ws + 4 + size_t(j));
#pragma GCC unroll 8
        for (int c = 0; c < RA; c++) {
          const __m512 av = _mm512_loadu_ps(a + size_t(c) * as + size_t(b * 128 + j) * 4);
#pragma GCC unroll 8
          for (int r = 0; r < RW; r++) part[r][c] = _mm512_fmadd_ps(wv[r], av, part[r][c]);
        }
      }
      for (int r = 0; r < RW; r++) {
        float scale;
        std::memcpy(&scale, wb + size_t(r) * ws, 4);
        const __m512 sv = _mm512_set1_ps(scale * 256.0f);
        for (int c = 0; c < RA; c++) acc[r][c] = _mm512_fmadd_ps(part[r][c], sv, acc[r][c]);
      }
    }
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) y[size_t(c) * ys + size_t(r)] = _mm512_reduce_add_ps(acc[r][c]);
  }
};

// ---- K-quants over q8_K activations. A super-block of 256 is 4 chunks of 64 values; per chunk
// a weight row gives 64 unsigned quants and the s16 scale of each pair of them. K has S (per-row
// super-block state), prep(block) -> S, start(acc, S, act block) -> initial s32 sums (and the
// min term, into acc), chunk(block, S, i, q, sc), finish(acc, sums, S, act block).

constexpr size_t kQ8K = sizeof(block_q8_K);  // d at 0, qs at 4, bsums at 260

// 8 six-bit scales then 8 six-bit mins of a q4_K/q5_K block as 16 x s16 (get_scale_min_k4 for
// all j at once). Reads 16 bytes from s (the 12 scale bytes and 4 more of the block).
inline __m256i k4_scales_mins(const uint8_t* s) {
  const __m128i q = load128(s);                                     // u0 u1 u2 (32-bit)
  const __m128i a = _mm_shuffle_epi32(q, _MM_SHUFFLE(2, 1, 2, 0));  // u0 u2 u1 u2
  const __m128i b = _mm_shuffle_epi32(q, _MM_SHUFFLE(1, 1, 0, 0));  // u0 u0 u1 u1
  const __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_set_epi32(4, 0, 0, 0)),
                                   _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
  const __m128i hi = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
  return _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));
}

// s16 lanes 0-15 = v[j0], lanes 16-31 = v[j1] of the 16 x s16 in v.
inline __m512i pick2(__m256i v, short j0, short j1) {
  return _mm512_permutexvar_epi16(shift_halves(j0, j1), _mm512_castsi256_si512(v));
}

template <bool Five>
struct Q45K {
  static constexpr size_t kBlock = Five ? sizeof(block_q5_K) : sizeof(block_q4_K);
  static constexpr size_t kQs = Five ? 48 : 16;
  static constexpr int kRW = 2, kRA = 4, kRW1 = 4;
  struct S {
    __m256i sm;       // 8 scales, 8 mins (s16)
    __m512 d, dmin;
  };
  static S prep(const uint8_t* b) {
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(int(ld32(b))));  // d, dmin
    return {k4_scales_mins(b + 4), _mm512_broadcastss_ps(dd), _mm512_broadcastss_ps(_mm_movehdup_ps(dd))};
  }
  static __m512i start(__m512& acc, const S& s, const uint8_t* ab) {
    // Sub-block j's min multiplies bsums 2j and 2j + 1.
    const __m256i mins = _mm256_permutexvar_epi16(_mm256_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8), s.sm);
    const __m256i im = _mm256_madd_epi16(load256(ab + 260), mins);
    acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(im)), _mm512_mul_ps(s.dmin, _mm512_set1_ps(ldf(ab))), acc);
    return _mm512_setzero_si512();
  }
  // Chunk i = sub-blocks 2i (low nibbles of qs[32i..]) and 2i + 1 (high nibbles).
  static void chunk(const uint8_t* b, const S& s, int i, __m512i& q, __m512i& sc) {
    const __m512i x = _mm512_broadcast_i64x4(load256(b + kQs + 32 * i));
    q = _mm512_and_si512(_mm512_srlv_epi16(x, shift_halves(0, 4)), _mm512_set1_epi8(0x0F));
    if constexpr (Five) {
      const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8(char(1 << (2 * i))), _mm256_set1_epi8(char(1 << (2 * i + 1))), 1);
      const __mmask64 h = _mm512_test_epi8_mask(_mm512_broadcast_i64x4(load256(b + 16)), sel);
      q = _mm512_mask_add_epi8(q, h, q, _mm512_set1_epi8(16));
    }
    sc = pick2(s.sm, short(2 * i), short(2 * i + 1));
  }
  static void finish(__m512& acc, __m512i isum, const S& s, const uint8_t* ab) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(s.d, _mm512_set1_ps(ldf(ab))), acc);
  }
};

struct Q6K {
  static constexpr size_t kBlock = sizeof(block_q6_K);  // ql 0, qh 128, scales 192, d 208
  static constexpr int kRW = 2, kRA = 4, kRW1 = 4;
  struct S {
    __m256i sc, off;  // 16 scales (s16); -32 x scales
    __m512 d;
  };
  static S prep(const uint8_t* b) {
    const __m256i sc = _mm256_cvtepi8_epi16(load128(b + 192));
    return {sc, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 5)),
            _mm512_set1_ps(_cvtsh_ss(ld16(b + 208)))};
  }
  static __m512i start(__m512&, const S& s, const uint8_t* ab) {
    return _mm512_zextsi256_si512(_mm256_madd_epi16(load256(ab + 260), s.off));
  }
  // Chunk i = values 64i..64i+63: nibbles of ql[64 (i/2)..], low for even i, high for odd;
  // 2-bit highs from qh[32 (i/2)..] at bits (0, 2) for even i, (4, 6) for odd, per 32 values.
  static void chunk(const uint8_t* b, const S& s, int i, __m512i& q, __m512i& sc) {
    const int h = i / 2;
    const __m512i ql = load512(b + 64 * h), hb = _mm512_broadcast_i64x4(load256(b + 128 + 32 * h));
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    if (i % 2 == 0) {
      q = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(hb, shift_halves(4, 2)), m30));
    } else {
      q = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                          _mm512_and_si512(_mm512_srlv_epi16(hb, shift_halves(0, 2)), m30));
    }
    // s16 lane l covers values 2l, 2l + 1 of the chunk: scale 4i + l / 8.
    const __m512i group = _mm512_set_epi64(0x0003000300030003, 0x0003000300030003, 0x0002000200020002, 0x0002000200020002,
                                           0x0001000100010001, 0x0001000100010001, 0, 0);
    sc = _mm512_permutexvar_epi16(_mm512_add_epi16(group, _mm512_set1_epi16(short(4 * i))), _mm512_castsi256_si512(s.sc));
  }
  static void finish(__m512& acc, __m512i isum, const S& s, const uint8_t* ab) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(s.d, _mm512_set1_ps(ldf(ab))), acc);
  }
};

template <class K, int RW, int RA>
struct MicroK {
  static void run(int64_t k, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    __m512 acc[RW][RA];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < k / QK_K; sb++) {
      const uint8_t* wb = w + size_t(sb) * K::kBlock;
      const uint8_t* ab = a + size_t(sb) * kQ8K;
      typename K::S st[RW];
      __m512i isum[RW][RA];
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
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        __m512i q[RW], sc[RW];
#pragma GCC unroll 8
        for (int r = 0; r < RW; r++) K::chunk(wb + size_t(r) * ws, st[r], i, q[r], sc[r]);
#pragma GCC unroll 8
        for (int c = 0; c < RA; c++) {
          const __m512i av = load512(ab + size_t(c) * as + 4 + 64 * size_t(i));
#pragma GCC unroll 8
          for (int r = 0; r < RW; r++)
            isum[r][c] = madd16_acc(isum[r][c], _mm512_maddubs_epi16(q[r], av), sc[r]);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < RW; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RA; c++) K::finish(acc[r][c], isum[r][c], st[r], ab + size_t(c) * as);
    }
    for (int r = 0; r < RW; r++)
      for (int c = 0; c < RA; c++) y[size_t(c) * ys + size_t(r)] = _mm512_reduce_add_ps(acc[r][c]);
  }
};

// ---- tiles: sweep the nw x na tile with the micro-tiles of kernel K.

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

// Tiles of the q8_0-activation kernels. With several weight row groups to sweep, each
// activation step (quants, sums, scales) is prepared once into a per-thread buffer and read
// back by every group, instead of being prepared again by each.
template <class K>
void tile_q(int64_t k, const void* w, size_t ws, int nw, const void* a, size_t as, int na, float* y, size_t ys) {
  if (na == 1 || nw <= K::kRW) return tile<MicroQ, K>(k, w, ws, nw, a, as, na, y, ys);
  static constexpr auto grid = micro_grid<MicroQX, K>(std::make_integer_sequence<int, K::kRW>());
  const int64_t nb = k / QK, nsteps = (nb + 1) / 2;
  thread_local std::vector<typename K::A> buf;
  if (buf.size() < size_t(na * nsteps)) buf.resize(size_t(na * nsteps));
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  for (int c = 0; c < na; c++)
    for (int64_t s = 0; s < nsteps; s++) {
      const uint8_t* p = ab + size_t(c) * as + size_t(2 * s) * kQ8;
      buf[size_t(c * nsteps + s)] = 2 * s + 1 < nb ? K::template load_a<false>(p) : K::template load_a<true>(p);
    }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(buf.data());
  const size_t xs = size_t(nsteps) * sizeof(typename K::A);
  for (int r0 = 0; r0 < nw; r0 += K::kRW) {
    const int rw = std::min(K::kRW, nw - r0);
    for (int c0 = 0; c0 < na; c0 += K::kRA)
      grid[size_t(rw - 1)][size_t(std::min(K::kRA, na - c0) - 1)](k, wb + size_t(r0) * ws, ws, xb + size_t(c0) * xs, xs,
                                                                  y + size_t(c0) * ys + size_t(r0), ys);
  }
}

#if defined(__AVX512VNNI__)
// ---- q8_0 weights packed at load (kernels.h): in a 16-row group, block b's quants are 8 zmm of
// (dword j of rows 0..15), +128 as u8, so one vpdpbusd against activation dword j broadcast
// adds 4 products to each of 16 rows; the 128 x (sum of the activation block) this adds is the
// accumulator's start value. Each group is one long sequential stream (the file's layout has 8
// short ones per micro-tile, which the hardware prefetcher follows worse: bench_dot q8_0 at
// k = 1536, 17 GB/s in the file's layout, 23-26 packed, on two threads), and the per-row
// reductions are gone: lane r of a group's accumulator is row r.
constexpr int kPackGroup = 16;

// Lane r of acc[g][c] is row 16 g + r for activation row c; the last group has `live` rows.
template <int G, int RA>
inline void store_groups(__m512 (&acc)[G][RA], float* y, size_t ys, int live) {
  for (int g = 0; g < G; g++)
    for (int c = 0; c < RA; c++) {
      float* out = y + size_t(c) * ys + size_t(g) * kPackGroup;
      if (g == G - 1 && live < kPackGroup) _mm512_mask_storeu_ps(out, __mmask16((1u << live) - 1), acc[g][c]);
      else _mm512_storeu_ps(out, acc[g][c]);
    }
}

// A packed tile's micro-tiles: decode (one activation row) sweeps 4 groups at once; more rows,
// 2 groups × up to 4 rows. micro(groups, rows, first group, first row, live rows of the last group).
template <class Micro>
inline void sweep_packed(int nw, int na, Micro&& micro) {
  const int ng = (nw + kPackGroup - 1) / kPackGroup, gmax = na == 1 ? 4 : 2;
  for (int c0 = 0; c0 < na; c0 += 4)
    for (int g0 = 0; g0 < ng; g0 += gmax) {
      const int gn = std::min(gmax, ng - g0);
      micro(gn, std::min(4, na - c0), g0, c0, std::min(kPackGroup, nw - (g0 + gn - 1) * kPackGroup));
    }
}

// G groups x RA activation rows; the last group has `live` rows to store.
template <int G, int RA>
void micro_q8x16(int64_t nb, const uint8_t* w, size_t gs, const uint8_t* a, size_t as, const int32_t* corr, float* y,
                 size_t ys, int live) {
  __m512 acc[G][RA];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* ab = a + size_t(b) * kQ8;
    __m512 da[RA];
#pragma GCC unroll 4
    for (int c = 0; c < RA; c++) da[c] = _mm512_set1_ps(_cvtsh_ss(ld16(ab + size_t(c) * as)));
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
      const uint8_t* q = w + size_t(g) * gs + size_t(b) * 512;
      __m512i s0[RA], s1[RA];
#pragma GCC unroll 4
      for (int c = 0; c < RA; c++) s0[c] = _mm512_set1_epi32(corr[size_t(c) * size_t(nb) + size_t(b)]), s1[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int j = 0; j < 8; j += 2) {
        const __m512i w0 = load512(q + 64 * j), w1 = load512(q + 64 * j + 64);
#pragma GCC unroll 4
        for (int c = 0; c < RA; c++) {
          const uint8_t* aq = ab + size_t(c) * as + 2 + 4 * j;
          s0[c] = _mm512_dpbusd_epi32(s0[c], w0, _mm512_set1_epi32(int(ld32(aq))));
          s1[c] = _mm512_dpbusd_epi32(s1[c], w1, _mm512_set1_epi32(int(ld32(aq + 4))));
        }
      }
      const __m512 sw = _mm512_cvtph_ps(load256(w + size_t(g) * gs + size_t(nb) * 512 + size_t(b) * 32));
#pragma GCC unroll 4
      for (int c = 0; c < RA; c++)
        acc[g][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0[c], s1[c])), _mm512_mul_ps(sw, da[c]), acc[g][c]);
    }
  }
  store_groups<G, RA>(acc, y, ys, live);
}

using PackedMicroFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, const int32_t*, float*, size_t, int);

template <int G, int... RA>
constexpr std::array<PackedMicroFn, sizeof...(RA)> packed_row(std::integer_sequence<int, RA...>) {
  return {&micro_q8x16<G, RA + 1>...};
}

void tile_q8_0x16(int64_t k, const void* wv, size_t ws, int nw, const void* av, size_t as, int na, float* y, size_t ys) {
  static constexpr std::array<std::array<PackedMicroFn, 4>, 4> grid = {
      packed_row<1>(std::make_integer_sequence<int, 4>()), packed_row<2>(std::make_integer_sequence<int, 4>()),
      packed_row<3>(std::make_integer_sequence<int, 4>()), packed_row<4>(std::make_integer_sequence<int, 4>())};
  const int64_t nb = k / QK;
  const uint8_t* w = static_cast<const uint8_t*>(wv);
  const uint8_t* a = static_cast<const uint8_t*>(av);
  const size_t gs = size_t(kPackGroup) * ws;
  thread_local std::vector<int32_t> corr;
  if (corr.size() < size_t(na * nb)) corr.resize(size_t(na * nb));
  for (int c = 0; c < na; c++)
    for (int64_t b = 0; b < nb; b++) {
      const __m256i q = load256(a + size_t(c) * as + size_t(b) * kQ8 + 2);
      const __m512i s = _mm512_madd_epi16(_mm512_cvtepi8_epi16(q), _mm512_set1_epi16(1));
      corr[size_t(c * nb + b)] = -128 * _mm512_reduce_add_epi32(s);
    }
  sweep_packed(nw, na, [&](int gn, int ra, int g0, int c0, int live) {
    grid[size_t(gn - 1)][size_t(ra - 1)](nb, w + size_t(g0) * gs, gs, a + size_t(c0) * as, as, corr.data() + size_t(c0 * nb),
                                         y + size_t(c0) * ys + size_t(g0) * kPackGroup, ys, live);
  });
}

// ---- q4_K weights packed at load (packed.cpp): per 16-row group and super-block, 32 zmm of
// quants (sub-block j, dword u: for each row, values 8u..8u+3 in the low nibbles and 8u+4..8u+7
// in the high), then d and dmin of the 16 rows (fp16), then the 12 scale bytes transposed (byte b
// of rows 0..15 together), so the 6-bit scales and mins of 16 rows unpack in a few xmm ops.
constexpr size_t kQ4KSb = 16 * sizeof(block_q4_K);

// Sub-block j's scales (sc) and mins (mn) of the 16 rows as s32 lanes (get_scale_min_k4 on 16 rows).
inline void q4k_scales16(const uint8_t* t, __m512i (&sc)[8], __m512i (&mn)[8]) {
  __m128i b[12];
  for (int k = 0; k < 12; k++) b[k] = load128(t + 16 * k);
  const __m128i m63 = _mm_set1_epi8(63), m15 = _mm_set1_epi8(15);
  auto hi2 = [](__m128i x) { return _mm_and_si128(_mm_srli_epi16(x, 6), _mm_set1_epi8(3)); };  // bits 6-7 as 0..3
  for (int j = 0; j < 4; j++) {
    sc[j] = _mm512_cvtepu8_epi32(_mm_and_si128(b[j], m63));
    mn[j] = _mm512_cvtepu8_epi32(_mm_and_si128(b[j + 4], m63));
  }
  for (int j = 4; j < 8; j++) {
    const __m128i lo_sc = _mm_and_si128(b[j + 4], m15), lo_mn = _mm_and_si128(_mm_srli_epi16(b[j + 4], 4), m15);
    sc[j] = _mm512_cvtepu8_epi32(_mm_or_si128(lo_sc, _mm_slli_epi16(hi2(b[j - 4]), 4)));
    mn[j] = _mm512_cvtepu8_epi32(_mm_or_si128(lo_mn, _mm_slli_epi16(hi2(b[j]), 4)));
  }
}

// G groups x RA activation rows (q8_K); the last group has `live` rows to store.
template <int G, int RA>
void micro_q4kx16(int64_t nsb, const uint8_t* w, size_t gs, const uint8_t* a, size_t as, float* y, size_t ys, int live) {
  __m512 acc[G][RA];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < nsb; sb++) {
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
      const uint8_t* q = w + size_t(g) * gs + size_t(sb) * kQ4KSb;
      __m512i sc[8], mn[8];
      q4k_scales16(q + 2112, sc, mn);
      const __m512 d = _mm512_cvtph_ps(load256(q + 2048)), dmin = _mm512_cvtph_ps(load256(q + 2080));
      __m512i isum[RA], msum[RA];
      for (int c = 0; c < RA; c++) isum[c] = msum[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) {
        __m512i lo[4], hi[4];
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
          const __m512i v = load512(q + 64 * (4 * j + u));
          lo[u] = _mm512_and_si512(v, m4);
          hi[u] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
#pragma GCC unroll 4
        for (int c = 0; c < RA; c++) {
          const uint8_t* ab = a + size_t(c) * as + size_t(sb) * sizeof(block_q8_K);
          const uint8_t* aq = ab + 4 + 32 * j;
          __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
          for (int u = 0; u < 4; u++) {
            s = _mm512_dpbusd_epi32(s, lo[u], _mm512_set1_epi32(int(ld32(aq + 8 * u))));
            s = _mm512_dpbusd_epi32(s, hi[u], _mm512_set1_epi32(int(ld32(aq + 8 * u + 4))));
          }
          isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(s, sc[j]));
          const int bs = int(int16_t(ld16(ab + 260 + 4 * j))) + int(int16_t(ld16(ab + 262 + 4 * j)));
          msum[c] = _mm512_add_epi32(msum[c], _mm512_mullo_epi32(mn[j], _mm512_set1_epi32(bs)));
        }
      }
#pragma GCC unroll 4
      for (int c = 0; c < RA; c++) {
        const __m512 da = _mm512_set1_ps(ldf(a + size_t(c) * as + size_t(sb) * sizeof(block_q8_K)));
        acc[g][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(d, da), acc[g][c]);
        acc[g][c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[c]), _mm512_mul_ps(dmin, da), acc[g][c]);
      }
    }
  }
  store_groups<G, RA>(acc, y, ys, live);
}

using Q4KMicroFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t, int);
template <int G, int... RA>
constexpr std::array<Q4KMicroFn, sizeof...(RA)> q4k_row(std::integer_sequence<int, RA...>) {
  return {&micro_q4kx16<G, RA + 1>...};
}

void tile_q4_Kx16(int64_t k, const void* wv, size_t ws, int nw, const void* av, size_t as, int na, float* y, size_t ys) {
  static constexpr std::array<std::array<Q4KMicroFn, 4>, 4> grid = {
      q4k_row<1>(std::make_integer_sequence<int, 4>()), q4k_row<2>(std::make_integer_sequence<int, 4>()),
      q4k_row<3>(std::make_integer_sequence<int, 4>()), q4k_row<4>(std::make_integer_sequence<int, 4>())};
  const int64_t nsb = k / QK_K;
  const uint8_t* w = static_cast<const uint8_t*>(wv);
  const uint8_t* a = static_cast<const uint8_t*>(av);
  const size_t gs = size_t(kPackGroup) * ws;
  sweep_packed(nw, na, [&](int gn, int ra, int g0, int c0, int live) {
    grid[size_t(gn - 1)][size_t(ra - 1)](nsb, w + size_t(g0) * gs, gs, a + size_t(c0) * as, as, y + size_t(c0) * ys + size_t(g0) * kPackGroup, ys, live);
  });
}

const WeightKernel kPacked[] = {
    {DType::Q8_0, DType::Q8_0, tile_q8_0x16},
    {DType::Q4_K, DType::Q8_K, tile_q4_Kx16},
};
#endif

// ---- activation quantizers: the bytes of quantize_row_q8_0_ref / quantize_row_q8_K_ref.

// roundf: to nearest, ties away from zero.
inline __m512 round_away(__m512 p) {
  const __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(p, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(p), _mm512_set1_epi32(int(0x80000000u))), _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_mask_add_ps(t, up, t, one);
}

void quantize_q8_0(const float* x, void* out, int64_t k) {
  uint8_t* y = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < k / QK; b++, x += QK, y += kQ8) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    std::memcpy(y, &dh, 2);
    const __m512 v = _mm512_set1_ps(id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 2), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(round_away(_mm512_mul_ps(x0, v)))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 18), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(round_away(_mm512_mul_ps(x1, v)))));
  }
}

void quantize_q8_K(const float* x, void* out, int64_t k) {
  uint8_t* y = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < k / QK_K; b++, x += QK_K, y += kQ8K) {
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < QK_K / 16; i++) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)));
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0) {
      std::memset(y, 0, kQ8K);
      continue;
    }
    // The first value of largest magnitude sets the sign of the scale.
    float max = 0;
    for (int i = 0; i < QK_K / 16; i++) {
      const __mmask16 e = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (e) {
        max = x[16 * i + __builtin_ctz(e)];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m512 v = _mm512_set1_ps(iscale);
    for (int i = 0; i < QK_K / 16; i++) {
      const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), v)), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 4 + 16 * i), _mm512_cvtepi32_epi8(q));
      const int16_t s = int16_t(_mm512_reduce_add_epi32(q));
      std::memcpy(y + 260 + 2 * i, &s, 2);
    }
    const float d = 1 / iscale;
    std::memcpy(y, &d, 4);
  }
}

const WeightKernel kKernels[] = {
    {DType::F32, DType::F32, tile<MicroF, F32>},
    {DType::F16, DType::F32, tile<MicroF, F16>},
    {DType::BF16, DType::F32, tile<MicroF, BF16>},
    {DType::FP8_B128, DType::F32, tile<MicroFp8, FP8>},
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

#if defined(__AVX512VNNI__)
const CpuDotKernels kDot = {kKernels, int(sizeof(kKernels) / sizeof(kKernels[0])), quantize_q8_0, quantize_q8_K, kPacked,
                            int(sizeof(kPacked) / sizeof(kPacked[0]))};
#else
const CpuDotKernels kDot = {kKernels, int(sizeof(kKernels) / sizeof(kKernels[0])), quantize_q8_0, quantize_q8_K};
#endif

}  // namespace AHA_DOT_AVX512_NS

}  // namespace aha
