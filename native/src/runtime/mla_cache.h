// MLA latent cache (DeepSeek-V2/V3): per token per layer only the normalized latent
// c_kv [kv_lora_rank] and the rotated rope key k_pe [qk_rope_head_dim], stored side by side in
// one slot, so bytes per token = n_layers × (kv_lora_rank + qk_rope_head_dim) × element size.
// Paged like the dense KV cache: blocks of block_size slots, shared by forked sequences.
// A bf16 cache where the AMX-BF16 attention runs is "tiled": each block holds its slots in groups
// of 16, and per group and per 32 values the 16 slots' 64 bytes side by side (kv_tiled_offset),
// so that a tile load reads 1 KB in a row instead of 16 strided lines. Only the layout differs;
// write, read and the byte counts are the same.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "aha/dtype.h"
#include "core/aligned.h"
#include "runtime/paged_blocks.h"

namespace aha {

class MlaCache : public PagedBlocks {
 public:
  // tiled: unset, where it pays (bf16, AMX-BF16 here, whole 16-slot groups and 32-value columns).
  MlaCache(int64_t n_layers, int64_t kv_lora_rank, int64_t qk_rope_head_dim, DType dtype, int64_t n_blocks, int64_t block_size = 16,
           std::optional<bool> tiled = {});

  DType dtype() const { return dtype_; }
  int64_t n_layers() const { return n_layers_; }
  int64_t kv_lora_rank() const { return kv_lora_rank_; }
  int64_t qk_rope_head_dim() const { return qk_rope_head_dim_; }
  size_t elem_bytes() const { return kv_elem_bytes(dtype_); }
  size_t slot_bytes() const { return size_t(kv_lora_rank_ + qk_rope_head_dim_) * elem_bytes(); }  // one token, one layer
  int64_t bytes_per_token() const { return n_layers_ * int64_t(slot_bytes()); }
  int64_t bytes() const override { return int64_t(data_.size()); }
  bool tiled() const { return tiled_; }

  // Start of (layer, block): slot-major, block_size slots of c_kv [kv_lora_rank] then k_pe
  // [qk_rope_head_dim]; or tiled (above).
  const uint8_t* block_data(int64_t layer, int32_t block) const { return data_.data() + block_offset(layer, block); }

  void write(int64_t layer, int32_t block, int64_t s, const float* c_kv, const float* k_pe);
  // c_kv and k_pe of one cached token as f32 (c_kv [kv_lora_rank], k_pe [qk_rope_head_dim]).
  void read(int64_t layer, int32_t block, int64_t s, float* c_kv, float* k_pe) const;

  void copy_block(int32_t dst, int32_t src) override;

 private:
  size_t block_offset(int64_t layer, int32_t block) const {
    return (size_t(layer) * size_t(n_blocks_) + size_t(block)) * size_t(block_size_) * slot_bytes();
  }
  // Byte offset of value i of slot s within its block.
  size_t in_block(int64_t s, int64_t i) const {
    if (!tiled_) return size_t(s) * slot_bytes() + size_t(i) * elem_bytes();
    return kv_tiled_offset(s, i, kv_lora_rank_ + qk_rope_head_dim_);
  }
  int64_t n_layers_, kv_lora_rank_, qk_rope_head_dim_;
  DType dtype_;
  bool tiled_ = false;
  aligned_vector<uint8_t> data_;  // [layer][block][slot][kv_lora_rank + qk_rope_head_dim]
};

}  // namespace aha
