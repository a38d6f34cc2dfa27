// LoRA adapters for the training tests.
#pragma once
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "aha/train.h"

// rank 3, alpha 5, seeded, with a non-zero B (PEFT starts B at zero) so that every A has a
// gradient; targets: LoraConfig's default when not given.
inline aha::LoraAdapter random_b_adapter(const aha::ModelConfig& c, bool rslora,
                                         std::optional<std::vector<std::string>> targets = std::nullopt) {
  aha::LoraConfig lc;
  lc.rank = 3;
  lc.alpha = 5;
  lc.use_rslora = rslora;
  if (targets) lc.target_modules = std::move(*targets);
  aha::LoraAdapter a = aha::LoraAdapter::init(c, lc, 42);
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0.0f, 0.05f);
  for (auto& p : a.weights().mods)
    for (auto& x : p.B) x = d(rng);
  return a;
}
