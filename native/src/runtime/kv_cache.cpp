#include "runtime/kv_cache.h"

#include <cstring>

#include "aha/error.h"

namespace aha {

KvCache::KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, DType dtype, int64_t n_blocks, int64_t block_size)
    : PagedBlocks(n_blocks, block_size), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim), dtype_(dtype) {
  if (!is_kv_dtype(dtype)) throw Error(std::string("KV cache dtype must be f16, bf16 or f32, not ") + dtype_name(dtype));
  size_t bytes = size_t(n_layers) * size_t(n_blocks) * block_stride();
  for (auto* kv : {&k_, &v_}) {
    kv->reserve(bytes);  // untouched yet: the huge-page hint applies before the pages fault in
    advise_huge_pages(kv->data(), bytes);
    kv->resize(bytes);
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
