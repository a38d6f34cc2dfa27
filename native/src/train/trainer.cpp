// One LoRA optimizer step: forward and backward of each micro-batch (gradients accumulated as
// one batch's mean over all its target tokens), clipping, a NaN/Inf check, AdamW.
#include <cmath>

#include "aha/error.h"
#include "aha/train.h"

namespace aha {

namespace {

int64_t count_targets(const std::vector<TrainSequence>& batch) {
  int64_t n = 0;
  for (auto& s : batch)
    for (size_t t = 1; t < s.labels.size(); t++) n += s.labels[t] != -100;
  return n;
}

}  // namespace

LoraTrainer::LoraTrainer(const ModelConfig& mc, LoraAdapter adapter, const Options& o)
    : mc_(mc), adapter_(std::move(adapter)), opt_(adapter_.weights(), o.adamw), o_(o) {
  if (!(o.max_grad_norm >= 0)) throw Error("max_grad_norm must be ≥ 0");
  if (adapter_.weights().n_layers != mc.num_hidden_layers)
    throw Error("the adapter has " + std::to_string(adapter_.weights().n_layers) + " layers, the model " + std::to_string(mc.num_hidden_layers));
}

TrainStepResult LoraTrainer::step(Model& model, const std::vector<std::vector<TrainSequence>>& micro_batches, double lr) {
  if (micro_batches.empty()) throw Error("a training step needs at least one micro-batch");
  if (!std::isfinite(lr) || lr < 0) throw Error("the learning rate must be a finite number ≥ 0");
  TrainStepResult r;
  for (auto& mb : micro_batches) {
    r.target_tokens += count_targets(mb);
    for (auto& s : mb) r.tokens += int64_t(s.input_ids.size());
  }
  if (r.target_tokens == 0) throw Error("the step's batches have no target tokens");
  LoraSet<double> acc;
  for (auto& mb : micro_batches) {
    LoraLossAndGrads g = lora_loss_and_grads(model, adapter_, mb, GradPrecision::F32);
    const double w = double(g.target_tokens) / double(r.target_tokens);
    r.loss += w * g.loss;
    if (acc.mods.empty()) {
      acc = std::move(g.grads);
      for (auto& p : acc.mods) {
        for (double& x : p.A) x *= w;
        for (double& x : p.B) x *= w;
      }
    } else {
      for (size_t k = 0; k < acc.mods.size(); k++) {
        for (size_t i = 0; i < acc.mods[k].A.size(); i++) acc.mods[k].A[i] += w * g.grads.mods[k].A[i];
        for (size_t i = 0; i < acc.mods[k].B.size(); i++) acc.mods[k].B[i] += w * g.grads.mods[k].B[i];
      }
    }
  }
  const AppliedStep a = apply_gradients(model, acc, r.loss, lr);
  r.grad_norm = a.grad_norm;
  r.step = a.step;
  return r;
}

LoraTrainer::AppliedStep LoraTrainer::apply_gradients(Model& model, const LoraSet<double>& acc, double loss, double lr) {
  if (!std::isfinite(lr) || lr < 0) throw Error("the learning rate must be a finite number ≥ 0");
  LoraSet<float> grads = adapter_.weights();
  for (size_t k = 0; k < grads.mods.size(); k++) {
    grads.mods[k].A.assign(acc.mods[k].A.begin(), acc.mods[k].A.end());
    grads.mods[k].B.assign(acc.mods[k].B.begin(), acc.mods[k].B.end());
  }
  const int64_t next = opt_.steps() + 1;
  if (!std::isfinite(loss)) throw Error("step " + std::to_string(next) + ": the loss is " + (std::isnan(loss) ? "NaN" : "infinite") + "; the adapter was not updated");
  AppliedStep r;
  r.grad_norm = clip_grad_norm(grads, o_.max_grad_norm);
  if (!std::isfinite(r.grad_norm))
    throw Error("step " + std::to_string(next) + ": the gradient is " + (std::isnan(r.grad_norm) ? "NaN" : "infinite") + " (loss " + std::to_string(loss) +
                "); the adapter was not updated");
  LoraAdapter updated = adapter_;
  AdamW opt = opt_;
  opt.step(updated.weights(), grads, lr);
  for (auto& p : updated.weights().mods)
    for (auto* v : {&p.A, &p.B})
      for (float x : *v)
        if (!std::isfinite(x)) throw Error("step " + std::to_string(next) + ": the update made a LoRA weight non-finite (learning rate too high?); the adapter was not updated");
  adapter_ = std::move(updated);
  opt_ = std::move(opt);
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
  t.opt_ = AdamW::load(dir, t.adapter_.weights());
  return t;
}

}  // namespace aha
