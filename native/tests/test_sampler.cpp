// Sampler: each warper does what transformers' does, seeds reproduce, bad settings are refused.
#include <cmath>
#include <map>
#include <vector>

#include "aha/error.h"
#include "check.h"
#include "runtime/sampler.h"

using namespace aha;

namespace {

// Empirical distribution of `n` samples.
std::map<int32_t, double> histogram(const SamplerParams& p, const std::vector<float>& logits, int n, const std::vector<int32_t>& hist = {}) {
  Sampler s(p);
  std::map<int32_t, double> h;
  for (int i = 0; i < n; i++) h[s.sample(logits.data(), int64_t(logits.size()), hist)] += 1.0 / n;
  return h;
}

}  // namespace

TEST(sampler_greedy_and_seeded) {
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.9f};
  SamplerParams p;
  p.temperature = 0;
  Sampler g(p);
  CHECK(g.sample(l.data(), 4, {}) == 1);
  p.temperature = 1.0;
  p.seed = 5;
  Sampler a(p), b(p);
  for (int i = 0; i < 50; i++) CHECK(a.sample(l.data(), 4, {}) == b.sample(l.data(), 4, {}));
}

TEST(sampler_follows_the_softmax) {
  std::vector<float> l = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};  // p = 0.1, 0.2, 0.3, 0.4
  SamplerParams p;
  p.seed = 1;
  auto h = histogram(p, l, 20000);
  for (int i = 0; i < 4; i++) CHECK_NEAR(h[i], 0.1 * (i + 1), 0.015);
  // temperature 0.5 squares the odds: p ∝ 1, 4, 9, 16
  p.temperature = 0.5;
  h = histogram(p, l, 20000);
  CHECK_NEAR(h[3], 16.0 / 30.0, 0.015);
  CHECK_NEAR(h[0], 1.0 / 30.0, 0.01);
}

TEST(sampler_truncations) {
  std::vector<float> l = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  SamplerParams p;
  p.seed = 2;
  p.top_k = 2;  // only 3 and 2 remain: 4/7, 3/7
  auto h = histogram(p, l, 20000);
  CHECK(h.count(0) == 0 && h.count(1) == 0);
  CHECK_NEAR(h[3], 4.0 / 7.0, 0.015);
  p.top_k = 0;
  p.top_p = 0.65;  // 0.4 + 0.3 reaches 0.65: tokens 3 and 2
  h = histogram(p, l, 20000);
  CHECK(h.count(0) == 0 && h.count(1) == 0 && h.count(2) == 1);
  p.top_p = 0.35;  // the top token alone reaches it
  h = histogram(p, l, 2000);
  CHECK(h.size() == 1 && h.count(3) == 1);
  p.top_p = 1.0;
  p.min_p = 0.6;  // keeps p ≥ 0.6 × 0.4 = 0.24: tokens 2 and 3
  h = histogram(p, l, 20000);
  CHECK(h.count(0) == 0 && h.count(1) == 0 && h.count(2) == 1);
}

TEST(sampler_penalties_and_bias) {
  std::vector<float> l = {1.0f, 2.0f, -1.0f};
  SamplerParams p;
  p.temperature = 0;
  p.repetition_penalty = 3.0;  // 2.0 → 0.667 < 1.0: token 0 wins after token 1 was seen
  Sampler s(p);
  CHECK(s.sample(l.data(), 3, {1}) == 0);
  SamplerParams q;
  q.temperature = 0;
  q.frequency_penalty = 0.6;  // two occurrences of 1: 2.0 - 1.2 = 0.8 < 1.0
  Sampler f(q);
  CHECK(f.sample(l.data(), 3, {1}) == 1);
  CHECK(f.sample(l.data(), 3, {1, 1}) == 0);
  SamplerParams r;
  r.temperature = 0;
  r.presence_penalty = 1.5;
  Sampler pr(r);
  CHECK(pr.sample(l.data(), 3, {1, 1, 1}) == 0);
  SamplerParams b;
  b.temperature = 0;
  b.logit_bias[2] = 10.0f;
  Sampler bb(b);
  CHECK(bb.sample(l.data(), 3, {}) == 2);
  // penalty_last_n limits how far back penalties look
  SamplerParams w;
  w.temperature = 0;
  w.repetition_penalty = 3.0;
  w.penalty_last_n = 1;
  Sampler ww(w);
  CHECK(ww.sample(l.data(), 3, {1, 0}) == 1);
}

TEST(sampler_refuses_bad_settings) {
  SamplerParams p;
  p.top_p = 0;
  CHECK_THROWS(Sampler{p}, "top_p");
  p = {};
  p.temperature = -1;
  CHECK_THROWS(Sampler{p}, "temperature");
  p = {};
  p.min_p = 1.5;
  CHECK_THROWS(Sampler{p}, "min_p");
  p = {};
  p.repetition_penalty = 0;
  CHECK_THROWS(Sampler{p}, "repetition_penalty");
}
