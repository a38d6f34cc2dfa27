// The dense decoder family: Llama (R1-Distill-Llama), Qwen2 (R1-Distill-Qwen, qkv bias),
// Qwen3 (R1-0528-Qwen3, q/k norm). One forward over a flat batch of tokens from any
// number of sequences, reading and writing the paged KV cache.
#pragma once
#include <cstdint>
#include <vector>

#include "aha/model.h"
#include "aha/train.h"
#include "backends/cpu/matmul.h"
#include "core/thread_pool.h"
#include "models/loader.h"
#include "runtime/kv_cache.h"

namespace aha {

struct DenseLayer {
  const Tensor* attn_norm;   // [hidden] f32
  const Tensor* wq;          // {hidden, n_heads*head_dim}
  const Tensor* wk;          // {hidden, n_kv_heads*head_dim}
  const Tensor* wv;          // {hidden, n_kv_heads*head_dim}
  const Tensor* wo;          // {n_heads*head_dim, hidden}
  const Tensor* bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;  // qwen2: [out] f32
  const Tensor* q_norm = nullptr, *k_norm = nullptr;                      // qwen3: [head_dim] f32
  const Tensor* ffn_norm;    // [hidden] f32
  const Tensor* w_gate;      // {hidden, intermediate}
  const Tensor* w_up;        // {hidden, intermediate}
  const Tensor* w_down;      // {intermediate, hidden}
};

// Tokens of one forward pass, flattened across sequences.
struct ForwardBatch {
  std::vector<int32_t> tokens;              // [T]
  std::vector<int64_t> pos;                 // [T] position in its sequence
  std::vector<const int32_t*> blocks;       // [T] block table of its sequence
  std::vector<int64_t> logit_rows;          // token indices whose logits are wanted, in output order
  // A LoRA adapter applied to every token of the batch (null: the base model), unmerged:
  // y = W x + lora_scale · B (A x); q/k rows of B in the weights' order (see to_engine_order).
  const LoraSet<float>* lora = nullptr;
  double lora_scale = 0;
  // deepseek: receives every token's final normed hidden state [T, hidden] (MTP drafting reads it).
  std::vector<float>* hidden = nullptr;
};

// The adapter's term of one projection of layer l: y[T, out] += scale · (x Aᵀ) Bᵀ (nothing
// without an adapter, or when it does not adapt that module).
void add_lora(float* y, const float* x, const ForwardBatch& b, int64_t l, LoraTarget t, int64_t T, ThreadPool& pool);

// Activations of one forward pass; grown on demand and reused.
struct DenseWorkspace {
  std::vector<float> x;      // [T, hidden] residual stream
  std::vector<float> xn;     // [T, hidden] normed
  std::vector<float> q;      // [T, n_heads*head_dim]
  std::vector<float> k, v;   // [T, n_kv_heads*head_dim]
  std::vector<float> attn;   // [T, n_heads*head_dim]
  std::vector<float> proj;   // [T, hidden]
  std::vector<float> gate, up;  // [T, intermediate]
  std::vector<float> attn_scratch;  // [threads, n_heads * 256]
  MatmulScratch mm;
  // Memory held (capacities): what the forward passes so far needed at their largest.
  size_t bytes() const {
    size_t n = 0;
    for (const auto* v : {&x, &xn, &q, &k, &v, &attn, &proj, &gate, &up, &attn_scratch}) n += v->capacity() * sizeof(float);
    return n + mm.act.capacity();
  }
};

class DenseModel {
 public:
  explicit DenseModel(WeightStore& ws);  // binds and shape-checks every tensor
  const ModelConfig& config() const { return c_; }

  // The bound weights, read by the training engine (native/src/train).
  const DenseLayer& layer(int64_t l) const { return layers_[size_t(l)]; }
  const Tensor& tok_embd() const { return *tok_embd_; }
  const Tensor& output_norm() const { return *output_norm_; }
  const Tensor& output() const { return *output_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

  // logits: [logit_rows.size(), vocab]
  void forward(const ForwardBatch& b, KvCache& cache, ThreadPool& pool, DenseWorkspace& w, float* logits,
               const DumpHook* dump) const;

 private:
  void attention_block(int64_t l, const ForwardBatch& b, KvCache& cache, ThreadPool& pool, DenseWorkspace& w, const DumpHook* dump) const;
  void ffn_block(int64_t l, const ForwardBatch& b, ThreadPool& pool, DenseWorkspace& w, const DumpHook* dump) const;

  ModelConfig c_;
  const Tensor* tok_embd_;     // {hidden, vocab}
  const Tensor* output_norm_;  // [hidden]
  const Tensor* output_;       // {hidden, vocab} (tok_embd_ when tied)
  std::vector<DenseLayer> layers_;
  std::vector<float> inv_freq_;  // [head_dim/2]
};

}  // namespace aha
