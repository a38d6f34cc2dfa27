// Element-wise and attention ops of the CPU backend. Each has a scalar reference
// (ops_ref.cpp, no intrinsics) and optimized versions per ISA (ops_avx512.cpp);
// cpu_ops() picks the table for the active ISA. Shapes are in the comments.
#pragma once
#include <cstdint>

#include "aha/kernels.h"

namespace aha {

struct AttentionArgs {
  const float* q;            // [group, head_dim]: the query heads that share one KV head
  float* out;                // [group, v_dim]
  int group, head_dim;
  float scale;               // 1/sqrt(head_dim)
  int64_t n_ctx;             // attend to positions [ctx_begin, n_ctx)
  const int32_t* blocks;     // block table of the sequence
  int64_t block_size;
  const uint8_t* k0;         // K row of (block 0, slot 0) for this layer and KV head
  const uint8_t* v0;
  size_t block_stride;       // bytes between blocks (same for K and V)
  size_t slot_stride;        // bytes between tokens in a block
  DType kv;                  // K/V elements: F32, F16 or BF16
  float* scratch;            // [group * round_up(head_dim, 16)] floats the kernel may use
  int v_dim = 0;             // values per head: the first v_dim elements of a V row (0: head_dim)
  int64_t ctx_begin = 0;
  // Set: per head, log Σ exp(scale q·k) over the range (-inf and out = 0 for an empty range), so
  // that partial results over disjoint ranges merge: out = Σ_r exp(lse_r - lse) out_r.
  float* lse = nullptr;
  // K/V blocks in the 16-slot tile layout (kv_tiled_offset; bf16, v0 = k0, block_size a multiple
  // of 16: the MLA cache's layout where the AMX-BF16 attention runs).
  bool tiled = false;
};
// Element i of slot t of a K/V cache row set described by `a` (base k0 or v0).
inline const uint8_t* kv_element(const AttentionArgs& a, const uint8_t* base, int64_t t, int64_t i) {
  const uint8_t* blk = base + size_t(a.blocks[t / a.block_size]) * a.block_stride;
  const int64_t s = t % a.block_size;
  if (!a.tiled) return blk + size_t(s) * a.slot_stride + size_t(i) * kv_elem_bytes(a.kv);
  return blk + kv_tiled_offset(s, i, a.head_dim);
}
// MLA's absorbed form is this op with one KV head for all query heads, K = the cached slot
// (latent + rope key, head_dim = kv_lora_rank + rope) and V = the latent part of the same slot
// (v0 = k0, v_dim = kv_lora_rank).

struct CpuOps {
  // y[n] = x[n] / rms(x) * w[n]
  void (*rmsnorm)(float* y, const float* x, const float* w, int64_t n, float eps);
  // y[n] = silu(gate[n]) * up[n]
  void (*swiglu)(float* y, const float* gate, const float* up, int64_t n);
  // y[n] += x[n]
  void (*add)(float* y, const float* x, int64_t n);
  // Attention of one token's query group against a range of the cached K/V.
  void (*attention)(const AttentionArgs& a);
  // C[m, n] += alpha · A[m, k] · B[k, n], f32 row-major with leading dimensions (training's
  // backward products; one thread: callers split C between threads).
  void (*gemm)(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc);
};

const CpuOps& cpu_ops(Isa isa);
inline const CpuOps& cpu_ops() { return cpu_ops(active_isa()); }

// Rotary embedding of n_heads heads of one token at position `pos`, in place.
// inv_freq[head_dim/2]; neox pairs (i, i + head_dim/2), otherwise (2i, 2i+1).
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq, bool neox);

void softmax(float* x, int64_t n);

namespace ref {
void rmsnorm(float* y, const float* x, const float* w, int64_t n, float eps);
void swiglu(float* y, const float* gate, const float* up, int64_t n);
void add(float* y, const float* x, int64_t n);
void attention(const AttentionArgs& a);
void gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc);
}  // namespace ref

}  // namespace aha
