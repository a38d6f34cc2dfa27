// One optimizer step, LoRA or full: forward and backward of each micro-batch (gradients
// accumulated as one batch's mean over all its target tokens), clipping, a NaN/Inf check, AdamW.
#include <cmath>

#include "aha/error.h"
#include "aha/train.h"
#include "core/thread_pool.h"

namespace aha {

namespace {

int64_t count_targets(const std::vector<TrainSequence>& batch) {
  int64_t n = 0;
  for (auto& s : batch)
    for (size_t t = 1; t < s.labels.size(); t++) n += s.labels[t] != -100;
  return n;
}

// The step's loss and gradients (in `acc`, double) over its micro-batches: each micro-batch's
// mean weighted by its share of the target tokens. loss_and_grads(mb) → LoraLossAndGrads or
// FullLossAndGrads.
template <class Grads, class Fn>
TrainStepResult accumulate(const std::vector<std::vector<TrainSequence>>& micro_batches, double lr, const Fn& loss_and_grads, Grads& acc) {
  if (micro_batches.empty()) throw Error("a training step needs at least one micro-batch");
  if (!std::isfinite(lr) || lr < 0) throw Error("the learning rate must be a finite number ≥ 0");
  TrainStepResult r;
  for (auto& mb : micro_batches) {
    r.target_tokens += count_targets(mb);
    for (auto& s : mb) r.tokens += int64_t(s.input_ids.size());
  }
  if (r.target_tokens == 0) throw Error("the step's batches have no target tokens");
  for (size_t m = 0; m < micro_batches.size(); m++) {
    auto g = loss_and_grads(micro_batches[m]);
    const double w = double(g.target_tokens) / double(r.target_tokens);
    r.loss += w * g.loss;
    if (m == 0) {
      acc = std::move(g.grads);
      for (auto& t : tensor_refs(acc))
        for (double& x : *t.values) x *= w;
      continue;
    }
    auto A = tensor_refs(acc);
    auto G = tensor_refs(g.grads);
    for (size_t k = 0; k < A.size(); k++)
      for (size_t i = 0; i < A[k].values->size(); i++) (*A[k].values)[i] += w * (*G[k].values)[i];
  }
  return r;
}

// How every step ends: the gradients (double, the parameters' shape) to f32, the NaN/Inf checks,
// clipping, and AdamW on copies that replace `params` and `opt` only when all is finite.
// `what` names the parameters in errors ("adapter", "model"). Returns the norm before clipping.
template <class Set, class DoubleSet>
double apply_step(Set& params, AdamW<Set>& opt, const DoubleSet& acc, double loss, double lr, double max_grad_norm, const char* what) {
  if (!std::isfinite(lr) || lr < 0) throw Error("the learning rate must be a finite number ≥ 0");
  Set grads = params;
  auto G = tensor_refs(grads);
  auto A = tensor_refs(acc);
  if (G.size() != A.size()) throw Error("the gradients are not shaped like the parameters");
  for (size_t k = 0; k < G.size(); k++) G[k].values->assign(A[k].values->begin(), A[k].values->end());
  const int64_t next = opt.steps() + 1;
  const std::string kept = std::string("; the ") + what + " was not updated";
  if (!std::isfinite(loss)) throw Error("step " + std::to_string(next) + ": the loss is " + (std::isnan(loss) ? "NaN" : "infinite") + kept);
  const double norm = clip_grad_norm(grads, max_grad_norm);
  if (!std::isfinite(norm))
    throw Error("step " + std::to_string(next) + ": the gradient is " + (std::isnan(norm) ? "NaN" : "infinite") + " (loss " + std::to_string(loss) + ")" + kept);
  Set updated = params;
  AdamW<Set> o = opt;
  o.step(updated, grads, lr);
  for (auto& t : tensor_refs(updated))
    for (float x : *t.values)
      if (!std::isfinite(x))
        throw Error("step " + std::to_string(next) + ": the update made a" + (std::string(what) == "adapter" ? " LoRA" : "") +
                    " weight non-finite (learning rate too high?)" + kept);
  params = std::move(updated);
  opt = std::move(o);
  return norm;
}

}  // namespace

LoraTrainer::LoraTrainer(const ModelConfig& mc, LoraAdapter adapter, const Options& o)
    : mc_(mc), adapter_(std::move(adapter)), opt_(adapter_.weights(), o.adamw), o_(o) {
  if (!(o.max_grad_norm >= 0)) throw Error("max_grad_norm must be ≥ 0");
  if (adapter_.weights().n_layers != mc.num_hidden_layers)
    throw Error("the adapter has " + std::to_string(adapter_.weights().n_layers) + " layers, the model " + std::to_string(mc.num_hidden_layers));
}

TrainStepResult LoraTrainer::step(Model& model, const std::vector<std::vector<TrainSequence>>& micro_batches, double lr) {
  LoraSet<double> acc;
  TrainStepResult r = accumulate(
      micro_batches, lr,
      [&](const std::vector<TrainSequence>& mb) {
        // Dropout masks differ per step and micro-batch and come back the same after a resume.
        const uint64_t seed = uint64_t(opt_.steps() + 1) * 1000003ULL + uint64_t(&mb - micro_batches.data()) + 1;
        return lora_loss_and_grads(model, adapter_, mb, GradPrecision::F32, o_.checkpoint_layers, seed);
      },
      acc);
  const AppliedStep a = apply_gradients(model, acc, r.loss, lr);
  r.grad_norm = a.grad_norm;
  r.step = a.step;
  return r;
}

LoraTrainer::AppliedStep LoraTrainer::apply_gradients(Model& model, const LoraSet<double>& acc, double loss, double lr) {
  AppliedStep r;
  r.grad_norm = apply_step(adapter_.weights(), opt_, acc, loss, lr, o_.max_grad_norm, "adapter");
  if (model_adapter != 0) model.update_adapter(model_adapter, adapter_);
  r.step = opt_.steps();
  return r;
}

void LoraTrainer::save(const std::string& dir) const {
  adapter_.save(dir);
  opt_.save(dir);
}

LoraTrainer LoraTrainer::load(const std::string& dir, const ModelConfig& mc, const Options& o) {
  LoraTrainer t;
  t.mc_ = mc;
  t.o_ = o;
  t.adapter_ = LoraAdapter::load(dir, mc);
  t.opt_ = AdamW<LoraSet<float>>::load(dir, t.adapter_.weights());
  return t;
}

FullTrainer::FullTrainer(DenseParams<float> params, const Options& o)
    : params_(std::move(params)), opt_(params_, o.adamw), o_(o), pool_(std::make_shared<ThreadPool>(o.threads > 0 ? o.threads : ThreadPool::physical_cores())) {
  if (!(o.max_grad_norm >= 0)) throw Error("max_grad_norm must be ≥ 0");
  if (!params_.rope_freqs.empty())
    throw Error("this model's llama3 rope scaling comes from a GGUF's rope_freqs.weight, which the trained model's config.json cannot state; "
                "start from the HF folder instead");
}

TrainStepResult FullTrainer::step(const std::vector<std::vector<TrainSequence>>& micro_batches, double lr) {
  DenseParams<double> acc;
  TrainStepResult r = accumulate(
      micro_batches, lr, [&](const std::vector<TrainSequence>& mb) { return full_loss_and_grads(params_, mb, GradPrecision::F32, *pool_); }, acc);
  r.grad_norm = apply_step(params_, opt_, acc, r.loss, lr, o_.max_grad_norm, "model");
  r.step = opt_.steps();
  return r;
}

void FullTrainer::save(const std::string& dir) const {
  save_dense_model(dir, params_);
  opt_.save(dir);
}

FullTrainer FullTrainer::load(const std::string& dir, const Options& o) {
  FullTrainer t(dense_params_load(dir), o);
  t.opt_ = AdamW<DenseParams<float>>::load(dir, t.params_);
  return t;
}

}  // namespace aha
