// GRPO beyond the TRL goldens (test_grpo_golden.cpp): advantages worked by hand, the edge cases
// (G = 1, zero std, bad groups), and grpo_step on a trainer (the reference pass with a fresh
// adapter gives KL 0, equal rewards give no gradient, the model's adapter follows the step).
#include <cmath>

#include "aha/grpo.h"
#include "aha/model.h"
#include "check.h"
#include "fixtures.h"

using namespace aha;

TEST(grpo_advantages_by_hand) {
  // group [1, 0]: mean ½, unbiased std √½; group [2, 2, 2] would not fit (sizes differ)
  const double s = std::sqrt(0.5);
  GrpoAdvantages g = grpo_advantages({{1, 0}, {3, 3}}, RewardScaling::Group);
  CHECK_NEAR(g.advantages[0][0], 0.5 / (s + 1e-4), 1e-15);
  CHECK_NEAR(g.advantages[0][1], -0.5 / (s + 1e-4), 1e-15);
  CHECK(g.advantages[1][0] == 0 && g.advantages[1][1] == 0);
  CHECK(!g.zero_std[0] && g.zero_std[1]);
  CHECK_NEAR(g.frac_reward_zero_std, 0.5, 0);
  // batch: the std of all four rewards (mean 7/4), the means still per group
  const double mean = 1.75, var = ((1 - mean) * (1 - mean) + mean * mean + 2 * (3 - mean) * (3 - mean)) / 3;
  GrpoAdvantages b = grpo_advantages({{1, 0}, {3, 3}}, RewardScaling::Batch);
  CHECK_NEAR(b.advantages[0][0], 0.5 / (std::sqrt(var) + 1e-4), 1e-15);
  CHECK_NEAR(b.advantages[1][1], 0.0, 0);
  CHECK(b.frac_reward_zero_std == 0);
  GrpoAdvantages n = grpo_advantages({{1, 0}, {3, 3}}, RewardScaling::None);
  CHECK(n.advantages[0][0] == 0.5 && n.advantages[0][1] == -0.5);
  // G = 1: no group std (TRL: zeros), so every advantage is 0
  GrpoAdvantages one = grpo_advantages({{5}, {7}}, RewardScaling::Group);
  CHECK(one.advantages[0][0] == 0 && one.advantages[1][0] == 0 && one.frac_reward_zero_std == 1);
  CHECK_THROWS(grpo_advantages({{1, 0}, {1}}, RewardScaling::Group), "every group needs the same number");
  CHECK_THROWS(grpo_advantages({{1, NAN}}, RewardScaling::Group), "non-finite reward");
  CHECK_THROWS(grpo_advantages({}, RewardScaling::Group), "no reward groups");
  CHECK_THROWS(reward_scaling_from_name("rank"), "unknown reward scaling");
  CHECK_THROWS(grpo_loss_type_from_name("ppo"), "unknown GRPO loss type");
}

namespace {

std::vector<GrpoSequence> batch_with(const std::vector<double>& advantages) {
  std::vector<GrpoSequence> b;
  const std::vector<std::vector<int32_t>> completions = {{40, 1079, 16}, {17, 18}, {9707, 11, 1879, 0}, {374}};
  for (size_t i = 0; i < advantages.size(); i++) {
    GrpoSequence s;
    s.prompt = {9707, 11, 1879};
    s.completion = completions[i % completions.size()];
    s.advantage = advantages[i];
    b.push_back(s);
  }
  return b;
}

}  // namespace

TEST(grpo_step_on_a_trainer) {
  LoadOptions o;
  o.threads = 2;
  o.context = 64;
  auto m = Model::load(tiny("qwen2-tiny"), o);
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  LoraTrainer t(m->config(), LoraAdapter::init(m->config(), lc, 3), {});
  t.model_adapter = m->add_adapter(t.adapter(), "grpo");
  GrpoLossConfig c;
  c.beta = 0.04;
  // A fresh adapter (B = 0) computes the base model: the reference pass agrees, KL is 0.
  GrpoLossAndGrads g0 = grpo_loss_and_grads(*m, t.adapter(), batch_with({1, -1, 0.5, -0.5}), c, GradPrecision::F32);
  CHECK(g0.kl == 0);
  CHECK(g0.clip_region_mean == 0 && g0.loss_tokens == 10 && g0.tokens == 22);
  // Equal rewards: zero advantages, no gradient, the optimizer step moves nothing (no weight decay).
  const LoraAdapter before = t.adapter();
  GrpoLossConfig c0;
  GrpoStepResult z = grpo_step(t, *m, batch_with({0, 0, 0, 0}), c0, 1e-2);
  CHECK(z.grad_norm == 0 && z.step == 1);
  for (size_t k = 0; k < before.weights().mods.size(); k++) CHECK(before.weights().mods[k].B == t.adapter().weights().mods[k].B);
  // Real advantages: B moves, and the model's adapter follows (generation samples the new policy).
  GrpoStepResult r = grpo_step(t, *m, batch_with({1, -1, 0.5, -0.5}), c, 1e-2);
  CHECK(r.grad_norm > 0 && r.step == 2 && r.g.kl == 0 && std::isfinite(r.g.loss));
  CHECK(r.g.grads.mods.empty());
  CHECK(r.g.logprobs.size() == 4 && r.g.logprobs[2].size() == 4 && r.g.logprobs[2][0] < 0);
  bool moved = false;
  for (size_t k = 0; k < before.weights().mods.size(); k++) moved |= before.weights().mods[k].B != t.adapter().weights().mods[k].B;
  CHECK(moved);
  CHECK(m->adapter(t.model_adapter).weights().mods[0].B == t.adapter().weights().mods[0].B);
  // Now the policy differs from the reference: KL > 0.
  GrpoLossAndGrads g1 = grpo_loss_and_grads(*m, t.adapter(), batch_with({1, -1, 0.5, -0.5}), c, GradPrecision::F32);
  CHECK(g1.kl > 0);
  // Masked truncated completions: out of the loss, counted as sequences.
  std::vector<GrpoSequence> b = batch_with({1, -1, 0.5, -0.5});
  b[0].truncated = b[3].truncated = true;
  GrpoLossConfig cm;
  cm.mask_truncated_completions = true;
  GrpoLossAndGrads gm = grpo_loss_and_grads(*m, t.adapter(), b, cm, GradPrecision::F32);
  CHECK(gm.masked_sequences == 2 && gm.loss_tokens == 6 && gm.logprobs[0].empty() && gm.logprobs[1].size() == 2);
  CHECK_THROWS(grpo_step(t, *m, batch_with({NAN}), c, 1e-2), "non-finite advantage");
  CHECK(t.optimizer().steps() == 2);
}
