// Weight layouts packed at load for the CPU kernels (kernels.h). Plain code: it runs once per
// weight, and its output is checked through the packed kernels against the scalar reference.
#include <algorithm>
#include <cstring>

#include "aha/error.h"
#include "aha/kernels.h"
#include "core/quants.h"

namespace aha {

namespace {

constexpr int64_t kGroup = 16;

int64_t padded(int64_t rows) { return (rows + kGroup - 1) / kGroup * kGroup; }

}  // namespace

bool has_packed_layout(DType weight) { return weight == DType::Q8_0 || weight == DType::Q4_K; }

namespace {

// q4_K, per group of 16 rows and super-block (2304 bytes, 16 rows' 144): 32 × 64 bytes of quants,
// zmm (j, u) holding for each row r the dword of sub-block j's values 8u..8u+3 (low nibbles)
// and 8u+4..8u+7 (high nibbles); then d [16] and dmin [16] (fp16); then the 12 scale bytes
// transposed, byte b of rows 0..15 at 16 b.
constexpr size_t kQ4KGroupSb = 16 * sizeof(block_q4_K);

uint8_t q4k_value(const block_q4_K& b, int v) {
  const int s = v / 32, l = v % 32;
  const uint8_t byte = b.qs[32 * (s / 2) + l];
  return s % 2 ? uint8_t(byte >> 4) : uint8_t(byte & 0x0F);
}

void pack_q4_K_group(const uint8_t* src, size_t rb, int64_t nsb, int64_t live, uint8_t* dst) {
  for (int64_t sb = 0; sb < nsb; sb++) {
    uint8_t* o = dst + size_t(sb) * kQ4KGroupSb;
    std::memset(o, 0, kQ4KGroupSb);
    for (int64_t r = 0; r < live; r++) {
      block_q4_K b;
      std::memcpy(&b, src + size_t(r) * rb + size_t(sb) * sizeof(block_q4_K), sizeof b);
      for (int j = 0; j < 8; j++)
        for (int u = 0; u < 4; u++)
          for (int i = 0; i < 4; i++)
            o[size_t(((j * 4 + u) * 16 + r) * 4 + i)] = uint8_t(q4k_value(b, 32 * j + 8 * u + i) | (q4k_value(b, 32 * j + 8 * u + 4 + i) << 4));
      std::memcpy(o + 2048 + 2 * r, &b.d, 2);
      std::memcpy(o + 2080 + 2 * r, &b.dmin, 2);
      for (int k = 0; k < 12; k++) o[2112 + 16 * k + r] = b.scales[k];
    }
  }
}

}  // namespace

size_t packed_bytes(DType weight, int64_t k, int64_t rows) {
  if (!has_packed_layout(weight)) throw Error(std::string("no packed layout for dtype ") + dtype_name(weight));
  return row_bytes(weight, k) * size_t(padded(rows));
}

void pack_rows(DType weight, const void* src, int64_t k, int64_t rows, int64_t r0, int64_t r1, void* dst) {
  if (!has_packed_layout(weight)) throw Error(std::string("no packed layout for dtype ") + dtype_name(weight));
  if (k % (weight == DType::Q4_K ? QK_K : QK) || r0 % kGroup || r0 > r1 || r1 > rows) throw Error("pack_rows: bad shape");
  const size_t rb = row_bytes(weight, k);
  const int64_t nb = k / QK;
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  const int64_t end = r1 == rows ? padded(rows) : r1;
  if (weight == DType::Q4_K) {
    for (int64_t g0 = r0; g0 < end; g0 += kGroup)
      pack_q4_K_group(s + size_t(g0) * rb, rb, k / QK_K, std::max<int64_t>(0, std::min(kGroup, rows - g0)), d + size_t(g0) * rb);
    return;
  }
  for (int64_t g0 = r0; g0 < end; g0 += kGroup) {
    uint8_t* q = d + size_t(g0) * rb;
    uint8_t* scales = q + size_t(nb) * 512;
    for (int64_t r = 0; r < kGroup; r++) {
      const bool live = g0 + r < rows;
      const uint8_t* row = s + size_t(g0 + r) * rb;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* blk = row + size_t(b) * sizeof(block_q8_0);
        uint8_t* out = q + size_t(b) * 512 + size_t(r) * 4;
        if (live) std::memcpy(scales + size_t(b * kGroup + r) * 2, blk, 2);
        else std::memset(scales + size_t(b * kGroup + r) * 2, 0, 2);
        for (int j = 0; j < 8; j++)
          for (int i = 0; i < 4; i++) out[64 * j + i] = live ? uint8_t(blk[2 + 4 * j + i] ^ 0x80) : 0x80;
      }
    }
  }
}

}  // namespace aha
