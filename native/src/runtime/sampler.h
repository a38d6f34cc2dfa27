// Token sampling over one row of logits, in the order transformers applies its warpers:
// logit bias → repetition/presence/frequency penalties → temperature → top-k → top-p → min-p.
// Same seed, same history → same token.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "aha/model.h"

namespace aha {

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  // `history`: the tokens penalties look at (prompt and generated so far).
  int32_t sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> idx_;
};

}  // namespace aha
