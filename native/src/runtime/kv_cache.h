// Paged KV cache: fixed-size blocks of `block_size` tokens, one block table per sequence,
// ref-counted blocks so sequences forked from one prompt (a GRPO group) share its blocks;
// a shared block is copied before it is written (copy-on-write).
#pragma once
#include <cstdint>
#include <vector>

#include "aha/dtype.h"
#include "core/aligned.h"
#include "runtime/paged_blocks.h"

namespace aha {

class KvCache : public PagedBlocks {
 public:
  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, DType dtype, int64_t n_blocks, int64_t block_size = 16);

  DType dtype() const { return dtype_; }
  int64_t bytes() const override { return int64_t(k_.size() + v_.size()); }
  size_t elem_bytes() const { return kv_elem_bytes(dtype_); }

  // K/V rows: [layer][block][kv_head][slot][head_dim]: one KV head's slots of a block are one
  // run (what one attention task streams), not interleaved with the other heads'.
  uint8_t* k(int64_t layer, int32_t block, int64_t slot, int64_t head) { return k_.data() + offset(layer, block, slot, head); }
  uint8_t* v(int64_t layer, int32_t block, int64_t slot, int64_t head) { return v_.data() + offset(layer, block, slot, head); }
  const uint8_t* k(int64_t layer, int32_t block, int64_t slot, int64_t head) const { return k_.data() + offset(layer, block, slot, head); }
  const uint8_t* v(int64_t layer, int32_t block, int64_t slot, int64_t head) const { return v_.data() + offset(layer, block, slot, head); }
  size_t row_bytes() const { return size_t(head_dim_) * elem_bytes(); }  // one head's K (or V) of one token; a head's consecutive slots
  size_t token_bytes() const { return size_t(n_kv_heads_) * row_bytes(); }  // all heads' K (or V) of one token in one layer
  size_t block_stride() const { return size_t(block_size_) * token_bytes(); }  // a head's block b to b + 1 in one layer
  int64_t n_layers() const { return n_layers_; }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t bytes_per_token() const { return 2 * n_layers_ * int64_t(token_bytes()); }  // K and V
  // One token's K and V, every KV head ([n_kv_heads][head_dim] floats each), into the slot.
  void write(int64_t layer, int32_t block, int64_t slot, const float* k_row, const float* v_row);

  void copy_block(int32_t dst, int32_t src) override;  // all layers

 private:
  size_t offset(int64_t layer, int32_t block, int64_t slot, int64_t head) const {
    return ((size_t(layer) * size_t(n_blocks_) + size_t(block)) * size_t(n_kv_heads_) + size_t(head)) * size_t(block_size_) * row_bytes() +
           size_t(slot) * row_bytes();
  }
  int64_t n_layers_, n_kv_heads_, head_dim_;
  DType dtype_;
  aligned_vector<uint8_t> k_, v_;
};

// A sequence: its tokens and the blocks that hold their K/V.
struct Sequence {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
  int adapter = 0;  // the LoRA adapter its K/V were computed with (0: none)
  bool live = false;
};

}  // namespace aha
