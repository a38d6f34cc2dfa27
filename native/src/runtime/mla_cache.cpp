#include "runtime/mla_cache.h"

#include <cstring>
#include <string>

#include "aha/error.h"

namespace aha {

MlaCache::MlaCache(int64_t n_layers, int64_t kv_lora_rank, int64_t qk_rope_head_dim, DType dtype, int64_t n_blocks, int64_t block_size)
    : PagedBlocks(n_blocks, block_size), n_layers_(n_layers), kv_lora_rank_(kv_lora_rank), qk_rope_head_dim_(qk_rope_head_dim), dtype_(dtype) {
  if (dtype != DType::F16 && dtype != DType::F32) throw Error(std::string("MLA cache dtype must be f16 or f32, not ") + dtype_name(dtype));
  data_.resize(size_t(n_layers) * size_t(n_blocks) * size_t(block_size) * slot_bytes());
}

static void store(uint8_t* dst, const float* src, int64_t n, bool f16) {
  if (!f16) {
    std::memcpy(dst, src, size_t(n) * 4);
    return;
  }
  uint16_t* h = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
}

static void load(float* dst, const uint8_t* src, int64_t n, bool f16) {
  if (!f16) {
    std::memcpy(dst, src, size_t(n) * 4);
    return;
  }
  const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_f32(h[i]);
}

void MlaCache::write(int64_t layer, int32_t block, int64_t s, const float* c_kv, const float* k_pe) {
  const bool f16 = dtype_ == DType::F16;
  uint8_t* p = slot(layer, block, s);
  store(p, c_kv, kv_lora_rank_, f16);
  store(p + size_t(kv_lora_rank_) * elem_bytes(), k_pe, qk_rope_head_dim_, f16);
}

void MlaCache::read(int64_t layer, int32_t block, int64_t s, float* c_kv, float* k_pe) const {
  const bool f16 = dtype_ == DType::F16;
  const uint8_t* p = slot(layer, block, s);
  load(c_kv, p, kv_lora_rank_, f16);
  load(k_pe, p + size_t(kv_lora_rank_) * elem_bytes(), qk_rope_head_dim_, f16);
}

void MlaCache::copy_block(int32_t dst, int32_t src) {
  const size_t n = size_t(block_size_) * slot_bytes();
  for (int64_t l = 0; l < n_layers_; l++) std::memcpy(slot(l, dst, 0), slot(l, src, 0), n);
}

}  // namespace aha
