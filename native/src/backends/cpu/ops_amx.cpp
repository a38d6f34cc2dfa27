// AMX-BF16 attention over a bf16 cache: MLA's absorbed decode (every head of a token against one
// shared latent "KV head"), where a token's 16 query heads against 16 cached slots are one
// 16 x 16 tile product. Tested against ops_ref.cpp; anything it does not cover (another cache
// dtype, more than 16 heads, head or value sizes that are not whole tiles, blocks that are not
// whole 16-slot tiles) runs the AVX-512 op.
//
// Per range of slots, in sub-chunks of up to 256 slots (flash-decoding's online softmax, so each
// cached slot is read from memory once and then from L2):
//  1. scores: Sᵀ [16 slots x 16 heads] += K_tile [16 slots x 32] · Qᵀ [32 x 16 heads]; the K
//     tile is 16 consecutive slots of one cache block loaded straight from the cache (row stride
//     = the slot stride), Qᵀ is the scaled query in the B operand's pair layout, made once;
//  2. the running max and sum per head (each Sᵀ row is one zmm of 16 heads), the output
//     accumulators rescaled when the max grows, P = exp(S - max) as bf16 [16 heads x 32 slots];
//  3. O [16 heads x 16 values] += P · V_pairs, V's rows of two consecutive slots interleaved into
//     the B operand's pair layout (one vpermt2w per 32 values), 4 output tiles at a time.
// Tiles (all 16 rows x 64 bytes): tmm0-3 accumulators, tmm4 the A operand, tmm5-6 B operands.
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

struct Buffers {
  std::vector<uint16_t> qt;    // [head_dim / 32][16 pairs][16 heads][2]
  std::vector<float> s;        // [kSubTiles * 16 slots][16 heads]
  std::vector<uint16_t> p;     // [kSubTiles / 2 steps][16 heads][32 slots]
  std::vector<uint16_t> vb;    // [kSubTiles / 2 steps][v_dim / 16 tiles][16 pairs][16 values][2]
  std::vector<float> o;        // [16 heads][v_dim]
};

Buffers& buffers() {
  thread_local Buffers b;
  return b;
}

inline __m512i bf16_pairs(__m512 lo, __m512 hi) {  // 32 bf16: lo's 16 then hi's 16
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

void attention(const AttentionArgs& a) {
  const int hd = a.head_dim, vd = a.v_dim > 0 ? a.v_dim : a.head_dim;
  if (a.kv != DType::BF16 || a.group > 16 || hd % 32 || hd > kMaxHeadDim || vd % 64 || vd > hd || a.block_size % 16) {
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
  const int KT = hd / 32, VT = vd / 16;
  B.qt.assign(size_t(KT) * 512, 0);
  B.s.resize(size_t(kSubTiles) * 256);
  B.p.resize(size_t(kSubTiles / 2) * 512);
  B.vb.resize(size_t(kSubTiles / 2) * size_t(VT) * 512);
  B.o.assign(size_t(16) * size_t(vd), 0.0f);

  // Qᵀ pairs: qt[kt][i][h] = (q[h][32 kt + 2i], q[h][32 kt + 2i + 1]) · scale.
  for (int g = 0; g < a.group; g++)
    for (int k = 0; k < hd; k++) B.qt[size_t((k / 32) * 512 + ((k % 32) / 2) * 32 + g * 2 + (k & 1))] = f32_to_bf16(a.q[g * hd + k] * a.scale);

  const int64_t bs = a.block_size;
  auto slot_ptr = [&](const uint8_t* base, int64_t s) {
    return base + size_t(a.blocks[s / bs]) * a.block_stride + size_t(s % bs) * a.slot_stride;
  };
  // Word 2j of a pair vector from the even source's word j, 2j + 1 from the odd's: lo_idx over
  // words 0-15 of two rows (the second row is source words 32-63), hi_idx over 16-31; pair_idx
  // over the halves of one bf16_pairs vector (dword h = (even[h], odd[h])).
  alignas(64) uint16_t idx[3][32];
  for (int j = 0; j < 16; j++) {
    idx[0][2 * j] = uint16_t(j), idx[0][2 * j + 1] = uint16_t(32 + j);
    idx[1][2 * j] = uint16_t(16 + j), idx[1][2 * j + 1] = uint16_t(48 + j);
    idx[2][2 * j] = uint16_t(j), idx[2][2 * j + 1] = uint16_t(16 + j);
  }
  const __m512i lo_idx = _mm512_load_si512(idx[0]), hi_idx = _mm512_load_si512(idx[1]), pair_idx = _mm512_load_si512(idx[2]);
  __m512 m_run = _mm512_set1_ps(-INFINITY), l_run = _mm512_setzero_ps();
  const int64_t first = c0 / 16 * 16;
  const size_t sstride = a.slot_stride;

  for (int64_t sub = first; sub < c1; sub += 16 * kSubTiles) {
    const int ntile = int(std::min<int64_t>(kSubTiles, (c1 - sub + 15) / 16));
    // 1. Scores, four slot tiles per pass over Qᵀ (the last pass repeats its last tile).
    for (int j0 = 0; j0 < ntile; j0 += 4) {
      const uint8_t* rows[4];
      for (int j = 0; j < 4; j++) rows[j] = slot_ptr(a.k0, sub + 16 * std::min(j0 + j, ntile - 1));
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int kt = 0; kt < KT; kt++) {
        _tile_loadd(5, B.qt.data() + kt * 512, 64);
        _tile_loadd(4, rows[0] + kt * 64, sstride);
        _tile_dpbf16ps(0, 4, 5);
        _tile_loadd(4, rows[1] + kt * 64, sstride);
        _tile_dpbf16ps(1, 4, 5);
        _tile_loadd(4, rows[2] + kt * 64, sstride);
        _tile_dpbf16ps(2, 4, 5);
        _tile_loadd(4, rows[3] + kt * 64, sstride);
        _tile_dpbf16ps(3, 4, 5);
      }
      float* s = B.s.data() + j0 * 256;
      _tile_stored(0, s, 64);
      if (j0 + 1 < ntile) _tile_stored(1, s + 256, 64);
      if (j0 + 2 < ntile) _tile_stored(2, s + 512, 64);
      if (j0 + 3 < ntile) _tile_stored(3, s + 768, 64);
    }
    // 2. Mask the slots outside [c0, c1), the running max, rescaling, P.
    const int nslot = ntile * 16;
    const int64_t lo = std::max<int64_t>(c0 - sub, 0), hi = std::min<int64_t>(c1 - sub, nslot);
    __m512 m_new = m_run;
    for (int64_t t = lo; t < hi; t++) m_new = _mm512_max_ps(m_new, _mm512_loadu_ps(B.s.data() + t * 16));
    const __m512 corr = exp512(_mm512_sub_ps(m_run, m_new));  // 0 on the first sub-chunk (m_run = -inf)
    if (_mm512_cmp_ps_mask(m_new, m_run, _CMP_GT_OQ)) {
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
    const int nstep = (ntile + 1) / 2;
    for (int st = 0; st < nstep; st++) {
      alignas(64) uint32_t m[16][16];  // m[pair][head]
      for (int i = 0; i < 16; i++) {
        const int64_t t = st * 32 + 2 * i;
        __m512 pe = _mm512_setzero_ps(), po = _mm512_setzero_ps();
        if (t >= lo && t < hi) pe = exp512(_mm512_sub_ps(_mm512_loadu_ps(B.s.data() + t * 16), m_new));
        if (t + 1 >= lo && t + 1 < hi) po = exp512(_mm512_sub_ps(_mm512_loadu_ps(B.s.data() + (t + 1) * 16), m_new));
        l_run = _mm512_add_ps(l_run, _mm512_add_ps(pe, po));
        _mm512_store_si512(m[i], _mm512_permutexvar_epi16(pair_idx, bf16_pairs(pe, po)));
      }
      uint32_t* p = reinterpret_cast<uint32_t*>(B.p.data() + st * 512);  // [head][pair]
      for (int h = 0; h < 16; h++)
        for (int i = 0; i < 16; i++) p[h * 16 + i] = m[i][h];
      // V rows of slot pairs interleaved; slots outside the range (or past the last tile) are 0.
      uint16_t* vb = B.vb.data() + size_t(st) * size_t(VT) * 512;
      for (int i = 0; i < 16; i++) {
        const int64_t t = st * 32 + 2 * i;
        const uint8_t* ve = t >= lo && t < hi ? slot_ptr(a.v0, sub + t) : nullptr;
        const uint8_t* vo = t + 1 >= lo && t + 1 < hi ? slot_ptr(a.v0, sub + t + 1) : nullptr;
        for (int c = 0; c < vd; c += 32) {
          const __m512i xe = ve ? _mm512_loadu_si512(ve + 2 * c) : _mm512_setzero_si512();
          const __m512i xo = vo ? _mm512_loadu_si512(vo + 2 * c) : _mm512_setzero_si512();
          _mm512_storeu_si512(vb + (c / 16) * 512 + i * 32, _mm512_permutex2var_epi16(xe, lo_idx, xo));
          _mm512_storeu_si512(vb + (c / 16 + 1) * 512 + i * 32, _mm512_permutex2var_epi16(xe, hi_idx, xo));
        }
      }
    }
    // 3. O += P · V, four output tiles at a time over every step of the sub-chunk.
    for (int ct = 0; ct < VT; ct += 4) {
      float* o = B.o.data() + ct * 16;
      const size_t ostride = size_t(vd) * 4;
      _tile_loadd(0, o, ostride);
      _tile_loadd(1, o + 16, ostride);
      _tile_loadd(2, o + 32, ostride);
      _tile_loadd(3, o + 48, ostride);
      for (int st = 0; st < nstep; st++) {
        const uint16_t* vb = B.vb.data() + (size_t(st) * size_t(VT) + size_t(ct)) * 512;
        _tile_loadd(4, B.p.data() + st * 512, 64);
        _tile_loadd(5, vb, 64);
        _tile_dpbf16ps(0, 4, 5);
        _tile_loadd(6, vb + 512, 64);
        _tile_dpbf16ps(1, 4, 6);
        _tile_loadd(5, vb + 1024, 64);
        _tile_dpbf16ps(2, 4, 5);
        _tile_loadd(6, vb + 1536, 64);
        _tile_dpbf16ps(3, 4, 6);
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
    for (int v = 0; v < vd; v++) out[v] = og[v] * inv;
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
