#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "aha/error.h"

namespace aha {

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature)) throw Error("temperature must be a finite number ≥ 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw Error("top_p must be in (0, 1]");
  if (!(p.min_p >= 0 && p.min_p < 1)) throw Error("min_p must be in [0, 1)");
  if (p.top_k < 0) throw Error("top_k must be ≥ 0");
  if (!(p.repetition_penalty > 0)) throw Error("repetition_penalty must be > 0");
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history) {
  work_.assign(logits, logits + n_vocab);
  float* l = work_.data();
  for (auto& [id, b] : p_.logit_bias)
    if (id >= 0 && id < n_vocab) l[id] += b;
  if (p_.repetition_penalty != 1.0 || p_.presence_penalty != 0.0 || p_.frequency_penalty != 0.0) {
    size_t start = p_.penalty_last_n < 0 || size_t(p_.penalty_last_n) >= history.size() ? 0 : history.size() - size_t(p_.penalty_last_n);
    std::unordered_map<int32_t, int> counts;
    for (size_t i = start; i < history.size(); i++) counts[history[i]]++;
    for (auto& [id, n] : counts) {
      if (id < 0 || id >= n_vocab) continue;
      float& v = l[id];
      if (p_.repetition_penalty != 1.0) v = v > 0 ? float(v / p_.repetition_penalty) : float(v * p_.repetition_penalty);
      v -= float(p_.presence_penalty + p_.frequency_penalty * n);
    }
  }
  if (p_.temperature <= 0) return int32_t(std::max_element(l, l + n_vocab) - l);

  const float inv_t = float(1.0 / p_.temperature);
  for (int64_t i = 0; i < n_vocab; i++) l[i] *= inv_t;
  // Candidates sorted by logit; with top-k only the k best need sorting.
  int64_t k = p_.top_k > 0 ? std::min<int64_t>(p_.top_k, n_vocab) : n_vocab;
  idx_.resize(size_t(n_vocab));
  std::iota(idx_.begin(), idx_.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
  if (k < n_vocab) {
    std::nth_element(idx_.begin(), idx_.begin() + k, idx_.end(), by_logit);
    idx_.resize(size_t(k));
  }
  // Without truncation the full softmax is sampled as is: no sort needed.
  if (p_.top_p < 1.0 || p_.min_p > 0 || k < n_vocab) std::sort(idx_.begin(), idx_.end(), by_logit);
  float mx = -INFINITY;
  for (int32_t i : idx_) mx = std::max(mx, l[i]);
  std::vector<double> probs(idx_.size());
  double sum = 0;
  for (size_t j = 0; j < idx_.size(); j++) sum += (probs[j] = std::exp(double(l[idx_[j]]) - mx));
  size_t n = idx_.size();
  if (p_.top_p < 1.0) {
    double cum = 0;
    for (size_t j = 0; j < n; j++) {
      cum += probs[j] / sum;
      if (cum >= p_.top_p) {
        n = j + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0) {
    double thresh = p_.min_p * probs[0];  // probs[0] is the max (sorted)
    size_t m = 1;
    while (m < n && probs[m] >= thresh) m++;
    n = m;
  }
  double total = 0;
  for (size_t j = 0; j < n; j++) total += probs[j];
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (size_t j = 0; j < n; j++) {
    r -= probs[j];
    if (r < 0) return idx_[j];
  }
  return idx_[n - 1];
}

}  // namespace aha
