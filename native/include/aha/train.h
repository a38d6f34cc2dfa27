// The training engine's C++ API: LoRA adapters in PEFT's layout and conventions, and the loss
// and LoRA gradients of a batch of token sequences (one forward and backward, no optimizer step);
// full training of small models (every parameter, f32 master weights); AdamW and the trainers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "aha/model.h"

namespace aha {

// The adapter targets, by their HF module names: the dense family's seven projections, the
// deepseek family's MLA projections (and its o_proj, q_proj, and gate/up/down of the dense first
// layers), its shared experts' projections, and, when asked for by name, its routed experts as
// transformers stores them (experts.gate_up_proj [E, 2·ffn, hidden], experts.down_proj [E, hidden,
// ffn]: PEFT's target_parameters, one adapter pair holding every expert's factors).
enum class LoraTarget : int {
  QProj, KProj, VProj, OProj, GateProj, UpProj, DownProj,  // dense; deepseek: q_proj (no q_lora), o_proj, dense-layer MLP
  QAProj, QBProj, KvAProj, KvBProj,                       // deepseek MLA
  SharedGate, SharedUp, SharedDown,                       // deepseek MoE layers: mlp.shared_experts.*
  ExpertsGateUp, ExpertsDown,                             // deepseek MoE layers: mlp.experts.gate_up_proj, .down_proj
};
constexpr int kLoraTargets = 16;
const char* lora_target_name(LoraTarget t);  // "q_proj"; "gate_proj" for SharedGate too
// The module's path within its decoder layer: "self_attn.q_proj", "mlp.shared_experts.gate_proj".
const char* lora_target_path(LoraTarget t);
// Whether a target_modules entry names the module, by PEFT's rule: the module's full name equals
// the entry or ends with "." + entry ("gate_proj" is every gate_proj, "shared_experts.gate_proj"
// only the shared experts').
bool lora_entry_matches(const std::string& entry, LoraTarget t);
// Whether layer l of the model has this module (k_proj: not in deepseek; q_a_proj: only with q_lora_rank; ...).
bool lora_target_exists(const ModelConfig& c, int64_t layer, LoraTarget t);
// (in, out) of the module in layer l of the model.
std::pair<int64_t, int64_t> lora_module_shape(const ModelConfig& c, int64_t layer, LoraTarget t);

// PEFT's LoraConfig (adapter_config.json), the fields the engine honours.
struct LoraConfig {
  int64_t rank = 8;                  // r
  double alpha = 16;                 // lora_alpha
  bool use_rslora = false;           // scale alpha/sqrt(r) instead of alpha/r
  double dropout = 0;                // lora_dropout: applied by LoraTrainer's steps (not by inference or `aha grad`)
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  std::string base_model;            // base_model_name_or_path

  double scale() const;              // what B A x is multiplied by
  bool targets(LoraTarget t) const;  // some entry matches it (PEFT's suffix rule); "all-linear" matches every target
  void validate() const;             // rank ≥ 1, alpha > 0, dropout in [0, 1), known unique targets
};

LoraConfig lora_config_from_json(const std::string& text, const std::string& file);
std::string lora_config_to_json(const LoraConfig& c);

// One adapted linear layer y = W x + scale · B (A x); for routed experts (experts > 1) PEFT's
// ParamWrapper layout: A [rank·experts, in] holds expert e's A in rows [e·rank, (e+1)·rank), and
// B [out, rank·experts] expert e's B in columns k·experts + e (see lora_expert_b).
template <class F>
struct LoraPair {
  int64_t in = 0, out = 0;
  std::vector<F> A;  // [rank · experts, in]
  std::vector<F> B;  // [out, rank · experts]
  int64_t experts = 1;
};

// Expert e's B [out, rank] of a routed-experts pair, gathered from its interleaved columns; and
// the scatter back (+=) of a gradient in that shape.
template <class F>
void lora_expert_b(const LoraPair<F>& p, int64_t rank, int64_t e, F* out);
template <class F>
void lora_expert_b_add(LoraPair<F>& p, int64_t rank, int64_t e, const F* g);

// A LoRA tensor set over a model's layers (weights, or their gradients); untargeted modules are empty.
template <class F>
struct LoraSet {
  using value_type = F;
  int64_t n_layers = 0, rank = 0;
  std::vector<LoraPair<F>> mods;  // [n_layers * kLoraTargets]

  LoraSet() = default;
  // Zero tensors of the right shapes for every targeted module of every layer; an entry of
  // target_modules that names no module of this model is an error.
  LoraSet(const ModelConfig& mc, const LoraConfig& lc);
  LoraPair<F>* find(int64_t layer, LoraTarget t);  // nullptr when not targeted
  const LoraPair<F>* find(int64_t layer, LoraTarget t) const;
};

// PEFT's tensor name: base_model.model.model.layers.<layer>.<lora_target_path>.lora_A.weight; the
// routed experts' pairs are PEFT's nested ParamWrappers: mlp.experts.base_layer (gate_up_proj) and
// mlp.experts (down_proj).
std::string lora_peft_name(int64_t layer, LoraTarget t, bool b);

class LoraAdapter {
 public:
  LoraAdapter() = default;
  // PEFT's initialization: A kaiming-uniform (a = √5: U(±1/√in)) from `seed`, B zeros.
  static LoraAdapter init(const ModelConfig& mc, const LoraConfig& lc, uint64_t seed);
  // A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) for this model;
  // errors name the file and what does not fit.
  static LoraAdapter load(const std::string& dir, const ModelConfig& mc);
  // Writes the folder in PEFT's layout (f32 tensors), each file through a temporary and a rename.
  void save(const std::string& dir) const;

  const LoraConfig& config() const { return config_; }
  double scale() const { return config_.scale(); }
  LoraSet<float>& weights() { return weights_; }
  const LoraSet<float>& weights() const { return weights_; }

 private:
  LoraConfig config_;
  LoraSet<float> weights_;
};

// One training sequence in Hugging Face's convention: labels[t] is input_ids[t] where the loss
// applies and −100 where it does not; position t is scored on predicting labels[t + 1].
struct TrainSequence {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;
};

enum class GradPrecision { F32, F64 };

struct LoraLossAndGrads {
  double loss = 0;              // mean cross-entropy over the target tokens of all sequences
  int64_t target_tokens = 0;
  LoraSet<double> grads;        // d loss / d every LoRA tensor (widened to double from F32 runs)
};

// One train-mode forward and backward of the model with the adapter (no optimizer step).
// checkpoint_layers: activation checkpointing (each layer recomputed in the backward from its
// saved input; the same numbers, a layer's activations in memory instead of all of them).
// dropout_seed: non-zero turns the adapter's lora_dropout on (training), its masks drawn from it.
LoraLossAndGrads lora_loss_and_grads(Model& model, const LoraAdapter& adapter, const std::vector<TrainSequence>& batch, GradPrecision precision,
                                     bool checkpoint_layers = false, uint64_t dropout_seed = 0);

// Log-prob scoring (GRPO's policy and reference): the prompt is context, the completion scored.
struct ScoreSequence {
  std::vector<int32_t> prompt;       // at least one token
  std::vector<int32_t> completion;   // at least one token
};

// log p(completion[j] | prompt, completion[<j]) of every completion token, all sequences in one
// train-mode forward (the numbers a train step computes) with the model's adapter `adapter`
// (Model::load_adapter / add_adapter; 0: the base model, "adapter off"). The lm head and its
// log-softmax run in chunks: [chunk, vocab] is the largest buffer.
std::vector<std::vector<double>> completion_logprobs(Model& model, int adapter, const std::vector<ScoreSequence>& seqs);

// Writes every gradient under its PEFT name, as f32 or f64, with the loss and the number of
// target tokens in the safetensors metadata ("loss", "target_tokens").
void save_lora_grads(const std::string& path, const LoraLossAndGrads& g, GradPrecision dtype);

// ---------------------------------------------------------------- full training of small models

// One parameter of a whole model: its f32 master weight, or its gradient.
template <class F>
struct ModelTensor {
  std::string name;            // HF state-dict name: "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // row-major as HF states it: [out, in] for a linear layer
  std::vector<F> values;
  bool decay = true;           // AdamW decays it; not the norms and biases (as HF's Trainer)
};

// Every parameter of a dense model (Llama, Qwen2, Qwen3) in the HF state dict's order, q/k rows
// in HF's order; a tied model has no lm_head.weight (the embedding table is both). F = float: the
// f32 master weights full training updates; F = double: their gradients.
template <class F>
struct DenseParams {
  using value_type = F;
  ModelConfig config;
  double initializer_range = 0.02;  // the HF config's; written back to config.json
  // A GGUF's rope_freqs.weight (llama3 rope scaling as llama.cpp stores it, [head_dim/2]): the
  // model trains, but cannot be saved as an HF folder (config.json has no place for it).
  std::vector<float> rope_freqs;
  std::vector<ModelTensor<F>> tensors;

  ModelTensor<F>* find(const std::string& name);  // nullptr when absent
  const ModelTensor<F>* find(const std::string& name) const;
  int64_t parameters() const;                      // elements over all tensors
};

// A fresh model (transformers' _init_weights): the embedding and every matrix N(0, initializer_range²),
// biases 0, norms 1; one seeded stream per tensor (splitmix64, Box–Muller), the same numbers on
// every machine. The config must be of the dense family.
DenseParams<float> dense_params_init(const ModelConfig& c, double initializer_range, uint64_t seed);
// The same from an HF config.json file (initializer_range from it, default 0.02).
DenseParams<float> dense_params_init(const std::string& config_file, uint64_t seed);
// Any dense model the engine loads (GGUF file or HF folder, any dtype), dequantized to f32, with a
// GGUF llama's permuted q/k rows put back in HF's order.
DenseParams<float> dense_params_load(const std::string& path);
// An HF folder the engine and transformers load: config.json and model.safetensors (f32, HF
// names) into `dir` (which must exist), each through a temporary and a rename.
void save_dense_model(const std::string& dir, const DenseParams<float>& p);
// The HF config.json of a dense config (architectures, sizes, rope, tying, special ids).
std::string dense_hf_config_json(const ModelConfig& c, double initializer_range);

struct FullLossAndGrads {
  double loss = 0;              // mean cross-entropy over the target tokens of all sequences
  int64_t target_tokens = 0;
  DenseParams<double> grads;    // d loss / d every parameter (widened to double from F32 runs)
};

// One train-mode forward and backward of the whole model, every parameter trainable.
FullLossAndGrads full_loss_and_grads(const DenseParams<float>& params, const std::vector<TrainSequence>& batch, GradPrecision precision,
                                     ThreadPool& pool);

// ---------------------------------------------------------------- parameter sets as tensor lists

// One tensor of a parameter set (LoRA adapter, whole model) as the optimizer, clipping and
// checkpoints walk it. V: std::vector<F>, const or not.
template <class V>
struct TensorRef {
  std::string name;            // its name in checkpoint files: PEFT's for LoRA, HF's for a model
  std::vector<int64_t> shape;  // row-major
  V* values;
  bool decay;                  // AdamW's weight decay applies
};

// Every tensor of a LoraSet (A and B of each targeted module, in layer and target order, all
// decayed) or of DenseParams (in its order), in a fixed order: sets of one shape line up.
template <class S>
auto tensor_refs(S& s) {
  using F = typename std::remove_const_t<S>::value_type;
  using V = std::conditional_t<std::is_const_v<S>, const std::vector<F>, std::vector<F>>;
  std::vector<TensorRef<V>> out;
  if constexpr (std::is_same_v<std::remove_const_t<S>, LoraSet<F>>) {
    for (int64_t l = 0; l < s.n_layers; l++)
      for (int i = 0; i < kLoraTargets; i++)
        if (auto* p = s.find(l, LoraTarget(i))) {
          out.push_back({lora_peft_name(l, LoraTarget(i), false), {s.rank * p->experts, p->in}, &p->A, true});
          out.push_back({lora_peft_name(l, LoraTarget(i), true), {p->out, s.rank * p->experts}, &p->B, true});
        }
  } else {
    for (auto& t : s.tensors) out.push_back({t.name, t.shape, &t.values, t.decay});
  }
  return out;
}

// ---------------------------------------------------------------- optimizer and training step

// AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias-corrected moments, f32 state):
//   p ← p·(1 − lr·wd);  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
//   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)
struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// Over a parameter set Set (LoraSet<float> or DenseParams<float>); tensors whose `decay` is off
// get no weight decay.
template <class Set>
class AdamW {
 public:
  AdamW() = default;
  AdamW(const Set& params, const AdamWConfig& c);  // zero moments shaped like params
  void step(Set& params, const Set& grads, double lr);
  int64_t steps() const { return t_; }
  const AdamWConfig& config() const { return c_; }
  const Set& exp_avg() const { return m_; }
  const Set& exp_avg_sq() const { return v_; }
  // optimizer.safetensors (the moments under "<tensor name>.exp_avg" / ".exp_avg_sq", f32) and
  // optimizer.json (step and hyperparameters) in `dir`, each through a temporary and a rename.
  void save(const std::string& dir) const;
  // Reads what save wrote; the moments must fit `params` (errors name the file).
  static AdamW load(const std::string& dir, const Set& params);

 private:
  AdamWConfig c_;
  int64_t t_ = 0;
  Set m_, v_;
};

// torch.nn.utils.clip_grad_norm_: the global L2 norm of every gradient; when max_norm > 0 every
// gradient is multiplied by min(1, max_norm / (norm + 1e-6)). Returns the norm before clipping.
template <class Set>
double clip_grad_norm(Set& grads, double max_norm);

// Learning-rate schedules as transformers' get_{constant,linear,cosine}_schedule_with_warmup:
// the multiplier of optimizer step `step` (0-based) is step/warmup during the warmup, then 1,
// (total − step)/(total − warmup), or ½(1 + cos(π·progress)).
enum class LrSchedule { Constant, Linear, Cosine };
LrSchedule lr_schedule_from_name(const std::string& name);  // "constant", "linear", "cosine"
double lr_at(LrSchedule kind, double lr, int64_t step, int64_t warmup_steps, int64_t total_steps);

struct TrainStepResult {
  double loss = 0;             // mean cross-entropy over the target tokens of every micro-batch
  int64_t target_tokens = 0, tokens = 0;
  double grad_norm = 0;        // before clipping
  int64_t step = 0;            // optimizer steps taken, this one included
};

// LoRA training on a Model's frozen weights: the adapter (f32, HF row order), its AdamW state,
// and one optimizer step per call. The Model is passed to each call (it may serve requests
// between steps); with `model_adapter` set, the Model's adapter of that id follows every step,
// so generation samples from the adapter being trained.
class LoraTrainer {
 public:
  struct Options {
    AdamWConfig adamw;
    double max_grad_norm = 1.0;  // 0: no clipping
    bool checkpoint_layers = false;  // activation checkpointing (lora_loss_and_grads)
  };
  LoraTrainer(const ModelConfig& mc, LoraAdapter adapter, const Options& o);

  // Forward and backward of each micro-batch (gradient accumulation: the gradients are of the
  // mean over all their target tokens, as if they were one batch), clipping, NaN/Inf check,
  // one AdamW step at `lr`. A non-finite loss or gradient throws aha::Error and changes nothing.
  TrainStepResult step(Model& model, const std::vector<std::vector<TrainSequence>>& micro_batches, double lr);

  // Clipping, the NaN/Inf check and one AdamW step at `lr` with given gradients (HF row order)
  // of a loss `loss`: how step() and grpo_step() (aha/grpo.h) end. Throws and changes nothing
  // when the loss, the gradient or the update is not finite.
  struct AppliedStep {
    double grad_norm = 0;  // before clipping
    int64_t step = 0;      // optimizer steps taken, this one included
  };
  AppliedStep apply_gradients(Model& model, const LoraSet<double>& grads, double loss, double lr);

  // adapter (PEFT layout) + optimizer state into `dir` (which must exist).
  void save(const std::string& dir) const;
  // The adapter and optimizer state save() wrote.
  static LoraTrainer load(const std::string& dir, const ModelConfig& mc, const Options& o);

  const LoraAdapter& adapter() const { return adapter_; }
  const AdamW<LoraSet<float>>& optimizer() const { return opt_; }
  int model_adapter = 0;

 private:
  LoraTrainer() = default;
  ModelConfig mc_;
  LoraAdapter adapter_;
  AdamW<LoraSet<float>> opt_;
  Options o_;
};

// Full training of a small dense model: every parameter trainable (embeddings, every projection
// and bias, norms, lm head), f32 master weights, AdamW over all of them (no weight decay on norms
// and biases), one optimizer step per call. The trainer owns the weights and its thread pool.
class FullTrainer {
 public:
  struct Options {
    AdamWConfig adamw;
    double max_grad_norm = 1.0;  // 0: no clipping
    int threads = 0;             // 0: physical cores
  };
  // Throws when the model could not be saved as an HF folder (a GGUF's rope_freqs).
  FullTrainer(DenseParams<float> params, const Options& o);

  // As LoraTrainer::step: micro-batches accumulated as one batch, clipping, a NaN/Inf check, one
  // AdamW step at `lr`; a non-finite loss, gradient or update throws and changes nothing.
  TrainStepResult step(const std::vector<std::vector<TrainSequence>>& micro_batches, double lr);

  // The model (save_dense_model) and the optimizer state into `dir` (which must exist).
  void save(const std::string& dir) const;
  // What save() wrote.
  static FullTrainer load(const std::string& dir, const Options& o);

  const DenseParams<float>& params() const { return params_; }
  const AdamW<DenseParams<float>>& optimizer() const { return opt_; }
  ThreadPool& thread_pool() { return *pool_; }

 private:
  DenseParams<float> params_;
  AdamW<DenseParams<float>> opt_;
  Options o_;
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace aha
