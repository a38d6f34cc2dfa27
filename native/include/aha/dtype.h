// Weight and activation dtypes. Ids are GGML's (ggml_type), so a GGUF tensor's
// type field maps straight to DType; block layouts are bit-compatible with GGUF.
#pragma once
#include <cstddef>
#include <cstdint>

namespace aha {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

struct DTypeTraits {
  const char* name;  // GGUF / llama.cpp spelling: "f32", "q4_K", ...
  int64_t block;     // elements per block (1 for plain floats)
  size_t block_bytes;
};

// nullptr when the id is not a dtype the engine knows (unknown-dtype errors name the id).
const DTypeTraits* dtype_traits(uint32_t ggml_type_id);
const DTypeTraits& traits(DType t);
inline const char* dtype_name(DType t) { return traits(t).name; }
// Bytes for a row of n elements; n must be a multiple of the block size.
size_t row_bytes(DType t, int64_t n);
bool dtype_from_name(const char* name, DType* out);  // "q8_0", "Q4_K", "bf16" ... (case-insensitive)

// fp16 / bf16 scalar conversion (round-to-nearest-even), the reference everywhere.
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);

}  // namespace aha
