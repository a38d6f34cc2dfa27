// AMX-INT8 matrix-matrix tiles for the int8 weight dtypes. Tested against dot_ref.cpp.
//
// A tile call computes nw weight rows x na activation rows in three steps:
//  1. the activation rows (q8_0 or q8_K, as matmul quantized them) are packed once into the
//     layout tdpbssd wants for its B operand: per 16 rows and per sub-block of ks values
//     (ks = 32, or 16 for q6_K), ks/4 rows of 16 x 4 bytes; their scales as floats, and for
//     the dtypes with a min term, scale x the sum of the sub-block's quants;
//  2. every 32 weight rows are unpacked to signed int8 (row-major, the A operand as is) with a
//     float scale (and min) per sub-block, the block-wise dequantization minus the products;
//  3. for every 32 activation rows, each sub-block is one tdpbssd per 16 x 16 output tile
//     (exact int32 dot products of ks values), and AVX-512 adds them into float accumulators
//     with the weight-scale x activation-scale of the sub-block: the reference's per-block
//     float combination in another order.
// Tiles: tmm0-3 the four 16 x 16 s32 products, tmm4-5 two groups of 16 weight rows, tmm6-7 two
// groups of 16 activation rows. Fewer than kMinActRows activation rows (decode, small batches) go to the
// AVX-512 VNNI tiles, which stream the weights once without the unpacking.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/amx_tiles.h"
#include "backends/cpu/dot.h"
#include "core/quants.h"

namespace aha {

namespace amx {

namespace {

// Below these many activation rows the AVX-512 VNNI tiles are faster, which stream the weights
// once per 4 rows without unpacking them (native/dev/bench_dot.cpp with NA=8..128, one thread,
// 2026-12-01: at 8 rows VNNI beats AMX for every dtype, 1.3-4.6x; at 16 AMX wins for the file
// layouts and packed q8_0 (1.1-1.6x, q6_K even) but packed q4_K, whose nibbles are unpacked per
// 32-row panel, is still 1.9x slower; at 32 AMX wins for all).
constexpr int kMinActRows = 16;
constexpr int kMinActRowsUnpacked = 32;  // packed q4_K

// This thread's tiles shaped for sub-blocks of ks values (configuration id ks).
void configure(int ks) {
  TileConfig c;
  for (int t = 0; t < 4; t++) c.rows[t] = 16, c.colsb[t] = 64;          // C: 16 x 16 s32
  for (int t = 4; t < 6; t++) c.rows[t] = 16, c.colsb[t] = uint16_t(ks);  // A: 16 weight rows x ks
  for (int t = 6; t < 8; t++) c.rows[t] = uint8_t(ks / 4), c.colsb[t] = 64;  // B: ks/4 x (16 rows x 4)
  load_tile_config(ks, c);
}

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// ---- weight unpackers: one row of k values -> q[k] signed int8 in element order, scale[k/ks]
// and (HasMin) min[k/ks], so that x = scale * q + min per sub-block of ks.

struct WQ8_0 {
  static constexpr DType kType = DType::Q8_0;
  static constexpr int kSub = 32;
  static constexpr bool kHasMin = false;
  static void unpack(const uint8_t* w, int64_t k, int8_t* q, float* scale, float*) {
    for (int64_t b = 0; b < k / QK; b++, w += sizeof(block_q8_0)) {
      scale[b] = h2f(w);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + QK * b), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2)));
    }
  }
};

// 16 bytes of nibbles -> 32 values: low nibbles first, then high, minus off.
inline void nibbles(const uint8_t* p, int8_t* q, int off) {
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), m = _mm_set1_epi8(0x0F);
  const __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_sub_epi8(v, _mm256_set1_epi8(char(off))));
}

// 32 nibble values at q plus 16 where bit i of qh (32 bits) is set.
inline void add_bit5(int8_t* q, uint32_t qh) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_mask_add_epi8(v, __mmask32(qh), v, _mm256_set1_epi8(16)));
}

template <bool Five, bool Min>
struct WQLegacy {
  // q4_0 (d, qs), q4_1 (d, m, qs), q5_0 (d, qh, qs), q5_1 (d, m, qh, qs)
  static constexpr DType kType = Five ? (Min ? DType::Q5_1 : DType::Q5_0) : (Min ? DType::Q4_1 : DType::Q4_0);
  static constexpr int kSub = 32;
  static constexpr bool kHasMin = Min;
  static constexpr size_t kBlock = 2 + (Min ? 2 : 0) + (Five ? 4 : 0) + 16;
  static constexpr int kOff = Min ? 0 : (Five ? 16 : 8);
  static void unpack(const uint8_t* w, int64_t k, int8_t* q, float* scale, float* min) {
    for (int64_t b = 0; b < k / QK; b++, w += kBlock) {
      scale[b] = h2f(w);
      if (Min) min[b] = h2f(w + 2);
      const uint8_t* qs = w + kBlock - 16;
      if (Five) {
        uint32_t qh;
        std::memcpy(&qh, qs - 4, 4);
        nibbles(qs, q + QK * b, 0);
        add_bit5(q + QK * b, qh);
        if (kOff) {
          __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + QK * b));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + QK * b), _mm256_sub_epi8(v, _mm256_set1_epi8(char(kOff))));
        }
      } else {
        nibbles(qs, q + QK * b, kOff);
      }
    }
  }
};

// q4_K / q5_K: sub-block j of 32 is d sc[j] q - dmin mn[j].
template <bool Five>
struct WQ45K {
  static constexpr DType kType = Five ? DType::Q5_K : DType::Q4_K;
  static constexpr int kSub = 32;
  static constexpr bool kHasMin = true;
  static void unpack(const uint8_t* w, int64_t k, int8_t* q, float* scale, float* min) {
    const size_t bytes = Five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    for (int64_t sb = 0; sb < k / QK_K; sb++, w += bytes, q += QK_K, scale += 8, min += 8) {
      auto* x4 = reinterpret_cast<const block_q4_K*>(w);
      auto* x5 = reinterpret_cast<const block_q5_K*>(w);
      const float d = h2f(w), dmin = h2f(w + 2);
      const uint8_t* qs = Five ? x5->qs : x4->qs;
      for (int c = 0; c < 4; c++) {
        // 32 bytes: sub-block 2c in the low nibbles, 2c + 1 in the high.
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c)), m = _mm256_set1_epi8(0x0F);
        __m256i lo = _mm256_and_si256(x, m), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m);
        if (Five) {
          const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x5->qh));
          lo = _mm256_mask_add_epi8(lo, _mm256_test_epi8_mask(h, _mm256_set1_epi8(char(1 << (2 * c)))), lo, _mm256_set1_epi8(16));
          hi = _mm256_mask_add_epi8(hi, _mm256_test_epi8_mask(h, _mm256_set1_epi8(char(1 << (2 * c + 1)))), hi, _mm256_set1_epi8(16));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 64 * c), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 64 * c + 32), hi);
      }
      for (int j = 0; j < 8; j++) {
        uint8_t sc, mn;
        get_scale_min_k4(j, x4->scales, &sc, &mn);
        scale[j] = d * float(sc);
        min[j] = -dmin * float(mn);
      }
    }
  }
};

// q4_K packed at load (packed.cpp / dot_avx512_impl.h): a whole 16-row group at a time.
struct WQ4Kx16 {
  static constexpr DType kType = DType::Q4_K;
  static constexpr int kSub = 32;
  static constexpr bool kHasMin = true;
  static constexpr bool kGrouped = true;
  // 16 rows of k values → q (rows k apart), scale and min (rows k / 32 apart).
  static void unpack_group(const uint8_t* g, int64_t k, int8_t* q, float* scale, float* min) {
    const int64_t ns = k / 32;
    for (int64_t sb = 0; sb < k / QK_K; sb++) {
      const uint8_t* o = g + size_t(sb) * 16 * sizeof(block_q4_K);
      for (int r = 0; r < 16; r++) {
        uint8_t bytes[12];
        for (int b = 0; b < 12; b++) bytes[b] = o[2112 + 16 * b + r];
        const float d = h2f(o + 2048 + 2 * r), dmin = h2f(o + 2080 + 2 * r);
        for (int j = 0; j < 8; j++) {
          uint8_t sc, mn;
          get_scale_min_k4(j, bytes, &sc, &mn);
          scale[r * ns + 8 * sb + j] = d * float(sc);
          min[r * ns + 8 * sb + j] = -dmin * float(mn);
        }
      }
      // Quants: each zmm (j, u) splits into its low and high nibbles, then each row's dword of
      // each goes to values 8u..8u+3 and 8u+4..8u+7 of its sub-block j.
      for (int j = 0; j < 8; j++)
        for (int u = 0; u < 4; u++) {
          const __m512i v = _mm512_loadu_si512(o + 64 * (4 * j + u)), m4 = _mm512_set1_epi8(0x0F);
          alignas(64) uint32_t lo[16], hi[16];
          _mm512_store_si512(lo, _mm512_and_si512(v, m4));
          _mm512_store_si512(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
          for (int r = 0; r < 16; r++) {
            int8_t* qr = q + size_t(r) * size_t(k) + size_t(QK_K * sb) + 32 * j + 8 * u;
            std::memcpy(qr, &lo[r], 4);
            std::memcpy(qr + 4, &hi[r], 4);
          }
        }
    }
  }
};

template <class W>
constexpr bool kGroupedUnpack = requires { W::kGrouped; };

// q6_K: sub-block j of 16 is d scales[j] (q - 32).
struct WQ6K {
  static constexpr DType kType = DType::Q6_K;
  static constexpr int kSub = 16;
  static constexpr bool kHasMin = false;
  static void unpack(const uint8_t* w, int64_t k, int8_t* q, float* scale, float*) {
    for (int64_t sb = 0; sb < k / QK_K; sb++, w += sizeof(block_q6_K), q += QK_K, scale += 16) {
      auto* x = reinterpret_cast<const block_q6_K*>(w);
      const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), o = _mm256_set1_epi8(32);
      for (int h = 0; h < 2; h++) {
        // Element 128 h + 32 g + l: ql[64 h + l + 32 (g & 1)] nibble g / 2, qh[32 h + l] bits 2 g.
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qh + 32 * h));
        const __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
        for (int g = 0; g < 4; g++) {
          const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m3), 4);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 128 * h + 32 * g), _mm256_sub_epi8(_mm256_or_si256(lo[g], hi), o));
        }
      }
      const float d = h2f(w + 208);
      for (int j = 0; j < 16; j++) scale[j] = d * float(x->scales[j]);
    }
  }
};

// ---- packed activations: per group t of 16 rows and sub-block s, the B operand (ks/4 rows of
// 16 x 4 bytes), and 16 floats each of scale and scale x quant sum (rows past na: zero).
struct PackedActs {
  std::vector<int8_t> q;   // [groups][subs][ks/4][16][4]
  std::vector<float> d;    // [groups][subs][16]
  std::vector<float> dsum; // [groups][subs][16], when the weight dtype has a min term
};

// Where sub-block s of an activation row starts, for q8_0 (ks = 32) and q8_K (ks = 32 or 16).
template <DType Act, int Ks>
struct ActLayout {
  static constexpr int64_t kPerBlock = Act == DType::Q8_0 ? 1 : QK_K / Ks;  // sub-blocks per block
  static constexpr size_t kBlock = Act == DType::Q8_0 ? sizeof(block_q8_0) : sizeof(block_q8_K);
  static size_t block(int64_t s) { return size_t(s / kPerBlock) * kBlock; }
  static size_t quants(int64_t s) { return block(s) + (Act == DType::Q8_0 ? 2 : 4 + size_t(s % kPerBlock) * Ks); }
};

template <DType Act, int Ks, bool Sums>
void pack_acts(int64_t k, const uint8_t* a, size_t as, int na, PackedActs& p) {
  using L = ActLayout<Act, Ks>;
  const int64_t ns = k / Ks, groups = (na + 31) / 32 * 2;  // whole pairs of groups
  p.q.resize(size_t(groups * ns) * Ks * 16);
  p.d.resize(size_t(groups * ns) * 16);
  if (Sums) p.dsum.resize(p.d.size());
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(int(as)));
  for (int64_t t = 0; t < groups; t++) {
    const int rows = int(std::max<int64_t>(0, std::min<int64_t>(16, na - 16 * t)));
    const __mmask16 live = __mmask16((1u << rows) - 1);
    const uint8_t* base = a + size_t(16 * t) * as;
    for (int64_t s = 0; s < ns; s++) {
      int8_t* dst = p.q.data() + size_t(t * ns + s) * Ks * 16;
      const uint8_t* qs = base + L::quants(s);
      __m512i sum = _mm512_setzero_si512();
      for (int r = 0; r < Ks / 4; r++) {
        const __m512i v = rows ? _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, qs + 4 * r, 1) : _mm512_setzero_si512();
        _mm512_storeu_si512(dst + 64 * r, v);
        if (Sums && Act == DType::Q8_0) sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), v);
      }
      const uint8_t* blk = base + L::block(s);
      __m512 d;
      if (!rows) d = _mm512_setzero_ps();
      else if (Act == DType::Q8_0) {
        const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, blk, 1);
        d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
      } else {
        d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, idx, blk, 1);
      }
      _mm512_storeu_ps(p.d.data() + size_t(t * ns + s) * 16, d);
      if (Sums) {
        if (Act == DType::Q8_K) {
          // bsums 2j and 2j + 1 (two s16 in one dword) of sub-block j of 32.
          const __m512i b = rows ? _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, blk + 260 + 4 * (s % L::kPerBlock), 1)
                                 : _mm512_setzero_si512();
          sum = _mm512_add_epi32(_mm512_srai_epi32(_mm512_slli_epi32(b, 16), 16), _mm512_srai_epi32(b, 16));
        }
        _mm512_storeu_ps(p.dsum.data() + size_t(t * ns + s) * 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(sum)));
      }
    }
  }
}

// ---- the tile: see the header comment.
template <class W, DType Act>
void tile_amx(int64_t k, const void* wv, size_t ws, int nw, const void* av, size_t as, int na, float* y, size_t ys) {
  constexpr int Ks = W::kSub;
  constexpr bool Min = W::kHasMin;
  if (na < (kGroupedUnpack<W> ? kMinActRowsUnpacked : kMinActRows)) {
    static const DotTileFn vnni = [] {
      const CpuDotKernels& t = avx512vnni::kDot;
      if constexpr (kGroupedUnpack<W>) {
        for (int i = 0; i < t.n_packed; i++)
          if (t.packed[i].weight == W::kType) return t.packed[i].tile;
      } else {
        for (int i = 0; i < t.n; i++)
          if (t.kernels[i].weight == W::kType) return t.kernels[i].tile;
      }
      return DotTileFn(nullptr);
    }();
    return vnni(k, wv, ws, nw, av, as, na, y, ys);
  }
  const uint8_t* w = static_cast<const uint8_t*>(wv);
  const int64_t ns = k / Ks, groups = (na + 31) / 32 * 2;
  thread_local PackedActs acts;
  pack_acts<Act, Ks, Min>(k, static_cast<const uint8_t*>(av), as, na, acts);
  thread_local std::vector<int8_t> wq;  // [32][k]
  thread_local std::vector<float> wsc, wmn;  // [32][ns]
  wq.resize(size_t(32 * k));
  wsc.resize(size_t(32 * ns));
  wmn.resize(size_t(32 * ns));
  configure(Ks);
  alignas(64) int32_t c[4][16][16];
  for (int j0 = 0; j0 < nw; j0 += 32) {
    const int rows = std::min(32, nw - j0);
    for (int r = 0; r < 32; r++) {
      if constexpr (kGroupedUnpack<W>) {
        if (r % 16 == 0 && r < rows) {  // a whole group (its rows past nw are zero in the packed matrix)
          W::unpack_group(w + size_t(j0 + r) * ws, k, wq.data() + size_t(r) * size_t(k), wsc.data() + size_t(r * ns), wmn.data() + size_t(r * ns));
          r += 15;
          continue;
        }
      } else if (r < rows) {
        W::unpack(w + size_t(j0 + r) * ws, k, wq.data() + size_t(r) * size_t(k), wsc.data() + size_t(r * ns), wmn.data() + size_t(r * ns));
        continue;
      }
      {
        std::memset(wq.data() + size_t(r) * size_t(k), 0, size_t(k));
        std::memset(wsc.data() + size_t(r * ns), 0, size_t(ns) * sizeof(float));
        std::memset(wmn.data() + size_t(r * ns), 0, size_t(ns) * sizeof(float));
      }
    }
    for (int64_t t0 = 0; t0 < groups; t0 += 2) {
      __m512 acc[32][2];
      for (auto& row : acc) row[0] = row[1] = _mm512_setzero_ps();
      for (int64_t s = 0; s < ns; s++) {
        _tile_loadd(4, wq.data() + s * Ks, k);
        _tile_loadd(5, wq.data() + 16 * k + s * Ks, k);
        _tile_loadd(6, acts.q.data() + size_t(t0 * ns + s) * Ks * 16, 64);
        _tile_loadd(7, acts.q.data() + size_t((t0 + 1) * ns + s) * Ks * 16, 64);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        _tile_stored(2, c[2], 64);
        _tile_stored(3, c[3], 64);
        const __m512 ad[2] = {_mm512_loadu_ps(acts.d.data() + size_t(t0 * ns + s) * 16),
                              _mm512_loadu_ps(acts.d.data() + size_t((t0 + 1) * ns + s) * 16)};
        __m512 am[2];
        if (Min) {
          am[0] = _mm512_loadu_ps(acts.dsum.data() + size_t(t0 * ns + s) * 16);
          am[1] = _mm512_loadu_ps(acts.dsum.data() + size_t((t0 + 1) * ns + s) * 16);
        }
#pragma GCC unroll 32
        for (int j = 0; j < 32; j++) {
          const __m512 sw = _mm512_set1_ps(wsc[size_t(j * ns + s)]);
#pragma GCC unroll 2
          for (int h = 0; h < 2; h++) {
            const __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(c[2 * (j / 16) + h][j % 16]));
            acc[j][h] = _mm512_fmadd_ps(v, _mm512_mul_ps(sw, ad[h]), acc[j][h]);
            if (Min) acc[j][h] = _mm512_fmadd_ps(_mm512_set1_ps(wmn[size_t(j * ns + s)]), am[h], acc[j][h]);
          }
        }
      }
      // acc[j][h] lane l is weight row j0 + j, activation row 16 (t0 + h) + l.
      for (int h = 0; h < 2; h++) {
        const int64_t i0 = 16 * (t0 + h);
        const int live = int(std::min<int64_t>(16, na - i0));
        if (live <= 0) continue;
        alignas(64) float col[16];
        for (int j = 0; j < rows; j++) {
          _mm512_store_ps(col, acc[j][h]);
          for (int l = 0; l < live; l++) y[size_t(i0 + l) * ys + size_t(j0 + j)] = col[l];
        }
      }
    }
  }
}

// ---- q8_0 weights packed at load (kernels.h). A group's block b is already the B operand of
// tdpbsud (8 rows of 16 weight rows x 4 bytes, u8 = q + 128), loaded straight from the packed
// matrix; the activation rows are the A operand as quantize_act wrote them (16 rows x the
// block's 32 quants, the rows `as` bytes apart). So neither side is unpacked. C[i][j] =
// sum a_i (w_j + 128), less 128 x (sum of a_i's block), scaled by the two blocks' scales.
void tile_amx_q8_0x16(int64_t k, const void* wv, size_t ws, int nw, const void* av, size_t as, int na, float* y, size_t ys) {
  if (na < kMinActRows) {
    static const DotTileFn vnni = [] {
      const CpuDotKernels& t = avx512vnni::kDot;
      for (int i = 0; i < t.n_packed; i++)
        if (t.packed[i].weight == DType::Q8_0) return t.packed[i].tile;
      return DotTileFn(nullptr);
    }();
    return vnni(k, wv, ws, nw, av, as, na, y, ys);
  }
  const uint8_t* w = static_cast<const uint8_t*>(wv);
  const uint8_t* a = static_cast<const uint8_t*>(av);
  const int64_t nb = k / QK;
  const size_t gs = 16 * ws, qa = sizeof(block_q8_0);
  // Per activation row and block: the scale, and -128 x the sum of the quants.
  thread_local std::vector<float> da;
  thread_local std::vector<int32_t> corr;
  da.resize(size_t(na * nb));
  corr.resize(size_t(na * nb));
  for (int i = 0; i < na; i++)
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t* blk = a + size_t(i) * as + size_t(b) * qa;
      da[size_t(i * nb + b)] = h2f(blk);
      const __m512i s = _mm512_madd_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2))), _mm512_set1_epi16(1));
      corr[size_t(i * nb + b)] = -128 * _mm512_reduce_add_epi32(s);
    }
  // A last group of fewer than 16 activation rows is read from a zero-padded copy (tileloadd
  // reads all 16 rows).
  const int full = na / 16 * 16;
  thread_local std::vector<uint8_t> tail;
  if (full < na) {
    tail.assign(16 * as, 0);
    std::memcpy(tail.data(), a + size_t(full) * as, size_t(na - full) * as);
  }
  auto act_rows = [&](int i0) { return i0 < full ? a + size_t(i0) * as : tail.data(); };
  configure(32);
  alignas(64) int32_t c[4][16][16];
  const int ngroups = (nw + 15) / 16;
  for (int g0 = 0; g0 < ngroups; g0 += 2) {
    const bool two = g0 + 1 < ngroups;
    const uint8_t* w0 = w + size_t(g0) * gs;
    const uint8_t* w1 = two ? w0 + gs : w0;
    for (int i0 = 0; i0 < na; i0 += 32) {
      const bool two_a = i0 + 16 < na;
      const uint8_t* a0 = act_rows(i0);
      const uint8_t* a1 = two_a ? act_rows(i0 + 16) : a0;
      __m512 acc[32][2];
      for (auto& row : acc) row[0] = row[1] = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; b++) {
        _tile_loadd(4, a0 + size_t(b) * qa + 2, as);
        _tile_loadd(5, a1 + size_t(b) * qa + 2, as);
        _tile_loadd(6, w0 + size_t(b) * 512, 64);
        _tile_loadd(7, w1 + size_t(b) * 512, 64);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        _tile_dpbsud(0, 4, 6);
        _tile_dpbsud(1, 4, 7);
        _tile_dpbsud(2, 5, 6);
        _tile_dpbsud(3, 5, 7);
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        _tile_stored(2, c[2], 64);
        _tile_stored(3, c[3], 64);
        const __m512 sw[2] = {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + size_t(nb) * 512 + size_t(b) * 32))),
                              _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + size_t(nb) * 512 + size_t(b) * 32)))};
        const int rows = std::min(32, na - i0);
        for (int i = 0; i < rows; i++) {
          const size_t at = size_t((i0 + i) * nb + b);
          const __m512i ci = _mm512_set1_epi32(corr[at]);
          const __m512 di = _mm512_set1_ps(da[at]);
#pragma GCC unroll 2
          for (int v = 0; v < 2; v++) {
            const __m512 p = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_load_si512(c[2 * (i / 16) + v][i % 16]), ci));
            acc[i][v] = _mm512_fmadd_ps(p, _mm512_mul_ps(sw[v], di), acc[i][v]);
          }
        }
      }
      // acc[i][v] lane l: activation row i0 + i, weight row 16 (g0 + v) + l.
      const int rows = std::min(32, na - i0);
      for (int v = 0; v < (two ? 2 : 1); v++) {
        const int live = std::min(16, nw - 16 * (g0 + v));
        for (int i = 0; i < rows; i++)
          _mm512_mask_storeu_ps(y + size_t(i0 + i) * ys + size_t(16 * (g0 + v)), __mmask16((1u << live) - 1), acc[i][v]);
      }
    }
  }
}

const WeightKernel kPacked[] = {
    {DType::Q8_0, DType::Q8_0, tile_amx_q8_0x16, 0, 0},
    {DType::Q4_K, DType::Q8_K, tile_amx<WQ4Kx16, DType::Q8_K>, 0, 0},
};

const WeightKernel kKernels[] = {
    {DType::Q4_0, DType::Q8_0, tile_amx<WQLegacy<false, false>, DType::Q8_0>, 0, 0},
    {DType::Q4_1, DType::Q8_0, tile_amx<WQLegacy<false, true>, DType::Q8_0>, 0, 0},
    {DType::Q5_0, DType::Q8_0, tile_amx<WQLegacy<true, false>, DType::Q8_0>, 0, 0},
    {DType::Q5_1, DType::Q8_0, tile_amx<WQLegacy<true, true>, DType::Q8_0>, 0, 0},
    {DType::Q8_0, DType::Q8_0, tile_amx<WQ8_0, DType::Q8_0>, 0, 0},
    {DType::Q4_K, DType::Q8_K, tile_amx<WQ45K<false>, DType::Q8_K>, 0, 0},
    {DType::Q5_K, DType::Q8_K, tile_amx<WQ45K<true>, DType::Q8_K>, 0, 0},
    {DType::Q6_K, DType::Q8_K, tile_amx<WQ6K, DType::Q8_K>, 0, 0},
};

}  // namespace

// The activation quantizers are the VNNI table's (the same bytes as the reference's).
const CpuDotKernels kDot = {kKernels, int(sizeof(kKernels) / sizeof(kKernels[0])), nullptr, nullptr, kPacked,
                            int(sizeof(kPacked) / sizeof(kPacked[0]))};

}  // namespace amx

}  // namespace aha
