// AMX-BF16 attention over a bf16 cache: MLA's absorbed decode (every head of a token against one
// shared latent "KV head"), where a token's 16 query heads against 16 cached slots are one
// 16 x 16 tile product. Tested against ops_ref.cpp; anything it does not cover (another cache
// dtype, more than 16 heads, head or value sizes that are not whole tiles, blocks that are not
// whole 16-slot tiles, V other than the K slot's first values) runs the AVX-512 op.
//
// Per range of slots, in sub-chunks of up to 256 slots (flash-decoding's online softmax, so each
// cached slot is read from memory once and then from cache):
//  1. scores: Sᵀ [16 slots x 16 heads] += K_tile [16 slots x 32] · Qᵀ [32 x 16 heads]; the K
//     tile is 16 consecutive slots of one cache block loaded straight from the cache (in the MLA
//     cache's tiled layout each 32-value column of it is 1 KB in a row; slot-major, the rows are
//     the slots), Qᵀ is the scaled query in the B operand's pair layout, made once;
//  2. the running max and sum per head (each Sᵀ row is one zmm of 16 heads), the output
//     accumulators rescaled when the max grows, P = exp(S - max) transposed to [16 heads x 16
//     slots];
//  3. O += P · V with V's rows also loaded straight from the cache as the B operand: a B row is
//     one slot's 32 values as 16 pairs, so P goes in as (p, 0) pairs for the even values and
//     (0, p) for the odd ones; two products per 32 values, no re-layout of the cache. O's columns
//     come out as [evens | odds] per 32 values and are put back in order at the end.
// A partial tile (the range's first or last) is copied with the slots outside the range zeroed:
// stale slots past a sequence's end may hold anything, and 0 · NaN is NaN.
// Tiles (all 16 rows x 64 bytes): tmm0-3 accumulators, tmm4-5 A operands, tmm6-7 B operands.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/amx_tiles.h"
#include "backends/cpu/exp_avx512.h"
#include "backends/cpu/ops.h"
#include "core/aligned.h"

namespace aha {

namespace avx512 {
extern const CpuOps kOps;
}

namespace amx {

namespace {

constexpr int kTileConfigId = 0x5a7;  // every tile 16 x 64 bytes
constexpr int kSubTiles = 16;         // 16-slot tiles per sub-chunk (256 slots)
constexpr int kMaxHeadDim = 1024;

void configure() {
  TileConfig c;
  for (int t = 0; t < 8; t++) c.rows[t] = 16, c.colsb[t] = 64;
  load_tile_config(kTileConfigId, c);
}

struct Buffers {  // cache-line aligned: a tile row that straddles two lines loads twice
  aligned_vector<uint16_t> qt;     // [head_dim / 32][16 pairs][16 heads][2]
  aligned_vector<float> s;         // [kSubTiles][16 slots][16 heads]
  aligned_vector<uint32_t> pe, po; // [kSubTiles][16 heads][16 slots]: (p, 0) and (0, p) bf16 pairs
  aligned_vector<float> o;         // [16 heads][v_dim], per 32 values its 16 evens then its 16 odds
  aligned_vector<uint16_t> tiles;  // the partial tiles, copied: [2][16 slots][head_dim]
};

Buffers& buffers() {
  thread_local Buffers b;
  return b;
}

// 16 x 16 floats: rows r[i] → columns.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // Each 128-bit lane now holds a 4 x 4 block in place; two rounds of lane shuffles move the blocks.
  for (int i = 0; i < 8; i++) {
    const int a = (i / 4) * 8 + (i % 4), b = a + 4;
    t[a] = _mm512_shuffle_f32x4(r[a], r[b], 0x88);
    t[b] = _mm512_shuffle_f32x4(r[a], r[b], 0xdd);
  }
  for (int i = 0; i < 8; i++) {
    const int a = i, b = i + 8;
    r[a] = _mm512_shuffle_f32x4(t[a], t[b], 0x88);
    r[b] = _mm512_shuffle_f32x4(t[a], t[b], 0xdd);
  }
}

void attention(const AttentionArgs& a) {
  const int hd = a.head_dim, vd = a.v_dim > 0 ? a.v_dim : a.head_dim;
  if (a.kv != DType::BF16 || a.group > 16 || hd % 32 || hd > kMaxHeadDim || vd % 64 || vd > hd || a.block_size % 16 || a.v0 != a.k0) {
    avx512::kOps.attention(a);
    return;
  }
  const int64_t c0 = a.ctx_begin, c1 = a.n_ctx;
  if (c1 <= c0) {
    std::memset(a.out, 0, sizeof(float) * size_t(a.group) * size_t(vd));
    if (a.lse)
      for (int g = 0; g < a.group; g++) a.lse[g] = -INFINITY;
    return;
  }
  configure();
  Buffers& B = buffers();
  const int KT = hd / 32;
  B.qt.resize(size_t(KT) * 512);
  B.s.resize(size_t(kSubTiles) * 256);
  B.pe.resize(size_t(kSubTiles) * 256);
  B.po.resize(size_t(kSubTiles) * 256);
  B.o.assign(size_t(16) * size_t(vd), 0.0f);

  // Qᵀ pairs: qt[kt][i][h] = (q[h][32 kt + 2i], q[h][32 kt + 2i + 1]) · scale, i.e. dword i of
  // head h's 32 values of block kt, as a 16 x 16 dword transpose per block.
  {
    const __m512 sc = _mm512_set1_ps(a.scale);
    for (int kt = 0; kt < KT; kt++) {
      __m512 r[16];
      for (int h = 0; h < 16; h++) {
        if (h < a.group) {
          const float* q = a.q + h * hd + kt * 32;
          r[h] = _mm512_castsi512_ps(reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(q + 16), sc), _mm512_mul_ps(_mm512_loadu_ps(q), sc))));
        } else {
          r[h] = _mm512_setzero_ps();
        }
      }
      transpose16(r);  // r[i]: dword i (values 2i, 2i + 1) of every head
      for (int i = 0; i < 16; i++) _mm512_storeu_ps(reinterpret_cast<float*>(B.qt.data() + kt * 512 + i * 32), r[i]);
    }
  }

  const size_t sstride = a.slot_stride;
  // A tile is 16 slots of one block, loaded straight from the cache: in the tiled layout each
  // 32-value column of it is 1 KB in a row (kstep 1024, row stride 64), in the slot-major one the
  // rows are the slots (kstep 64, row stride = the slot). A partial tile (the range's first or
  // last) is copied slot-major with the slots outside [c0, c1) zeroed: stale slots past a
  // sequence's end may hold anything, and 0 · NaN is NaN.
  const size_t row_bytes = size_t(hd) * 2, tile_bytes = 16 * row_bytes;
  B.tiles.resize(2 * tile_bytes / 2);
  __m512 m_run = _mm512_set1_ps(-INFINITY), l_run = _mm512_setzero_ps();
  const int64_t first = c0 / 16 * 16;
  struct Tile {
    const uint8_t* base;
    size_t kstep, stride;
  };
  auto tile = [&](int64_t s) -> Tile {
    const uint8_t* base = kv_element(a, a.k0, s, 0);
    const Tile t = a.tiled ? Tile{base, kv_tiled_offset(0, 32, hd), kv_tiled_offset(1, 0, hd)} : Tile{base, 64, sstride};
    if (s >= c0 && s + 16 <= c1) return t;
    uint8_t* dst = reinterpret_cast<uint8_t*>(B.tiles.data()) + (s == first ? 0 : tile_bytes);
    for (int64_t i = 0; i < 16; i++)
      for (int kt = 0; kt < KT; kt++) {
        uint8_t* d = dst + size_t(i) * row_bytes + size_t(kt) * 64;
        if (s + i >= c0 && s + i < c1) std::memcpy(d, t.base + size_t(kt) * t.kstep + size_t(i) * t.stride, 64);
        else std::memset(d, 0, 64);
      }
    return Tile{dst, 64, row_bytes};
  };
  Tile rows[kSubTiles];

  for (int64_t sub = first; sub < c1; sub += 16 * kSubTiles) {
    const int ntile = int(std::min<int64_t>(kSubTiles, (c1 - sub + 15) / 16));
    for (int j = 0; j < ntile; j++) rows[j] = tile(sub + 16 * j);
    // 1. Scores, four slot tiles per pass over Qᵀ (the last pass repeats its last tile).
    for (int j0 = 0; j0 < ntile; j0 += 4) {
      const int j1 = std::min(j0 + 1, ntile - 1), j2 = std::min(j0 + 2, ntile - 1), j3 = std::min(j0 + 3, ntile - 1);
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int kt = 0; kt < KT; kt++) {
        _tile_loadd(6, B.qt.data() + kt * 512, 64);
        _tile_loadd(4, rows[j0].base + kt * rows[j0].kstep, rows[j0].stride);
        _tile_loadd(5, rows[j1].base + kt * rows[j1].kstep, rows[j1].stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 5, 6);
        _tile_loadd(4, rows[j2].base + kt * rows[j2].kstep, rows[j2].stride);
        _tile_loadd(5, rows[j3].base + kt * rows[j3].kstep, rows[j3].stride);
        _tile_dpbf16ps(2, 4, 6);
        _tile_dpbf16ps(3, 5, 6);
      }
      float* s = B.s.data() + j0 * 256;
      _tile_stored(0, s, 64);
      if (j0 + 1 < ntile) _tile_stored(1, s + 256, 64);
      if (j0 + 2 < ntile) _tile_stored(2, s + 512, 64);
      if (j0 + 3 < ntile) _tile_stored(3, s + 768, 64);
    }
    // 2. The running max over the slots in [c0, c1), rescaling, P per tile as (p, 0) / (0, p).
    const int64_t lo = std::max<int64_t>(c0 - sub, 0), hi = std::min<int64_t>(c1 - sub, int64_t(ntile) * 16);
    __m512 m_new = m_run;
    for (int64_t t = lo; t < hi; t++) m_new = _mm512_max_ps(m_new, _mm512_loadu_ps(B.s.data() + t * 16));
    if (_mm512_cmp_ps_mask(m_new, m_run, _CMP_GT_OQ)) {
      const __m512 corr = exp512(_mm512_sub_ps(m_run, m_new));  // ~0 on the first sub-chunk (m_run = -inf)
      alignas(64) float cf[16];
      _mm512_store_ps(cf, corr);
      for (int h = 0; h < 16; h++) {
        const __m512 c = _mm512_set1_ps(cf[h]);
        float* oh = B.o.data() + h * vd;
        for (int v = 0; v < vd; v += 16) _mm512_storeu_ps(oh + v, _mm512_mul_ps(_mm512_loadu_ps(oh + v), c));
      }
      l_run = _mm512_mul_ps(l_run, corr);
    }
    m_run = m_new;
    for (int j = 0; j < ntile; j++) {
      __m512 r[16];
      for (int i = 0; i < 16; i++) {
        const int64_t t = j * 16 + i;
        r[i] = t >= lo && t < hi ? exp512(_mm512_sub_ps(_mm512_loadu_ps(B.s.data() + t * 16), m_new)) : _mm512_setzero_ps();
        l_run = _mm512_add_ps(l_run, r[i]);
      }
      transpose16(r);  // r[h]: head h's 16 slots
      for (int h = 0; h < 16; h++) {
        const __m512i e = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(r[h])));
        _mm512_storeu_si512(B.pe.data() + j * 256 + h * 16, e);
        _mm512_storeu_si512(B.po.data() + j * 256 + h * 16, _mm512_slli_epi32(e, 16));
      }
    }
    // 3. O += P · V, 64 values (two B tiles, evens and odds of each) at a time.
    const size_t ostride = size_t(vd) * 4;
    for (int v0 = 0; v0 < vd; v0 += 64) {
      float* o = B.o.data() + v0;
      _tile_loadd(0, o, ostride);
      _tile_loadd(1, o + 16, ostride);
      _tile_loadd(2, o + 32, ostride);
      _tile_loadd(3, o + 48, ostride);
      for (int j = 0; j < ntile; j++) {
        _tile_loadd(4, B.pe.data() + j * 256, 64);
        _tile_loadd(5, B.po.data() + j * 256, 64);
        _tile_loadd(6, rows[j].base + size_t(v0 / 32) * rows[j].kstep, rows[j].stride);
        _tile_loadd(7, rows[j].base + size_t(v0 / 32 + 1) * rows[j].kstep, rows[j].stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 5, 6);
        _tile_dpbf16ps(2, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, o, ostride);
      _tile_stored(1, o + 16, ostride);
      _tile_stored(2, o + 32, ostride);
      _tile_stored(3, o + 48, ostride);
    }
  }
  alignas(64) float l[16], mx[16];
  _mm512_store_ps(l, l_run);
  _mm512_store_ps(mx, m_run);
  for (int g = 0; g < a.group; g++) {
    const float inv = 1.0f / l[g];
    const float* og = B.o.data() + g * vd;
    float* out = a.out + g * vd;
    for (int v = 0; v < vd; v += 32)
      for (int n = 0; n < 16; n++) out[v + 2 * n] = og[v + n] * inv, out[v + 2 * n + 1] = og[v + 16 + n] * inv;
    if (a.lse) a.lse[g] = mx[g] + std::log(l[g]);
  }
}

}  // namespace

// The AVX-512 table with this attention (built on first use: it copies the other file's table).
const CpuOps& ops() {
  static const CpuOps t = {avx512::kOps.rmsnorm, avx512::kOps.swiglu, avx512::kOps.add, attention, avx512::kOps.gemm};
  return t;
}

}  // namespace amx
}  // namespace aha
