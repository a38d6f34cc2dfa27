// The engine's C++ API: load a model (GGUF file or HF folder), run batched forward
// passes over sequences held in a paged KV cache, sample, and generate.
// Works without Node: the C++ tests link it directly; the addon is a thin layer over it.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aha/dtype.h"

namespace aha {

enum class Arch { Llama, Qwen2, Qwen3, DeepseekV2, DeepseekV3 };
const char* arch_name(Arch a);

enum class RopeScalingType { None, Linear, Llama3, Yarn };

// DeepSeek-V2/V3 (the HF config's names): MLA sizes, MoE routing, YaRN. Read from config.json and
// checked by the deepseek family (models/deepseek.h); every behaviour of that family comes from here.
struct DeepseekConfig {
  int64_t q_lora_rank = 0;              // 0: no query compression (V2-Lite's q_proj)
  int64_t kv_lora_rank = 0;             // the latent each token caches
  int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  int64_t n_routed_experts = 0, n_shared_experts = 0, num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t first_k_dense_replace = 0, moe_layer_freq = 1;
  int64_t n_group = 1, topk_group = 1;
  enum class Scoring { Softmax, Sigmoid } scoring = Scoring::Softmax;
  // How groups are ranked before the top-k: not at all (V2 "greedy"), by their best expert (V2
  // "group_limited_greedy"), or by the sum of their two best (V3 "noaux_tc").
  enum class GroupScore { None, Max, TopTwoSum } group_score = GroupScore::None;
  bool score_correction_bias = false;   // V3: e_score_correction_bias is added for selection only
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  bool rope_interleave = true;          // rotate pairs (2i, 2i+1) as DeepSeek does; false: halves
  // YaRN (rope_scaling type "yarn"; factor and original context in ModelConfig::rope_*).
  double yarn_beta_fast = 32, yarn_beta_slow = 1, yarn_mscale = 1, yarn_mscale_all_dim = 0;
  int64_t num_nextn_predict_layers = 0; // MTP modules in the checkpoint

  bool is_moe_layer(int64_t l) const { return n_routed_experts > 0 && l >= first_k_dense_replace && l % moe_layer_freq == 0; }
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // n_embd
  int64_t intermediate_size = 0;   // ffn
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;  // the model's trained context
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScalingType rope_scaling = RopeScalingType::None;
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  bool rope_neox = true;           // rotate halves (HF); false: interleaved pairs (GGUF llama after Q/K permute)
  bool attention_bias = false;     // qwen2
  bool qk_norm = false;            // qwen3
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  DeepseekConfig deepseek;         // DeepseekV2/V3 only
};

// A weight as it sits in memory (usually mapped from the file, used in place).
struct Tensor {
  std::string name;          // canonical (GGUF-style) name, e.g. "blk.0.attn_q.weight"
  DType dtype = DType::F32;
  std::vector<int64_t> ne;   // ggml order: ne[0] contiguous; a matrix is ne = {in_features, out_features}
  const void* data = nullptr;
  size_t row_bytes = 0;      // bytes per ne[0] row
  const void* packed = nullptr;  // the same rows packed for the CPU kernels (kernels.h), or null
  int64_t rows() const;      // product of ne[1..]
  int64_t numel() const;
};

struct LoadProgress {
  double fraction;           // 0..1
  const char* stage;
};

// How MLA (DeepSeek) attends: Absorbed keeps the attention in the latent space (W_UK folded into
// the query, W_UV after), Expanded rebuilds every cached token's K/V with kv_b_proj; Auto uses the
// expanded form for prefill (several tokens of a sequence at once) and the absorbed one for decode.
enum class MlaAttention { Auto, Absorbed, Expanded };

struct LoadOptions {
  int threads = 0;                   // 0: physical cores
  // F32, F16 or BF16; unset: f16 for the dense KV cache, bf16 for DeepSeek's MLA latent cache (as
  // DeepSeek's own inference code keeps it; on AMX-BF16 its decode attention runs in bf16 tiles).
  std::optional<DType> kv_dtype;
  int64_t context = 0;               // max tokens per sequence; 0: min(model's, 4096)
  int64_t kv_cache_tokens = 0;       // total cache capacity (all sequences); 0: 2 × context
  MlaAttention mla_attention = MlaAttention::Auto;
  int experts_per_token = 0;         // MoE: routed experts per token; 0: the model's num_experts_per_tok
  // FP8 checkpoints (DeepSeek-V3's e4m3 weights with 128 × 128 weight_scale_inv blocks): FP8_B128
  // uses them as they are (the kernels dequantize while they read); BF16, Q8_0 or Q4_K converts
  // each such weight once at load.
  DType fp8_as = DType::FP8_B128;
  std::function<void(const LoadProgress&)> progress;
};

struct ModelInfo {
  std::string path, format;          // "gguf" or "safetensors"
  std::string architecture;          // "qwen2", "llama", "qwen3"
  std::string name;                  // general.name or folder name
  int64_t parameters = 0;
  std::map<std::string, int64_t> dtype_mix;  // dtype name -> parameter count
  int64_t weight_bytes = 0;
  int64_t decode_bytes = 0;          // weight bytes one decode step reads (the embedding table only when tied)
  int64_t context_length = 0;        // the model's trained context
  int64_t context = 0;               // the context this load allows per sequence
  int64_t kv_bytes = 0;              // KV cache memory reserved
  DType kv_dtype = DType::F16;       // its elements (LoadOptions::kv_dtype, or the family's default)
  int64_t vocab_size = 0;
  ModelConfig config;
};

struct SamplerParams {
  double temperature = 1.0;          // <= 0: greedy
  int top_k = 0;                     // 0: off
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;   // HF-style: divides positive logits, multiplies negative
  double presence_penalty = 0.0;     // OpenAI-style
  double frequency_penalty = 0.0;
  int penalty_last_n = 256;          // how far back penalties look (-1: whole sequence)
  uint64_t seed = 0;
  std::map<int32_t, float> logit_bias;
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  int adapter = 0;                   // a loaded LoRA adapter's id (Model::load_adapter); 0: the base model
  int max_tokens = 256;
  SamplerParams sampler;
  std::vector<int32_t> stop_tokens;  // besides the model's eos tokens
  bool ignore_eos = false;
  bool mtp = false;                  // DeepSeek-V3's MTP module drafts (Model::generate_mtp; one greedy request)
};

enum class FinishReason { Length, Stop, Cancelled, Context };
const char* finish_reason_name(FinishReason r);

struct GenerateResult {
  std::vector<int32_t> tokens;       // generated tokens (a stop token included)
  FinishReason finish = FinishReason::Length;
  int64_t prompt_tokens = 0, cached_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t drafted = 0, accepted = 0;  // MTP drafting (generate_mtp): drafts made, drafts the main model kept
};

// A LoRA adapter held by a Model (applied in the forward, never merged into the weights).
struct AdapterInfo {
  int id = 0;
  std::string name, path;            // path: the folder it was loaded from ("" when added from memory)
  int64_t rank = 0;
  double alpha = 0, scale = 0;
  bool use_rslora = false;
  std::vector<std::string> target_modules;
  uint64_t version = 0;              // bumped by every update_adapter
};

class Engine;
class DenseModel;
class DeepseekModel;
class LoraAdapter;
class ThreadPool;

// A dump hook sees every named intermediate of a forward pass (for diffing against a reference).
using DumpHook = std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& opts = {});
  ~Model();

  const ModelConfig& config() const;
  ModelInfo info() const;
  int threads() const;
  void set_threads(int n);

  // LoRA adapters, several at once, applied in the forward without merging. A sequence is
  // computed with one adapter (or none: id 0) for its whole life; K/V of one adapter is never
  // reused for another (prefix cache, identical-prompt forks). Errors name the folder/file.
  int load_adapter(const std::string& dir, const std::string& name = "");  // → id ≥ 1
  int add_adapter(const LoraAdapter& adapter, const std::string& name);
  // New weights for an adapter (same config): cached prefixes computed with the old ones are
  // dropped; live sequences that use it keep their K/V (free them to start afresh).
  void update_adapter(int id, const LoraAdapter& adapter);
  void remove_adapter(int id);                    // throws while a live sequence uses it
  const LoraAdapter& adapter(int id) const;
  std::vector<AdapterInfo> adapters() const;

  // Sequences in the paged KV cache.
  int new_sequence(int adapter = 0);
  int sequence_adapter(int seq) const;
  int fork_sequence(int seq);                     // shares every block with `seq` (copy-on-write) and its adapter
  void free_sequence(int seq);
  void truncate_sequence(int seq, int64_t n);     // keep the first n tokens
  int64_t sequence_length(int seq) const;
  const std::vector<int32_t>& sequence_tokens(int seq) const;
  int64_t free_cache_tokens() const;
  int64_t cache_bytes_per_token() const;          // K/V (or MLA latent) cache bytes one token takes
  // Benchmarks: appends n positions of random cache entries (unit normals, stored in the cache's
  // dtype) to `seq` without running the model, so that decoding at a context depth can be timed
  // without a long prefill (attention's cost depends on the depth, not on the values). The
  // sequence's tokens read 0 there.
  void fill_context(int seq, int64_t n, uint64_t seed = 1);
  size_t workspace_bytes() const;                 // activation buffers held (their high-water mark)
  void release_workspace();                       // frees them (the next forward grows them again)

  // One batched forward pass (each sequence with its own adapter): appends items[i].tokens to sequence items[i].seq and returns
  // logits [rows, vocab] in `logits`: one row per item (its last token), or one per token
  // where all_logits is set.
  struct BatchItem {
    int seq;
    std::vector<int32_t> tokens;
    bool all_logits = false;
  };
  void forward(const std::vector<BatchItem>& items, std::vector<float>& logits);

  // Generation for one or several requests decoded together (continuous batching).
  // on_token(request index, token) returns false to stop that request.
  // Greedy decoding of one request with DeepSeek-V3's MTP module drafting a token ahead, checked
  // by the main model (the tokens of plain greedy decoding; GenerateResult counts the drafts made
  // and kept). Errors for a model without the module, a sampling temperature or an adapter.
  // draft_hook (tests): given the index in the output the draft would take and the module's draft,
  // returns the draft to check instead.
  GenerateResult generate_mtp(const GenerateRequest& req, const std::function<bool(int32_t)>& on_token, const std::atomic<bool>* cancel = nullptr,
                              const std::function<int32_t(size_t, int32_t)>* draft_hook = nullptr);
  std::vector<GenerateResult> generate(const std::vector<GenerateRequest>& reqs,
                                       const std::function<bool(size_t, int32_t)>& on_token,
                                       const std::atomic<bool>* cancel = nullptr);

  void set_dump_hook(DumpHook hook);
  void set_mla_attention(MlaAttention mode);      // DeepSeek models; a no-op for the others

  // The engine's parts, for the training engine (aha/train.h).
  const DenseModel& dense_model() const;       // throws for a model of another family
  const DenseModel* dense_model_if() const;    // null for a model of another family
  const DeepseekModel* deepseek_model_if() const;  // null for a model of another family
  ThreadPool& thread_pool();

 private:
  Model();
  std::unique_ptr<Engine> e_;
};

// Read bandwidth of this machine (GB/s): several threads streaming a buffer larger than the caches.
double measure_read_bandwidth(int threads, size_t bytes = size_t(1) << 30, int repeats = 5);

}  // namespace aha
