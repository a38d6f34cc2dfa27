// Block layouts of the quantized dtypes, bit-compatible with ggml (ggml-common.h).
// fp16 fields are raw IEEE half bits. A block of QK elements stores, per element,
// a small integer q and shares one scale d (and a min m for the "_1"/K types):
//   q4_0: x = d * (q - 8)       q4_1: x = d * q + m       (q in 0..15, 32 per block)
//   q5_0: x = d * (q - 16)      q5_1: x = d * q + m       (q in 0..31, high bit in qh)
//   q8_0: x = d * q             (q in -127..127)
//   q4_K/q5_K: 256 = 8 sub-blocks of 32, x = d * sc[j] * q - dmin * mn[j], 6-bit sc/mn packed in scales[12]
//   q6_K: 256 = 16 sub-blocks of 16, x = d * scales[j] * (q - 32), q in 0..63
//   q8_K: 256 of int8 with a float d and the sums of each 16 quants (for the K-quant mins).
#pragma once
#include <cstdint>

namespace aha {

constexpr int QK = 32;    // elements per block of the legacy quants
constexpr int QK_K = 256;  // elements per super-block of the K-quants

// Packed (alignment 1): rows may start anywhere (odd strides, buffers from JavaScript), and
// ggml's layouts have no padding to lose. Never take the address of a multi-byte member.
#pragma pack(push, 1)

struct block_q4_0 {
  uint16_t d;
  uint8_t qs[QK / 2];  // element j in the low nibble of qs[j], element j + 16 in the high nibble
};
struct block_q4_1 {
  uint16_t d, m;
  uint8_t qs[QK / 2];
};
struct block_q5_0 {
  uint16_t d;
  uint8_t qh[4];       // bit j: 5th bit of element j
  uint8_t qs[QK / 2];
};
struct block_q5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
};
struct block_q8_0 {
  uint16_t d;
  int8_t qs[QK];
};
struct block_q4_K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 scales and 8 mins of 6 bits (get_scale_min_k4)
  uint8_t qs[QK_K / 2];  // 32-byte chunk c: sub-block 2c in the low nibbles, 2c + 1 in the high
};
struct block_q5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[QK_K / 8];  // bit j of qh[l]: 5th bit of element 32 j + l
  uint8_t qs[QK_K / 2];
};
struct block_q6_K {
  uint8_t ql[QK_K / 2];  // low 4 bits
  uint8_t qh[QK_K / 4];  // high 2 bits
  int8_t scales[QK_K / 16];
  uint16_t d;
};
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  // sum of each 16 consecutive qs
};

#pragma pack(pop)

static_assert(sizeof(block_q4_0) == 18, "q4_0 block");
static_assert(sizeof(block_q4_1) == 20, "q4_1 block");
static_assert(sizeof(block_q5_0) == 22, "q5_0 block");
static_assert(sizeof(block_q5_1) == 24, "q5_1 block");
static_assert(sizeof(block_q8_0) == 34, "q8_0 block");
static_assert(sizeof(block_q4_K) == 144, "q4_K block");
static_assert(sizeof(block_q5_K) == 176, "q5_K block");
static_assert(sizeof(block_q6_K) == 210, "q6_K block");
static_assert(sizeof(block_q8_K) == 292, "q8_K block");

// Sub-block j (0..7) scale and min of a q4_K/q5_K block.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Scalar reference quantizers of the activation dtypes (what quantize_act(..., Isa::Scalar) runs).
void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k);
void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t k);

}  // namespace aha
