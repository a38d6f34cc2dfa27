// GRPO's advantages, loss and LoRA gradients (see aha/grpo.h). Each token's loss is a function
// of its log-prob only, ℓ_t = −min(ρA, clip(ρ)A) + β·k3, with a constant weight from the
// normalization; so one train-mode forward gives every log-prob, d loss / d logp_t follows per
// token, and one backward from the lm head (lora_logprobs, either family) gives the LoRA gradients.
#include "aha/grpo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "aha/error.h"
#include "core/json.h"
#include "train/dense_lora.h"
#include "train/lora_model.h"

namespace aha {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// TRL's nanstd without NaNs: sqrt(mean((x − mean)²) · n / (n − 1)).
double unbiased_std(const std::vector<double>& x) {
  double mean = 0;
  for (double v : x) mean += v;
  mean /= double(x.size());
  double var = 0;
  for (double v : x) var += (v - mean) * (v - mean);
  var /= double(x.size());
  return std::sqrt(var * double(x.size()) / double(x.size() - 1));
}

template <class G, class F>
LoraSet<G> convert(const LoraSet<F>& s, bool zero) {
  LoraSet<G> o;
  o.n_layers = s.n_layers;
  o.rank = s.rank;
  o.mods.resize(s.mods.size());
  for (size_t i = 0; i < s.mods.size(); i++) {
    o.mods[i].in = s.mods[i].in;
    o.mods[i].out = s.mods[i].out;
    o.mods[i].experts = s.mods[i].experts;
    o.mods[i].A.assign(s.mods[i].A.begin(), s.mods[i].A.end());
    o.mods[i].B.assign(s.mods[i].B.begin(), s.mods[i].B.end());
    if (zero) {
      std::fill(o.mods[i].A.begin(), o.mods[i].A.end(), G(0));
      std::fill(o.mods[i].B.begin(), o.mods[i].B.end(), G(0));
    }
  }
  return o;
}

// What the per-token loss accumulates besides the gradient.
struct Tally {
  double loss = 0, kl = 0, entropy = 0;
  int64_t low = 0, high = 0, region = 0;
  std::vector<int64_t> seq_low, seq_high;  // [sequences] clipped tokens
};

// ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·k3 for one token, and dℓ/dlogp with torch's
// autograd conventions: minimum splits the gradient evenly on a tie (ρ inside the clip range
// gives a tie only at ρ = 1, where both halves are A); clamp passes it on [lo, hi] inclusive.
struct TokenLoss {
  double loss, dlogp, kl;
  bool low, high;
};

TokenLoss token_loss(double logp, double old_logp, double ref_logp, double A, const GrpoLossConfig& c) {
  const double lo = 1 - c.epsilon_low, hi = 1 + c.epsilon_high;
  const double rho = std::exp(logp - old_logp);
  const double rho_c = std::min(std::max(rho, lo), hi);
  const double a = rho * A, b = rho_c * A;
  const double in_range = (rho >= lo && rho <= hi) ? 1.0 : 0.0;
  const double dmin_drho = a < b ? A : a > b ? A * in_range : 0.5 * A + 0.5 * A * in_range;
  TokenLoss t;
  t.loss = -std::min(a, b);
  t.dlogp = -dmin_drho * rho;  // dρ/dlogp = ρ (old_logp is detached)
  t.kl = 0;
  if (c.beta != 0) {
    const double d = ref_logp - logp;
    t.kl = std::exp(d) - d - 1;
    t.loss += c.beta * t.kl;
    t.dlogp += c.beta * (1 - std::exp(d));
  }
  t.low = rho < lo && A < 0;
  t.high = rho > hi && A > 0;
  return t;
}

template <class F>
void run_micro_batch(const train::LoraModel& dm, const LoraSet<F>& w, double scale, const std::vector<GrpoSequence>& batch, const std::vector<size_t>& idx,
                     const std::vector<double>& weight, const GrpoLossConfig& c, LoraSet<F>& grads, Tally& tally, GrpoLossAndGrads& out, ThreadPool& pool) {
  std::vector<TrainSequence> seqs;
  for (size_t i : idx) {
    const GrpoSequence& s = batch[i];
    TrainSequence t;
    t.input_ids = s.prompt;
    t.input_ids.insert(t.input_ids.end(), s.completion.begin(), s.completion.end());
    t.labels.assign(s.prompt.size(), -100);
    t.labels.insert(t.labels.end(), s.completion.begin(), s.completion.end());
    seqs.push_back(std::move(t));
  }
  const train::PackedBatch b = train::pack_sequences(seqs, dm.config());
  const int64_t T = int64_t(b.tokens.size());
  out.tokens += T;
  // Packed position of completion token j of sequence i: its prompt's last token + j.
  std::vector<int64_t> row_seq(size_t(T), -1), row_tok(size_t(T), -1);
  int64_t t0 = 0;
  for (size_t i : idx) {
    const int64_t p = int64_t(batch[i].prompt.size()), n = int64_t(batch[i].completion.size());
    for (int64_t j = 0; j < n; j++) {
      row_seq[size_t(t0 + p - 1 + j)] = int64_t(i);
      row_tok[size_t(t0 + p - 1 + j)] = j;
    }
    t0 += p + n;
  }
  std::vector<double> ref(static_cast<size_t>(T)), logp(ref.size()), entropy(ref.size());
  if (c.beta != 0) {
    const auto t = std::chrono::steady_clock::now();
    train::lora_logprobs<F>(dm, nullptr, 0.0, b, c.temperature, ref.data(), nullptr, nullptr, nullptr, pool);
    out.reference_seconds += seconds_since(t);
  }
  const train::LogprobGrad dloss = [&](int64_t n, const int64_t* rows, const double* lp, double* dlp) {
    for (int64_t k = 0; k < n; k++) {
      const int64_t r = rows[k], i = row_seq[size_t(r)], j = row_tok[size_t(r)];
      const GrpoSequence& s = batch[size_t(i)];
      const double old = s.old_logprobs.empty() ? lp[k] : s.old_logprobs[size_t(j)];
      const TokenLoss tl = token_loss(lp[k], old, ref[size_t(r)], s.advantage, c);
      dlp[k] = weight[size_t(i)] * tl.dlogp;
      tally.loss += weight[size_t(i)] * tl.loss;
      tally.kl += tl.kl;
      tally.low += tl.low;
      tally.high += tl.high;
      tally.region += tl.low || tl.high;
      tally.seq_low[size_t(i)] += tl.low;
      tally.seq_high[size_t(i)] += tl.high;
    }
  };
  const auto t = std::chrono::steady_clock::now();
  train::lora_logprobs<F>(dm, &w, scale, b, c.temperature, logp.data(), entropy.data(), &dloss, &grads, pool, &out.forward_seconds);
  out.policy_seconds += seconds_since(t);
  for (int64_t r = 0; r < T; r++)
    if (row_seq[size_t(r)] >= 0) {
      out.logprobs[size_t(row_seq[size_t(r)])][size_t(row_tok[size_t(r)])] = logp[size_t(r)];
      tally.entropy += entropy[size_t(r)];
    }
}

template <class F>
LoraSet<double> run(Model& model, const LoraAdapter& adapter, const std::vector<GrpoSequence>& batch, const std::vector<std::vector<size_t>>& micro,
                    const std::vector<double>& weight, const GrpoLossConfig& c, Tally& tally, GrpoLossAndGrads& out) {
  const train::LoraModel dm = train::LoraModel::of(model);
  LoraSet<F> w = convert<F>(adapter.weights(), false), g = convert<F>(adapter.weights(), true);
  train::to_engine_order(w, dm.config());
  for (auto& idx : micro) run_micro_batch<F>(dm, w, adapter.scale(), batch, idx, weight, c, g, tally, out, model.thread_pool());
  LoraSet<double> gd = convert<double>(g, false);
  train::from_engine_order(gd, dm.config());
  return gd;
}

}  // namespace

GrpoLossType grpo_loss_type_from_name(const std::string& name) {
  if (name == "grpo") return GrpoLossType::Grpo;
  if (name == "bnpo") return GrpoLossType::Bnpo;
  if (name == "dr_grpo") return GrpoLossType::DrGrpo;
  if (name == "dapo") return GrpoLossType::Dapo;
  throw Error("unknown GRPO loss type '" + name + "' (grpo, bnpo, dr_grpo or dapo)");
}

RewardScaling reward_scaling_from_name(const std::string& name) {
  if (name == "group") return RewardScaling::Group;
  if (name == "batch") return RewardScaling::Batch;
  if (name == "none") return RewardScaling::None;
  throw Error("unknown reward scaling '" + name + "' (group, batch or none)");
}

GrpoAdvantages grpo_advantages(const std::vector<std::vector<double>>& rewards, RewardScaling scaling) {
  if (rewards.empty()) throw Error("no reward groups");
  const size_t G = rewards[0].size();
  std::vector<double> all;
  for (size_t p = 0; p < rewards.size(); p++) {
    if (rewards[p].size() != G || G == 0)
      throw Error("reward group " + std::to_string(p) + " has " + std::to_string(rewards[p].size()) + " rewards; every group needs the same number (≥ 1), here " +
                  std::to_string(G));
    for (double r : rewards[p]) {
      if (!std::isfinite(r)) throw Error("reward group " + std::to_string(p) + " holds a non-finite reward");
      all.push_back(r);
    }
  }
  const double batch_std = all.size() > 1 ? unbiased_std(all) : 0.0;
  GrpoAdvantages a;
  size_t zero = 0;
  for (auto& grp : rewards) {
    double mean = 0;
    for (double r : grp) mean += r;
    mean /= double(G);
    const double std = scaling == RewardScaling::Batch ? batch_std : G > 1 ? unbiased_std(grp) : 0.0;
    std::vector<double> adv;
    for (double r : grp) adv.push_back(scaling == RewardScaling::None ? r - mean : (r - mean) / (std + 1e-4));
    a.advantages.push_back(std::move(adv));
    a.zero_std.push_back(std::fabs(std) <= 1e-8);
    zero += a.zero_std.back() ? G : 0;
  }
  a.frac_reward_zero_std = double(zero) / double(all.size());
  return a;
}

void GrpoLossConfig::validate() const {
  if (!(beta >= 0) || !std::isfinite(beta)) throw Error("beta must be a finite number ≥ 0");
  if (!(epsilon_low >= 0 && epsilon_low < 1)) throw Error("epsilon (low) must be in [0, 1)");
  if (!(epsilon_high >= 0) || !std::isfinite(epsilon_high)) throw Error("epsilon_high must be a finite number ≥ 0");
  if (!(temperature > 0) || !std::isfinite(temperature)) throw Error("the temperature must be a finite number > 0");
  if (max_completion_length < 0) throw Error("max_completion_length must be ≥ 0");
  if (type == GrpoLossType::DrGrpo && max_completion_length == 0) throw Error("the dr_grpo loss needs max_completion_length (its normalizer)");
}

GrpoLossAndGrads grpo_loss_and_grads(Model& model, const LoraAdapter& adapter, const std::vector<GrpoSequence>& batch, const GrpoLossConfig& c,
                                     GradPrecision precision, int64_t micro_batch_tokens) {
  c.validate();
  const ModelConfig& mc = train::LoraModel::of(model).config();
  if (adapter.weights().n_layers != mc.num_hidden_layers)
    throw Error("the adapter has " + std::to_string(adapter.weights().n_layers) + " layers, the model " + std::to_string(mc.num_hidden_layers));
  if (batch.empty()) throw Error("the GRPO batch has no sequences");
  const size_t B = batch.size();
  GrpoLossAndGrads out;
  out.sequences = int64_t(B);
  out.logprobs.resize(B);
  std::vector<bool> in_loss(B);
  for (size_t i = 0; i < B; i++) {
    const GrpoSequence& s = batch[i];
    const std::string where = "GRPO sequence " + std::to_string(i);
    if (s.prompt.empty()) throw Error(where + " has an empty prompt");
    if (s.completion.empty()) throw Error(where + " has an empty completion");
    if (!std::isfinite(s.advantage)) throw Error(where + " has a non-finite advantage");
    if (!s.old_logprobs.empty() && s.old_logprobs.size() != s.completion.size())
      throw Error(where + ": " + std::to_string(s.old_logprobs.size()) + " old log-probs for " + std::to_string(s.completion.size()) + " completion tokens");
    for (double x : s.old_logprobs)
      if (!std::isfinite(x)) throw Error(where + ": an old log-prob is not finite");
    if (c.max_completion_length > 0 && int64_t(s.completion.size()) > c.max_completion_length)
      throw Error(where + " has " + std::to_string(s.completion.size()) + " completion tokens, more than max_completion_length (" +
                  std::to_string(c.max_completion_length) + ")");
    in_loss[i] = !(c.mask_truncated_completions && s.truncated);
    if (in_loss[i]) {
      out.loss_tokens += int64_t(s.completion.size());
      out.logprobs[i].assign(s.completion.size(), 0.0);
    } else {
      out.masked_sequences++;
    }
  }
  // TRL's normalizations as one constant weight per sequence's tokens.
  std::vector<double> weight(B, 0.0);
  for (size_t i = 0; i < B; i++) {
    if (!in_loss[i]) continue;
    switch (c.type) {
      case GrpoLossType::Grpo: weight[i] = 1.0 / (double(B) * double(batch[i].completion.size())); break;
      case GrpoLossType::Bnpo:
      case GrpoLossType::Dapo: weight[i] = 1.0 / double(std::max<int64_t>(1, out.loss_tokens)); break;
      case GrpoLossType::DrGrpo: weight[i] = 1.0 / (double(B) * double(c.max_completion_length)); break;
    }
  }
  std::vector<std::vector<size_t>> micro;
  int64_t mb_tokens = 0;
  for (size_t i = 0; i < B; i++) {
    if (!in_loss[i]) continue;
    const int64_t n = int64_t(batch[i].prompt.size() + batch[i].completion.size());
    if (micro.empty() || (micro_batch_tokens > 0 && mb_tokens + n > micro_batch_tokens)) {
      micro.emplace_back();
      mb_tokens = 0;
    }
    micro.back().push_back(i);
    mb_tokens += n;
  }
  Tally tally;
  tally.seq_low.assign(B, 0);
  tally.seq_high.assign(B, 0);
  if (precision == GradPrecision::F64) out.grads = run<double>(model, adapter, batch, micro, weight, c, tally, out);
  else out.grads = run<float>(model, adapter, batch, micro, weight, c, tally, out);
  const double nan = std::numeric_limits<double>::quiet_NaN(), n = double(std::max<int64_t>(1, out.loss_tokens));
  out.loss = tally.loss;
  out.kl = c.beta != 0 ? tally.kl / n : nan;
  out.entropy = tally.entropy / n;
  out.clip_low_mean = double(tally.low) / n;
  out.clip_high_mean = double(tally.high) / n;
  out.clip_region_mean = double(tally.region) / n;
  out.clip_low_min = out.clip_high_max = nan;
  for (size_t i = 0; i < B; i++) {
    if (!in_loss[i]) continue;
    const double len = double(batch[i].completion.size());
    const double lo = double(tally.seq_low[i]) / len, hi = double(tally.seq_high[i]) / len;
    out.clip_low_min = std::isnan(out.clip_low_min) ? lo : std::min(out.clip_low_min, lo);
    out.clip_high_max = std::isnan(out.clip_high_max) ? hi : std::max(out.clip_high_max, hi);
  }
  return out;
}

GrpoRollouts grpo_rollouts_from_json(const std::string& text, const std::string& file, const std::vector<int64_t>& eos_ids) {
  const Json j = Json::parse(text, file);
  auto fail = [&](const std::string& what) -> void { throw Error(file + ": " + what); };
  if (!j.is_object()) fail("expected an object {prompts, completions, rewards, loss}");
  for (auto& [k, v] : j.object())
    if (k != "prompts" && k != "completions" && k != "rewards" && k != "old_logprobs" && k != "truncated" && k != "loss") fail("unknown field '" + k + "'");
  auto array = [&](const Json* v, const std::string& where) -> const std::vector<Json>& {
    if (!v || !v->is_array()) fail(where + " must be an array");
    return v->array();
  };
  auto ids = [&](const Json& v, const std::string& where) {
    std::vector<int32_t> out;
    for (auto& x : array(&v, where)) {
      if (!x.is_number() || x.number() != std::floor(x.number()) || x.number() < 0 || x.number() > 2147483647) fail(where + " holds something other than a token id");
      out.push_back(int32_t(x.number()));
    }
    return out;
  };
  const auto& prompts = array(j.find("prompts"), "prompts");
  const auto& completions = array(j.find("completions"), "completions");
  const auto& rewards = array(j.find("rewards"), "rewards");
  if (prompts.empty()) fail("prompts is empty");
  if (completions.size() != prompts.size() || rewards.size() != prompts.size())
    fail(std::to_string(prompts.size()) + " prompts, " + std::to_string(completions.size()) + " completion groups and " + std::to_string(rewards.size()) +
         " reward groups: one of each per prompt");
  const Json* old = j.find("old_logprobs");
  const Json* trunc = j.find("truncated");
  GrpoRollouts r;
  std::vector<std::vector<double>> rw;
  for (size_t p = 0; p < prompts.size(); p++) {
    const std::string at = "[" + std::to_string(p) + "]";
    const std::vector<int32_t> prompt = ids(prompts[p], "prompts" + at);
    const auto& group = array(&completions[p], "completions" + at);
    const auto& rg = array(&rewards[p], "rewards" + at);
    if (rg.size() != group.size()) fail("rewards" + at + " has " + std::to_string(rg.size()) + " rewards for " + std::to_string(group.size()) + " completions");
    rw.emplace_back();
    for (size_t g = 0; g < group.size(); g++) {
      const std::string at2 = at + "[" + std::to_string(g) + "]";
      GrpoSequence s;
      s.prompt = prompt;
      s.completion = ids(group[g], "completions" + at2);
      if (!rg[g].is_number()) fail("rewards" + at2 + " is not a number");
      rw.back().push_back(rg[g].number());
      // The optional per-completion fields: [prompts][G](...), shaped like completions.
      auto member = [&](const Json* v, const char* name) -> const Json& {
        const auto& groups = array(v, name);
        if (groups.size() != prompts.size()) fail(std::string(name) + " has " + std::to_string(groups.size()) + " groups for " + std::to_string(prompts.size()) + " prompts");
        const auto& items = array(&groups[p], name + at);
        if (items.size() != group.size()) fail(std::string(name) + at + " has " + std::to_string(items.size()) + " entries for " + std::to_string(group.size()) + " completions");
        return items[g];
      };
      if (old)
        for (auto& x : array(&member(old, "old_logprobs"), "old_logprobs" + at2)) {
          if (!x.is_number()) fail("old_logprobs" + at2 + " holds something other than a number");
          s.old_logprobs.push_back(x.number());
        }
      if (trunc) {
        const Json& t = member(trunc, "truncated");
        if (!t.is_bool()) fail("truncated" + at2 + " is not a boolean");
        s.truncated = t.boolean();
      } else if (!s.completion.empty()) {
        s.truncated = std::find(eos_ids.begin(), eos_ids.end(), int64_t(s.completion.back())) == eos_ids.end();
      }
      r.batch.push_back(std::move(s));
    }
  }
  if (const Json* l = j.find("loss")) {
    if (!l->is_object()) fail("loss must be an object");
    for (auto& [k, v] : l->object())
      if (k != "type" && k != "beta" && k != "epsilon" && k != "epsilon_high" && k != "scale_rewards" && k != "temperature" && k != "max_completion_length" &&
          k != "mask_truncated_completions")
        fail("unknown loss option '" + k + "'");
    r.loss.type = grpo_loss_type_from_name(l->get_string("type", "dapo"));
    r.loss.beta = l->get_number("beta", 0.0);
    r.loss.epsilon_low = l->get_number("epsilon", 0.2);
    const Json* eh = l->find("epsilon_high");
    r.loss.epsilon_high = eh && !eh->is_null() ? l->get_number("epsilon_high", 0.2) : r.loss.epsilon_low;
    r.scaling = reward_scaling_from_name(l->get_string("scale_rewards", "group"));
    r.loss.temperature = l->get_number("temperature", 1.0);
    r.loss.max_completion_length = l->get_int("max_completion_length", 0);
    r.loss.mask_truncated_completions = l->get_bool("mask_truncated_completions", false);
  }
  r.loss.validate();
  r.advantages = grpo_advantages(rw, r.scaling);
  size_t k = 0;
  for (auto& grp : r.advantages.advantages)
    for (double a : grp) r.batch[k++].advantage = a;
  return r;
}

GrpoStepResult grpo_step(LoraTrainer& trainer, Model& model, const std::vector<GrpoSequence>& batch, const GrpoLossConfig& c, double lr,
                         int64_t micro_batch_tokens) {
  GrpoStepResult r;
  r.g = grpo_loss_and_grads(model, trainer.adapter(), batch, c, GradPrecision::F32, micro_batch_tokens);
  const auto t = std::chrono::steady_clock::now();
  const LoraTrainer::AppliedStep a = trainer.apply_gradients(model, r.g.grads, r.g.loss, lr);
  r.optimizer_seconds = seconds_since(t);
  r.grad_norm = a.grad_norm;
  r.step = a.step;
  r.g.grads = LoraSet<double>();
  return r;
}

}  // namespace aha
