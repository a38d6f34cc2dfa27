// GRPO (Group Relative Policy Optimization) on a LoRA adapter, with the loss exactly as TRL's
// GRPOTrainer computes it (trl 1.13, importance sampling per token, one process, the whole
// generation batch in one optimizer step).
//
// Kept from PPO: the clipped surrogate −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A) per token, with
// ρ = exp(logp − old_logp). Dropped: the value model and GAE (the advantage is the reward's
// z-score within its group), and the reference model (the k3 KL term's reference is the same
// model with the adapter switched off). With μ = 1 (one update per rollout batch) old_logp is the
// current log-prob detached: ρ = 1 and the gradient is the policy gradient A·∇logp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "aha/train.h"

namespace aha {

// How the per-token losses become one number (TRL's loss_type):
//   grpo:    mean over sequences of each sequence's mean over its tokens
//   bnpo:    Σ tokens / tokens in the batch
//   dr_grpo: Σ tokens / (sequences · max_completion_length)
//   dapo:    Σ tokens / tokens in the generation batch (= bnpo in one step)
enum class GrpoLossType { Grpo, Bnpo, DrGrpo, Dapo };
// Advantage scaling (TRL's scale_rewards): A = r − group mean, divided by (std + 1e-4) with the
// unbiased std of the group, of the whole batch, or not at all.
enum class RewardScaling { Group, Batch, None };

GrpoLossType grpo_loss_type_from_name(const std::string& name);  // "grpo", "bnpo", "dr_grpo", "dapo"
RewardScaling reward_scaling_from_name(const std::string& name);  // "group", "batch", "none"

struct GrpoAdvantages {
  std::vector<std::vector<double>> advantages;  // [prompts][G], as rewards
  std::vector<bool> zero_std;                   // [prompts]: the std used (group or batch) is 0 (TRL's torch.isclose)
  double frac_reward_zero_std = 0;              // share of completions whose std is 0
};

// rewards[prompts][G]: the G completions of a prompt form its group (G ≥ 2 for group scaling).
GrpoAdvantages grpo_advantages(const std::vector<std::vector<double>>& rewards, RewardScaling scaling);

struct GrpoLossConfig {
  GrpoLossType type = GrpoLossType::Dapo;
  double beta = 0;                     // weight of the k3 KL to the reference (the adapter off); 0: no reference pass
  double epsilon_low = 0.2, epsilon_high = 0.2;
  double temperature = 1;              // log-probs from logits / temperature (the sampling temperature)
  int64_t max_completion_length = 0;   // dr_grpo's normalizer (required there); when set, no completion may be longer
  bool mask_truncated_completions = false;  // truncated completions get no loss (they still count as sequences)
  void validate() const;
};

struct GrpoSequence {
  std::vector<int32_t> prompt;       // at least one token
  std::vector<int32_t> completion;   // at least one token
  double advantage = 0;
  bool truncated = false;            // stopped by the length limit, not by an end-of-sequence token
  std::vector<double> old_logprobs;  // the sampling policy's log-prob of each completion token; empty: μ = 1
};

struct GrpoLossAndGrads {
  double loss = 0;
  LoraSet<double> grads;           // d loss / d every LoRA tensor (HF row order)
  int64_t sequences = 0, masked_sequences = 0;
  int64_t loss_tokens = 0;         // completion tokens in the loss (TRL's num_items_in_batch)
  int64_t tokens = 0;              // prompt + completion tokens run through the model
  // TRL's metrics, over the loss tokens (NaN where undefined: kl with beta 0, an empty batch)
  double kl = 0, entropy = 0;
  double clip_low_mean = 0, clip_high_mean = 0, clip_region_mean = 0;  // share of tokens clipped below, above, either
  double clip_low_min = 0, clip_high_max = 0;                         // min / max over sequences of their share
  std::vector<std::vector<double>> logprobs;  // the policy's per completion token (empty for masked sequences)
  double reference_seconds = 0, policy_seconds = 0;  // the adapter-off pass; forward and backward with the adapter
  double forward_seconds = 0;                         // of policy_seconds, the train-mode forward (the rest: log-probs and backward)
};

// The loss and its LoRA gradients over `batch` (the whole generation batch: the normalizations
// count all of it). Sequences are packed into micro-batches of at most micro_batch_tokens
// tokens (0: one); that bounds memory and does not change the numbers.
GrpoLossAndGrads grpo_loss_and_grads(Model& model, const LoraAdapter& adapter, const std::vector<GrpoSequence>& batch, const GrpoLossConfig& c,
                                     GradPrecision precision, int64_t micro_batch_tokens = 0);

// ROLLOUTS.json, `aha grad --grpo`'s input:
//   {"prompts": [[ids...] per prompt], "completions": [[[ids...] × G] per prompt],
//    "rewards": [[G numbers] per prompt], "old_logprobs": optional, [[[per token] × G] per prompt],
//    "truncated": optional, [[G booleans] per prompt] (default: the completion's last token is not
//    one of eos_ids, TRL's test), "loss": {"type": "dapo", "beta": 0, "epsilon": 0.2,
//    "epsilon_high": epsilon, "scale_rewards": "group", "temperature": 1,
//    "max_completion_length": 0, "mask_truncated_completions": false} (every key optional)}.
// The sequences come prompt by prompt, G each, with their advantages. Errors name `file` and the field.
struct GrpoRollouts {
  std::vector<GrpoSequence> batch;  // [prompts · G]
  GrpoLossConfig loss;
  RewardScaling scaling = RewardScaling::Group;
  GrpoAdvantages advantages;
};
GrpoRollouts grpo_rollouts_from_json(const std::string& text, const std::string& file, const std::vector<int64_t>& eos_ids);

struct GrpoStepResult {
  GrpoLossAndGrads g;               // grads emptied
  double grad_norm = 0;             // before clipping
  int64_t step = 0;                 // optimizer steps taken, this one included
  double optimizer_seconds = 0;
};

// One GRPO optimizer step of the trainer: grpo_loss_and_grads (f32) on its adapter, then
// clipping and AdamW (LoraTrainer::apply_gradients). A non-finite loss or gradient throws
// aha::Error and changes nothing.
GrpoStepResult grpo_step(LoraTrainer& trainer, Model& model, const std::vector<GrpoSequence>& batch, const GrpoLossConfig& c, double lr,
                         int64_t micro_batch_tokens = 0);

}  // namespace aha
