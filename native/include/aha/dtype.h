// Weight and activation dtypes. Ids are GGML's (ggml_type), so a GGUF tensor's
// type field maps straight to DType; block layouts are bit-compatible with GGUF.
#pragma once
#include <cstddef>
#include <cstdint>

namespace aha {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
  // Not GGUF types (ids no GGUF uses; a GGUF naming them is rejected): FP8 as DeepSeek-V3 ships
  // it. F8_E4M3: safetensors' element type (float8_e4m3fn: 1 sign, 4 exponent bits with bias 7,
  // 3 mantissa bits; S.1111.111 is NaN, no infinities), scaled per 128 × 128 block by a separate
  // weight_scale_inv tensor. FP8_B128: the engine's row layout of such a weight, each row a
  // self-contained run of 128-element blocks of an f32 scale (the block's weight_scale_inv) then
  // 128 e4m3 bytes, so the kernels dequantize it as they read it.
  F8_E4M3 = 1000, FP8_B128 = 1001,
};
constexpr uint32_t kFirstInternalDType = 1000;

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
// K/V cache elements: f32, f16 or bf16 (rounded to nearest even), n values at a time.
inline bool is_kv_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
inline size_t kv_elem_bytes(DType t) { return t == DType::F32 ? 4 : 2; }
void kv_store(uint8_t* dst, const float* src, int64_t n, DType t);
void kv_load(float* dst, const uint8_t* src, int64_t n, DType t);
// The 16-slot tile layout of a bf16 K/V block (where the AMX-BF16 attention runs): per 16 slots
// and per 32 values, the 16 slots' 64 bytes side by side, so a tile load reads 1 KB in a row.
// Byte offset of value i of slot s from the block's start, for slots of `width` values.
inline size_t kv_tiled_offset(int64_t s, int64_t i, int64_t width) {
  return size_t(s / 16) * 16 * size_t(width) * 2 + size_t(i / 32) * 1024 + size_t(s % 16) * 64 + size_t(i % 32) * 2;
}
// float8_e4m3fn → f32, exactly (NaN for S.1111.111).
float e4m3_to_f32(uint8_t b);

}  // namespace aha
