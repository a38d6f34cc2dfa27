#include "runtime/kv_cache.h"

#include <cstring>

#include "aha/error.h"

namespace aha {

KvCache::KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, DType dtype, int64_t n_blocks, int64_t block_size)
    : PagedBlocks(n_blocks, block_size), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim), dtype_(dtype) {
  if (!is_kv_dtype(dtype)) throw Error(std::string("KV cache dtype must be f16, bf16 or f32, not ") + dtype_name(dtype));
  const size_t bytes = size_t(n_layers) * size_t(n_blocks) * block_stride();
  resize_with_huge_pages(k_, bytes);
  resize_with_huge_pages(v_, bytes);
}

void KvCache::write(int64_t layer, int32_t block, int64_t slot, const float* k_row, const float* v_row) {
  for (int64_t h = 0; h < n_kv_heads_; h++) {
    kv_store(k(layer, block, slot, h), k_row + h * head_dim_, head_dim_, dtype_);
    kv_store(v(layer, block, slot, h), v_row + h * head_dim_, head_dim_, dtype_);
  }
}

void KvCache::copy_block(int32_t dst, int32_t src) {
  const size_t n = block_stride();  // every head's slots of the block
  for (int64_t l = 0; l < n_layers_; l++) {
    std::memcpy(k(l, dst, 0, 0), k(l, src, 0, 0), n);
    std::memcpy(v(l, dst, 0, 0), v(l, src, 0, 0), n);
  }
}

}  // namespace aha
