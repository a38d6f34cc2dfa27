// The training engine's C++ API: LoRA adapters in PEFT's layout and conventions, and the loss
// and LoRA gradients of a batch of token sequences (one forward and backward, no optimizer step).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "aha/model.h"

namespace aha {

// The dense family's adapter targets, by their HF module names.
enum class LoraTarget : int { QProj, KProj, VProj, OProj, GateProj, UpProj, DownProj };
constexpr int kLoraTargets = 7;
const char* lora_target_name(LoraTarget t);    // "q_proj"
const char* lora_target_parent(LoraTarget t);  // "self_attn" or "mlp"
// "q_proj" → QProj; throws aha::Error naming the supported names otherwise.
LoraTarget lora_target_from_name(const std::string& name);

// PEFT's LoraConfig (adapter_config.json), the fields the engine honours.
struct LoraConfig {
  int64_t rank = 8;                  // r
  double alpha = 16;                 // lora_alpha
  bool use_rslora = false;           // scale alpha/sqrt(r) instead of alpha/r
  double dropout = 0;                // lora_dropout: parsed and saved; training applies none yet
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  std::string base_model;            // base_model_name_or_path

  double scale() const;              // what B A x is multiplied by
  bool targets(LoraTarget t) const;
  void validate() const;             // rank ≥ 1, alpha > 0, dropout in [0, 1), known unique targets
};

LoraConfig lora_config_from_json(const std::string& text, const std::string& file);
std::string lora_config_to_json(const LoraConfig& c);

// One adapted linear layer y = W x + scale · B (A x).
template <class F>
struct LoraPair {
  int64_t in = 0, out = 0;
  std::vector<F> A;  // [rank, in]
  std::vector<F> B;  // [out, rank]
};

// A LoRA tensor set over a model's layers (weights, or their gradients); untargeted modules are empty.
template <class F>
struct LoraSet {
  int64_t n_layers = 0, rank = 0;
  std::vector<LoraPair<F>> mods;  // [n_layers * kLoraTargets]

  LoraSet() = default;
  // Zero tensors of the right shapes for every targeted module of every layer.
  LoraSet(const ModelConfig& mc, const LoraConfig& lc);
  LoraPair<F>* find(int64_t layer, LoraTarget t);  // nullptr when not targeted
  const LoraPair<F>* find(int64_t layer, LoraTarget t) const;
};

// PEFT's tensor name: base_model.model.model.layers.<layer>.self_attn.q_proj.lora_A.weight
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
LoraLossAndGrads lora_loss_and_grads(Model& model, const LoraAdapter& adapter, const std::vector<TrainSequence>& batch, GradPrecision precision);

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

// ---------------------------------------------------------------- optimizer and training step

// AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias-corrected moments, f32 state):
//   p ← p·(1 − lr·wd);  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
//   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)
struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW() = default;
  AdamW(const LoraSet<float>& params, const AdamWConfig& c);  // zero moments shaped like params
  void step(LoraSet<float>& params, const LoraSet<float>& grads, double lr);
  int64_t steps() const { return t_; }
  const AdamWConfig& config() const { return c_; }
  const LoraSet<float>& exp_avg() const { return m_; }
  const LoraSet<float>& exp_avg_sq() const { return v_; }
  // optimizer.safetensors (the moments under "<PEFT name>.exp_avg" / ".exp_avg_sq", f32) and
  // optimizer.json (step and hyperparameters) in `dir`, each through a temporary and a rename.
  void save(const std::string& dir) const;
  // Reads what save wrote; the moments must fit `params` (errors name the file).
  static AdamW load(const std::string& dir, const LoraSet<float>& params);

 private:
  AdamWConfig c_;
  int64_t t_ = 0;
  LoraSet<float> m_, v_;
};

// torch.nn.utils.clip_grad_norm_: the global L2 norm of every gradient; when max_norm > 0 every
// gradient is multiplied by min(1, max_norm / (norm + 1e-6)). Returns the norm before clipping.
double clip_grad_norm(LoraSet<float>& grads, double max_norm);

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
  const AdamW& optimizer() const { return opt_; }
  int model_adapter = 0;

 private:
  LoraTrainer() = default;
  ModelConfig mc_;
  LoraAdapter adapter_;
  AdamW opt_;
  Options o_;
};

}  // namespace aha
