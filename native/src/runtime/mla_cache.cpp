#include "runtime/mla_cache.h"

#include <cstring>
#include <string>

#include "aha/error.h"
#include "aha/kernels.h"

namespace aha {

MlaCache::MlaCache(int64_t n_layers, int64_t kv_lora_rank, int64_t qk_rope_head_dim, DType dtype, int64_t n_blocks, int64_t block_size,
                   std::optional<bool> tiled)
    : PagedBlocks(n_blocks, block_size), n_layers_(n_layers), kv_lora_rank_(kv_lora_rank), qk_rope_head_dim_(qk_rope_head_dim), dtype_(dtype) {
  if (!is_kv_dtype(dtype)) throw Error(std::string("MLA cache dtype must be f16, bf16 or f32, not ") + dtype_name(dtype));
  const bool can_tile = dtype == DType::BF16 && block_size % 16 == 0 && kv_lora_rank % 32 == 0 && qk_rope_head_dim % 32 == 0;
  if (tiled.value_or(false) && !can_tile)
    throw Error("a tiled MLA cache needs bf16, blocks of whole 16-slot groups and kv_lora_rank and qk_rope_head_dim multiples of 32");
  tiled_ = tiled.value_or(can_tile && cpu_has_amx_bf16() && active_isa() == Isa::Amx);  // (AHA_ISA=avx512: the slot-major layout its op reads)
  resize_with_huge_pages(data_, size_t(n_layers) * size_t(n_blocks) * size_t(block_size) * slot_bytes());
}

void MlaCache::write(int64_t layer, int32_t block, int64_t s, const float* c_kv, const float* k_pe) {
  uint8_t* p = data_.data() + block_offset(layer, block);
  if (!tiled_) {
    kv_store(p + in_block(s, 0), c_kv, kv_lora_rank_, dtype_);
    kv_store(p + in_block(s, kv_lora_rank_), k_pe, qk_rope_head_dim_, dtype_);
    return;
  }
  for (int64_t i = 0; i < kv_lora_rank_; i += 32) kv_store(p + in_block(s, i), c_kv + i, 32, dtype_);
  for (int64_t i = 0; i < qk_rope_head_dim_; i += 32) kv_store(p + in_block(s, kv_lora_rank_ + i), k_pe + i, 32, dtype_);
}

void MlaCache::read(int64_t layer, int32_t block, int64_t s, float* c_kv, float* k_pe) const {
  const uint8_t* p = block_data(layer, block);
  if (!tiled_) {
    kv_load(c_kv, p + in_block(s, 0), kv_lora_rank_, dtype_);
    kv_load(k_pe, p + in_block(s, kv_lora_rank_), qk_rope_head_dim_, dtype_);
    return;
  }
  for (int64_t i = 0; i < kv_lora_rank_; i += 32) kv_load(c_kv + i, p + in_block(s, i), 32, dtype_);
  for (int64_t i = 0; i < qk_rope_head_dim_; i += 32) kv_load(k_pe + i, p + in_block(s, kv_lora_rank_ + i), 32, dtype_);
}

void MlaCache::copy_block(int32_t dst, int32_t src) {
  const size_t n = size_t(block_size_) * slot_bytes();
  for (int64_t l = 0; l < n_layers_; l++) std::memcpy(data_.data() + block_offset(l, dst), block_data(l, src), n);
}

}  // namespace aha
