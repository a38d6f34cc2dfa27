// The deepseek family: DeepSeek-V2 (V2-Lite, V2.5) and DeepSeek-V3 (R1, Moonlight-style configs).
// Multi-head latent attention over the MLA latent cache (absorbed and expanded forms behind one
// switch), MoE with a config-driven gate and shared experts, dense first layers, YaRN rope.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "aha/model.h"
#include "backends/cpu/matmul.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "models/dense.h"
#include "models/loader.h"
#include "runtime/mla_cache.h"

namespace aha {

// config.json of DeepseekV2ForCausalLM / DeepseekV3ForCausalLM → ModelConfig (errors name `file`).
ModelConfig deepseek_config_from_hf(const Json& j, const std::string& file);
// GGUF metadata of llama.cpp's deepseek2 → ModelConfig (errors name the file).
ModelConfig deepseek_config_from_gguf(const GgufFile& g);

// The MoE router as a pure function of config: router logits → (weights, indices) per token.
struct MoeGate {
  DeepseekConfig::Scoring scoring = DeepseekConfig::Scoring::Softmax;
  DeepseekConfig::GroupScore group_score = DeepseekConfig::GroupScore::None;
  int64_t n_experts = 0, n_group = 1, topk_group = 1, top_k = 0;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  const float* bias = nullptr;   // [n_experts] e_score_correction_bias (selection only), or null

  // top_k: experts per token (the config's num_experts_per_tok unless overridden).
  static MoeGate from_config(const DeepseekConfig& c, int64_t top_k, const float* bias);
  // logits [T, n_experts] → weights [T, top_k], indices [T, top_k], best selection score first.
  void route(const float* logits, int64_t T, float* weights, int32_t* indices) const;
};

struct DeepseekLayer {
  const Tensor* attn_norm;            // [hidden] f32
  const Tensor* wq = nullptr;         // {hidden, n_heads*qk_head_dim}      without q_lora_rank
  const Tensor* wq_a = nullptr;       // {hidden, q_lora_rank}               with q_lora_rank
  const Tensor* q_a_norm = nullptr;   // [q_lora_rank] f32
  const Tensor* wq_b = nullptr;       // {q_lora_rank, n_heads*qk_head_dim}
  const Tensor* wkv_a;                // {hidden, kv_lora_rank + qk_rope_head_dim}
  const Tensor* kv_a_norm;            // [kv_lora_rank] f32
  const Tensor* wkv_b;                // {kv_lora_rank, n_heads*(qk_nope_head_dim + v_head_dim)}; null: k_b/v_b-only GGUF
  std::vector<Tensor> wk_b;           // [n_heads] {qk_nope_head_dim, kv_lora_rank}: W_UKᵀ copies (absorbed query)
  std::vector<Tensor> wv_b;           // [n_heads] {kv_lora_rank, v_head_dim}: W_UV rows of wkv_b (views)
  const Tensor* wo;                   // {n_heads*v_head_dim, hidden}
  const Tensor* ffn_norm;             // [hidden] f32
  // Dense FFN (layers before first_k_dense_replace).
  const Tensor* w_gate = nullptr, *w_up = nullptr;  // {hidden, intermediate_size}
  const Tensor* w_down = nullptr;                   // {intermediate_size, hidden}
  // MoE.
  const Tensor* gate_inp = nullptr;   // {hidden, n_routed_experts} f32
  const Tensor* exp_probs_b = nullptr;  // [n_routed_experts] f32: e_score_correction_bias
  std::vector<const Tensor*> exp_gate, exp_up;  // [n_routed_experts] {hidden, moe_intermediate_size}
  std::vector<const Tensor*> exp_down;          // [n_routed_experts] {moe_intermediate_size, hidden}
  const Tensor* sh_gate = nullptr, *sh_up = nullptr;  // {hidden, moe_intermediate_size*n_shared_experts}
  const Tensor* sh_down = nullptr;                    // {moe_intermediate_size*n_shared_experts, hidden}
  MoeGate gate;
};

// Activations of one forward pass; grown on demand and reused.
struct DeepseekWorkspace {
  std::vector<float> x, xn, proj;     // [T, hidden]
  std::vector<float> q_a;             // [T, q_lora_rank]
  std::vector<float> q;               // [T, n_heads*qk_head_dim]
  std::vector<float> kv_a;            // [T, kv_lora_rank + qk_rope_head_dim]: c_kv (normed), k_pe (rotated)
  std::vector<float> attn;            // [T, n_heads*v_head_dim]
  std::vector<float> ctx;             // expanded: [n_ctx, kv_lora_rank + qk_rope_head_dim] read from the cache
  std::vector<float> ctx_c;           // expanded: [n_ctx, kv_lora_rank]
  std::vector<float> ctx_kv;          // expanded: [n_ctx, n_heads*(qk_nope_head_dim + v_head_dim)]
  std::vector<float> kh, vt, qh, sc, oh;  // expanded, one head: K [n_ctx, qk], Vᵀ [v, n_ctx], Q [T, qk], P [T, n_ctx], out [T, v]
  std::vector<float> scratch;         // absorbed, per thread: its heads' queries and latent outputs, the attention op's scratch
  std::vector<float> qabs;            // absorbed, context split: [T, n_heads, kv_lora_rank + qk_rope_head_dim] queries
  std::vector<float> part, part_lse;  // absorbed, context split: per slice [threads][T, n_heads, kv_lora_rank] and [threads][T, n_heads]
  std::vector<std::vector<uint8_t>> act;  // [threads]: activations converted for the weight kernel
  std::vector<float> router;          // [T, n_routed_experts]
  std::vector<float> topk_w;          // [T, top_k]
  std::vector<int32_t> topk_i;        // [T, top_k]
  std::vector<float> xe, ye;          // [rows of one expert, hidden]
  std::vector<float> gate, up;        // [rows, ffn]
  std::vector<float> moe_out;         // [T, hidden]
  MatmulScratch mm;
  // Memory held (capacities): what the forward passes so far needed at their largest.
  size_t bytes() const {
    size_t n = 0;
    for (const auto* v : {&x, &xn, &proj, &q_a, &q, &kv_a, &attn, &ctx, &ctx_c, &ctx_kv, &kh, &vt, &qh, &sc, &oh, &scratch, &qabs, &part, &part_lse,
                          &router, &topk_w, &xe, &ye, &gate, &up, &moe_out})
      n += v->capacity() * sizeof(float);
    for (const auto& a : act) n += a.capacity();
    return n + topk_i.capacity() * sizeof(int32_t) + mm.act.capacity();
  }
};

class DeepseekModel {
 public:
  // Binds and shape-checks every tensor (shapes from the config); experts_per_token 0: the config's.
  DeepseekModel(WeightStore& ws, int experts_per_token);
  const ModelConfig& config() const { return c_; }
  const DeepseekLayer& layer(int64_t l) const { return layers_[size_t(l)]; }
  const Tensor& tok_embd() const { return *tok_embd_; }
  const Tensor& output_norm() const { return *output_norm_; }
  const Tensor& output() const { return *output_; }
  // The norms inside MLA (q_a_layernorm, kv_a_layernorm) use the RMSNorm default eps, not the
  // config's rms_norm_eps, in transformers and in DeepSeek's code alike.
  static constexpr float kMlaNormEps = 1e-6f;
  // From this many context tokens on, absorbed attention splits each token's context between the
  // threads (each reads its slice of the cache once) instead of splitting the heads.
  static constexpr int64_t kSplitContext = 512;
  float softmax_scale() const { return softmax_scale_; }
  float rope_attention_factor() const { return rope_mscale_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  int64_t experts_per_token() const { return top_k_; }
  // The expanded MLA form needs attn_kv_b; files with only attn_k_b / attn_v_b run absorbed.
  bool has_expanded_form() const { return expanded_ok_; }

  // logits: [logit_rows.size(), vocab]
  void forward(const ForwardBatch& b, MlaCache& cache, ThreadPool& pool, DeepseekWorkspace& w, float* logits, MlaAttention mode,
               const DumpHook* dump) const;

  // DeepSeek-V3's multi-token prediction (one depth): the checkpoint's MTP module is loaded.
  bool has_mtp() const { return mtp_.eh_proj != nullptr; }
  // Token i of b at position pos[i], with h_prev[i] [H] the main model's final normed hidden
  // state of the token before it (ForwardBatch::hidden): logits [logit_rows.size(), vocab] for
  // the token after b's tokens. The module attends over its own layer of the latent cache
  // (layer num_hidden_layers), which holds the positions it has been run at.
  void mtp_forward(const ForwardBatch& b, const float* h_prev, MlaCache& cache, ThreadPool& pool, DeepseekWorkspace& w, float* logits) const;

 private:
  void attention_block(int64_t l, const ForwardBatch& b, MlaCache& cache, ThreadPool& pool, DeepseekWorkspace& w, MlaAttention mode,
                       const DumpHook* dump) const;
  void attend_expanded(int64_t l, const ForwardBatch& b, int64_t t0, int64_t t1, const MlaCache& cache, ThreadPool& pool,
                       DeepseekWorkspace& w) const;
  void attend_absorbed(int64_t l, const ForwardBatch& b, int64_t t0, int64_t t1, const MlaCache& cache, ThreadPool& pool,
                       DeepseekWorkspace& w) const;
  void dense_ffn_block(int64_t l, const ForwardBatch& b, ThreadPool& pool, DeepseekWorkspace& w, const DumpHook* dump) const;
  void moe_block(int64_t l, const ForwardBatch& b, ThreadPool& pool, DeepseekWorkspace& w, const DumpHook* dump) const;

  ModelConfig c_;
  const Tensor* tok_embd_;     // {hidden, vocab}
  const Tensor* output_norm_;  // [hidden]
  const Tensor* output_;       // {hidden, vocab}
  std::vector<DeepseekLayer> layers_;  // the main layers, then the MTP module's block when it is loaded
  struct Mtp {
    const Tensor *enorm = nullptr, *hnorm = nullptr, *eh_proj = nullptr;  // eh_proj {2·hidden, hidden}
    const Tensor *head_norm = nullptr, *head = nullptr, *embed = nullptr;  // shared_head; the checkpoint's copies of lm_head and the embedding
  } mtp_;
  std::vector<float> inv_freq_;  // [qk_rope_head_dim/2], YaRN applied
  float rope_mscale_ = 1;        // YaRN's factor on cos/sin (mscale / mscale_all_dim)
  float softmax_scale_ = 1;      // qk_head_dim^-1/2, times mscale_all_dim's correction squared under YaRN
  int64_t top_k_ = 0;            // routed experts per token (the config's, or LoadOptions' override)
  bool expanded_ok_ = true;      // false: the file has attn_k_b / attn_v_b but no attn_kv_b
  std::vector<std::vector<uint8_t>> owned_;  // W_UKᵀ copies
};

}  // namespace aha
