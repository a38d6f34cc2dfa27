#include "runtime/mla_cache.h"

#include <cstring>
#include <string>

#include "aha/error.h"

namespace aha {

MlaCache::MlaCache(int64_t n_layers, int64_t kv_lora_rank, int64_t qk_rope_head_dim, DType dtype, int64_t n_blocks, int64_t block_size)
    : PagedBlocks(n_blocks, block_size), n_layers_(n_layers), kv_lora_rank_(kv_lora_rank), qk_rope_head_dim_(qk_rope_head_dim), dtype_(dtype) {
  if (!is_kv_dtype(dtype)) throw Error(std::string("MLA cache dtype must be f16, bf16 or f32, not ") + dtype_name(dtype));
  data_.resize(size_t(n_layers) * size_t(n_blocks) * size_t(block_size) * slot_bytes());
}

void MlaCache::write(int64_t layer, int32_t block, int64_t s, const float* c_kv, const float* k_pe) {
  uint8_t* p = slot(layer, block, s);
  kv_store(p, c_kv, kv_lora_rank_, dtype_);
  kv_store(p + size_t(kv_lora_rank_) * elem_bytes(), k_pe, qk_rope_head_dim_, dtype_);
}

void MlaCache::read(int64_t layer, int32_t block, int64_t s, float* c_kv, float* k_pe) const {
  const uint8_t* p = slot(layer, block, s);
  kv_load(c_kv, p, kv_lora_rank_, dtype_);
  kv_load(k_pe, p + size_t(kv_lora_rank_) * elem_bytes(), qk_rope_head_dim_, dtype_);
}

void MlaCache::copy_block(int32_t dst, int32_t src) {
  const size_t n = size_t(block_size_) * slot_bytes();
  for (int64_t l = 0; l < n_layers_; l++) std::memcpy(slot(l, dst, 0), slot(l, src, 0), n);
}

}  // namespace aha
