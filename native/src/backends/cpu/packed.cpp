// Weight layouts packed at load for the CPU kernels (kernels.h). Plain code: it runs once per
// weight, and its output is checked through the packed kernels against the scalar reference.
#include <cstring>

#include "aha/error.h"
#include "aha/kernels.h"
#include "core/quants.h"

namespace aha {

namespace {

constexpr int64_t kGroup = 16;

int64_t padded(int64_t rows) { return (rows + kGroup - 1) / kGroup * kGroup; }

}  // namespace

bool has_packed_layout(DType weight) { return weight == DType::Q8_0; }

size_t packed_bytes(DType weight, int64_t k, int64_t rows) {
  if (!has_packed_layout(weight)) throw Error(std::string("no packed layout for dtype ") + dtype_name(weight));
  return row_bytes(weight, k) * size_t(padded(rows));
}

void pack_rows(DType weight, const void* src, int64_t k, int64_t rows, int64_t r0, int64_t r1, void* dst) {
  if (!has_packed_layout(weight)) throw Error(std::string("no packed layout for dtype ") + dtype_name(weight));
  if (k % QK || r0 % kGroup || r0 > r1 || r1 > rows) throw Error("pack_rows: bad shape");
  const size_t rb = row_bytes(weight, k);
  const int64_t nb = k / QK;
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  const int64_t end = r1 == rows ? padded(rows) : r1;
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
