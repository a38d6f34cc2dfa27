// The bookkeeping every paged cache shares: `n_blocks` blocks of `block_size` token slots, a free
// list, and a reference count per block so that forked sequences share their prompt's blocks.
// What a slot holds is the derived cache's business (KvCache: K and V; MlaCache: MLA latents).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace aha {

class PagedBlocks {
 public:
  PagedBlocks(int64_t n_blocks, int64_t block_size);
  virtual ~PagedBlocks() = default;

  int64_t block_size() const { return block_size_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }

  int32_t alloc();            // throws aha::Error when the cache is full
  void retain(int32_t block);
  void release(int32_t block);
  int refcount(int32_t block) const { return refs_[size_t(block)]; }

  virtual void copy_block(int32_t dst, int32_t src) = 0;  // every layer's slots
  virtual int64_t bytes() const = 0;                       // memory the slots take

 protected:
  int64_t n_blocks_, block_size_;

 private:
  std::vector<int> refs_;
  std::vector<int32_t> free_;
};

}  // namespace aha
