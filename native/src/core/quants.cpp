// Scalar reference row codecs, bit-compatible with ggml: quantize_row reproduces llama.cpp's
// quantize_row_*_ref (the deterministic quantizers, no importance matrix) and dequantize_row
// its dequantize_row_*, with the same float operations in the same order, so the bytes and
// floats match llama.cpp and gguf-py exactly. No fused multiply-add may be formed here: it
// would change roundings, hence the contraction pragmas.
#include "core/quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "aha/error.h"
#include "aha/kernels.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace aha {

namespace {

constexpr float kGroupMaxEps = 1e-15f;

float h2f(uint16_t h) { return fp16_to_f32(h); }
uint16_t f2h(float f) { return f32_to_fp16(f); }

// Round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int: the 1.5 * 2^23 trick).
int nearest_int(float x) {
  float v = x + 12582912.f;
  int i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// ---- dequantization ----

void dequant_q4_0(const block_q4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += QK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK / 2; j++) {
      y[j] = float((b[i].qs[j] & 0xF) - 8) * d;
      y[j + QK / 2] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const block_q4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += QK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < QK / 2; j++) {
      y[j] = float(b[i].qs[j] & 0xF) * d + m;
      y[j + QK / 2] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequant_q5_0(const block_q5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += QK) {
    const float d = h2f(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < QK / 2; j++) {
      const int x0 = ((b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
      const int x1 = ((b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
      y[j] = float(x0) * d;
      y[j + QK / 2] = float(x1) * d;
    }
  }
}

void dequant_q5_1(const block_q5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += QK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < QK / 2; j++) {
      const int x0 = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int x1 = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = float(x0) * d + m;
      y[j + QK / 2] = float(x1) * d + m;
    }
  }
}

void dequant_q8_0(const block_q8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += QK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK; j++) y[j] = float(b[i].qs[j]) * d;
  }
}

void dequant_q4_K(const block_q4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int j = 0; j < QK_K / 32; j += 2, q += 32) {
      uint8_t sc, mn;
      get_scale_min_k4(j, b[i].scales, &sc, &mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      get_scale_min_k4(j + 1, b[i].scales, &sc, &mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      for (int l = 0; l < 32; l++) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequant_q5_K(const block_q5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    const uint8_t* ql = b[i].qs;
    const uint8_t* qh = b[i].qh;
    for (int j = 0; j < QK_K / 32; j += 2, ql += 32) {
      uint8_t sc, mn;
      get_scale_min_k4(j, b[i].scales, &sc, &mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      get_scale_min_k4(j + 1, b[i].scales, &sc, &mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      for (int l = 0; l < 32; l++) *y++ = d1 * float((ql[l] & 0xF) | (((qh[l] >> j) & 1) << 4)) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * float((ql[l] >> 4) | (((qh[l] >> (j + 1)) & 1) << 4)) - m2;
    }
  }
}

void dequant_q6_K(const block_q6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = h2f(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; l++) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[is]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

void dequant_q8_K(const block_q8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += QK_K)
    for (int j = 0; j < QK_K; j++) y[j] = b[i].d * float(b[i].qs[j]);
}

// ---- quantization (llama.cpp quantize_row_*_ref) ----

void quant_q4_0(const float* x, block_q4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK) {
    float amax = 0, max = 0;  // the value of largest magnitude, with its sign
    for (int j = 0; j < QK; j++)
      if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
    const float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    for (int j = 0; j < QK / 2; j++) {
      const int q0 = std::min(15, int(int8_t(x[j] * id + 8.5f)));
      const int q1 = std::min(15, int(int8_t(x[j + QK / 2] * id + 8.5f)));
      y[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quant_q4_1(const float* x, block_q4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK) {
    float min = x[0], max = x[0];
    for (int j = 1; j < QK; j++) min = std::min(min, x[j]), max = std::max(max, x[j]);
    const float d = (max - min) / 15, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    y[i].m = f2h(min);
    for (int j = 0; j < QK / 2; j++) {
      const int q0 = std::min(15, int(int8_t((x[j] - min) * id + 0.5f)));
      const int q1 = std::min(15, int(int8_t((x[j + QK / 2] - min) * id + 0.5f)));
      y[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quant_q5_0(const float* x, block_q5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++)
      if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
    const float d = max / -16, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
      const uint32_t q0 = uint32_t(std::min(31, int(int8_t(x[j] * id + 16.5f))));
      const uint32_t q1 = uint32_t(std::min(31, int(int8_t(x[j + QK / 2] * id + 16.5f))));
      y[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= ((q0 >> 4) & 1) << j;
      qh |= ((q1 >> 4) & 1) << (j + QK / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quant_q5_1(const float* x, block_q5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK) {
    float min = x[0], max = x[0];
    for (int j = 1; j < QK; j++) min = std::min(min, x[j]), max = std::max(max, x[j]);
    const float d = (max - min) / 31, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    y[i].m = f2h(min);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
      const uint32_t q0 = uint8_t((x[j] - min) * id + 0.5f);
      const uint32_t q1 = uint8_t((x[j + QK / 2] - min) * id + 0.5f);
      y[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= ((q0 >> 4) & 1) << j;
      qh |= ((q1 >> 4) & 1) << (j + QK / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

// Least-squares scale and min for n values quantized to 0..nmax, weighted by `weights`:
// tries nstep + 1 grid scales around nmax / (max - min) and keeps the best fit (make_qkx2_quants).
// Returns the scale; *the_min receives -min (>= 0). L gets the quants, Laux is scratch.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; i++) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; i++) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(std::max(0, std::min(nmax, l)));
    float diff = scale * float(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; i++) {
        float diff = this_scale * float(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; i++) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Symmetric scale for n values quantized to -nmax..nmax-1 (stored + nmax in L), with an x²-weighted
// least-squares refit over 19 grid scales (make_qx_quants, rmse_type 1, no importance weights).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) amax = ax, max = x[i];
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; i++) L[i] = 0;
    return 0.f;
  }
  float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = int8_t(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; i++) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * float(l);
      suml2 += w * float(l) * float(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Packs 8 six-bit scales and mins into the 12 bytes of a q4_K/q5_K block (inverse of get_scale_min_k4).
void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
  for (int j = 0; j < 8; j++) {
    if (j < 4) {
      s[j] = ls[j];
      s[j + 4] = lm[j];
    } else {
      s[j + 4] = uint8_t((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      s[j - 4] |= uint8_t((ls[j] >> 4) << 6);
      s[j] |= uint8_t((lm[j] >> 4) << 6);
    }
  }
}

// The part q4_K and q5_K share: per sub-block scale/min fits, their 6-bit codes, the final quants.
// nmax is 15 (q4_K) or 31 (q5_K), with the grid llama.cpp uses for each.
// Returns the fp16 d and dmin as (dmin << 16) | d.
uint32_t quant_k_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* scales, uint8_t* L) {
  float mins[QK_K / 32], sc[QK_K / 32], weights[32];
  uint8_t Laux[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 32; j++) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; l++) weights[l] = av_x + std::fabs(x[32 * j + l]);
    sc[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    if (sc[j] > max_scale) max_scale = sc[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < QK_K / 32; j++) {
    ls[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * sc[j])));
    lm[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
  }
  pack_scale_min_k4(ls, lm, scales);
  const uint16_t dh = f2h(max_scale / 63.f), dminh = f2h(max_min / 63.f);
  for (int j = 0; j < QK_K / 32; j++) {
    uint8_t s, m;
    get_scale_min_k4(j, scales, &s, &m);
    const float d = h2f(dh) * float(s);
    if (d == 0) continue;  // keeps the quants of the fit, as llama.cpp does
    const float dm = h2f(dminh) * float(m);
    for (int ii = 0; ii < 32; ii++) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, l)));
    }
  }
  return uint32_t(dh) | uint32_t(dminh) << 16;
}

void quant_q4_K(const float* x, block_q4_K* y, int64_t nb) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    std::memset(y[i].scales, 0, 12);
    const uint32_t dd = quant_k_scales(x, 15, -1.f, 0.1f, 20, y[i].scales, L);
    y[i].d = uint16_t(dd), y[i].dmin = uint16_t(dd >> 16);
    uint8_t* q = y[i].qs;
    for (int j = 0; j < QK_K; j += 64, q += 32)
      for (int l = 0; l < 32; l++) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
  }
}

void quant_q5_K(const float* x, block_q5_K* y, int64_t nb) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    std::memset(y[i].scales, 0, 12);
    const uint32_t dd = quant_k_scales(x, 31, -0.5f, 0.1f, 15, y[i].scales, L);
    y[i].d = uint16_t(dd), y[i].dmin = uint16_t(dd >> 16);
    uint8_t* qh = y[i].qh;
    uint8_t* ql = y[i].qs;
    std::memset(qh, 0, QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
      for (int j = 0; j < 32; j++) {
        int l1 = L[n + j], l2 = L[n + j + 32];
        if (l1 > 15) l1 -= 16, qh[j] |= m1;
        if (l2 > 15) l2 -= 16, qh[j] |= m2;
        ql[j] = uint8_t(l1 | (l2 << 4));
      }
    }
  }
}

void quant_q6_K(const float* x, block_q6_K* y, int64_t nb) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ib++) {
      const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
      scales[ib] = scale;
      if (std::fabs(scale) > max_abs_scale) max_abs_scale = std::fabs(scale), max_scale = scale;
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(block_q6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = f2h(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ib++) y[i].scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < QK_K / 16; j++) {
      const float d = h2f(y[i].d) * float(y[i].scales[j]);
      if (d == 0) continue;
      for (int ii = 0; ii < 16; ii++) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = int8_t(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; l++) {
        const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        ql[l] = uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4));
        ql[l + 32] = uint8_t((q2 & 0xF) | ((q4 & 0xF) << 4));
        qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
  }
}

void check_row(DType t, int64_t n) {
  const DTypeTraits& tr = traits(t);
  if (n < 0 || n % tr.block != 0)
    throw Error(std::string("row of ") + std::to_string(n) + " elements is not a whole number of " + tr.name + " blocks");
}

}  // namespace

void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k) {
  for (int64_t i = 0; i < k / QK; i++, x += QK) {
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    for (int j = 0; j < QK; j++) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}

void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; j++)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(block_q8_K));  // llama.cpp leaves bsums as they were; zero them
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; j++) y[i].qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < QK_K / 16; j++) {
      int sum = 0;
      for (int ii = 0; ii < 16; ii++) sum += y[i].qs[16 * j + ii];
      y[i].bsums[j] = int16_t(sum);
    }
    y[i].d = 1 / iscale;
  }
}

bool can_quantize(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0:
    case DType::Q5_1: case DType::Q8_0: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q8_K:
      return true;
  }
  return false;
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n);
  const int64_t nb = n / traits(t).block;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::F16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = fp16_to_f32(h);
      }
      return;
    }
    case DType::BF16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    }
    case DType::F8_E4M3: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; i++) dst[i] = e4m3_to_f32(p[i]);
      return;
    }
    case DType::FP8_B128: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t b = 0; b < nb; b++, p += 132) {
        float scale;
        std::memcpy(&scale, p, 4);
        for (int j = 0; j < 128; j++) dst[b * 128 + j] = e4m3_to_f32(p[4 + j]) * scale;
      }
      return;
    }
    case DType::Q4_0: return dequant_q4_0(static_cast<const block_q4_0*>(src), dst, nb);
    case DType::Q4_1: return dequant_q4_1(static_cast<const block_q4_1*>(src), dst, nb);
    case DType::Q5_0: return dequant_q5_0(static_cast<const block_q5_0*>(src), dst, nb);
    case DType::Q5_1: return dequant_q5_1(static_cast<const block_q5_1*>(src), dst, nb);
    case DType::Q8_0: return dequant_q8_0(static_cast<const block_q8_0*>(src), dst, nb);
    case DType::Q4_K: return dequant_q4_K(static_cast<const block_q4_K*>(src), dst, nb);
    case DType::Q5_K: return dequant_q5_K(static_cast<const block_q5_K*>(src), dst, nb);
    case DType::Q6_K: return dequant_q6_K(static_cast<const block_q6_K*>(src), dst, nb);
    case DType::Q8_K: return dequant_q8_K(static_cast<const block_q8_K*>(src), dst, nb);
  }
  throw Error(std::string("dequantize_row: no codec for dtype ") + dtype_name(t));
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n);
  const int64_t nb = n / traits(t).block;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::F16: {
      uint8_t* p = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; i++) {
        const uint16_t h = f32_to_fp16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    }
    case DType::BF16: {
      uint8_t* p = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; i++) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    }
    case DType::Q4_0: return quant_q4_0(src, static_cast<block_q4_0*>(dst), nb);
    case DType::Q4_1: return quant_q4_1(src, static_cast<block_q4_1*>(dst), nb);
    case DType::Q5_0: return quant_q5_0(src, static_cast<block_q5_0*>(dst), nb);
    case DType::Q5_1: return quant_q5_1(src, static_cast<block_q5_1*>(dst), nb);
    case DType::Q8_0: return quantize_row_q8_0_ref(src, static_cast<block_q8_0*>(dst), n);
    case DType::Q4_K: return quant_q4_K(src, static_cast<block_q4_K*>(dst), nb);
    case DType::Q5_K: return quant_q5_K(src, static_cast<block_q5_K*>(dst), nb);
    case DType::Q6_K: return quant_q6_K(src, static_cast<block_q6_K*>(dst), nb);
    case DType::Q8_K: return quantize_row_q8_K_ref(src, static_cast<block_q8_K*>(dst), n);
  }
  throw Error(std::string("quantize_row: no codec for dtype ") + dtype_name(t));
}

}  // namespace aha
