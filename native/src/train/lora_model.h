// The LoRA forward and backward of whichever family a Model holds: the dense family
// (train/dense_lora.cpp) or the deepseek family (train/deepseek_lora.cpp, MLA in its expanded
// form, MoE with the gradient through the selected experts' routing weights). The trainers, GRPO
// and the log-prob scorer call these and never ask which family they run.
#pragma once
#include "aha/model.h"
#include "aha/train.h"
#include "models/deepseek.h"
#include "models/dense.h"
#include "train/dense_lora.h"

namespace aha::train {

struct LoraModel {
  const DenseModel* dense = nullptr;
  const DeepseekModel* deepseek = nullptr;

  static LoraModel of(Model& m);  // throws for a family without a train-mode forward
  const ModelConfig& config() const { return dense ? dense->config() : deepseek->config(); }
};

// As dense_lora_loss / dense_lora_token_losses / dense_lora_logprobs (train/dense_lora.h).
template <class F>
double lora_loss(const LoraModel& m, const LoraSet<F>* adapter, double scale, const PackedBatch& b, LoraSet<F>* grads, ThreadPool& pool);
template <class F>
void lora_token_losses(const LoraModel& m, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double* losses, ThreadPool& pool);
// forward_seconds (nullable): the time of the train-mode forward alone (the rest of the call is
// the lm head's log-probs and the backward).
template <class F>
void lora_logprobs(const LoraModel& m, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double temperature, double* logp, double* entropy,
                   const LogprobGrad* dloss, LoraSet<F>* grads, ThreadPool& pool, double* forward_seconds = nullptr);

// The deepseek family's own entry points (the same contracts).
template <class F>
double deepseek_lora_loss(const DeepseekModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, LoraSet<F>* grads, ThreadPool& pool);
template <class F>
void deepseek_lora_token_losses(const DeepseekModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double* losses,
                                ThreadPool& pool);
template <class F>
void deepseek_lora_logprobs(const DeepseekModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double temperature,
                            double* logp, double* entropy, const LogprobGrad* dloss, LoraSet<F>* grads, ThreadPool& pool,
                            double* forward_seconds = nullptr);

}  // namespace aha::train
