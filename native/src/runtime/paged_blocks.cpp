#include "runtime/paged_blocks.h"

#include <string>

#include "aha/error.h"

namespace aha {

PagedBlocks::PagedBlocks(int64_t n_blocks, int64_t block_size) : n_blocks_(n_blocks), block_size_(block_size) {
  refs_.assign(size_t(n_blocks), 0);
  free_.reserve(size_t(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; b--) free_.push_back(int32_t(b));
}

int32_t PagedBlocks::alloc() {
  if (free_.empty())
    throw Error("KV cache is full (" + std::to_string(n_blocks_ * block_size_) + " tokens); free some sequences or load with a larger cache");
  int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void PagedBlocks::retain(int32_t block) { refs_[size_t(block)]++; }

void PagedBlocks::release(int32_t block) {
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

}  // namespace aha
