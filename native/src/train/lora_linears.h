// The linear layers of a train-mode forward and backward, shared by the model families
// (train/dense_lora.cpp, train/deepseek_lora.cpp): a frozen weight of any dtype with an optional
// LoRA adapter and its dropout, or (full training) a trainable weight whose gradient accumulates.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "aha/error.h"
#include "aha/train.h"
#include "backends/cpu/matmul.h"
#include "core/thread_pool.h"
#include "train/dense_lora.h"
#include "train/ops.h"

namespace aha::train {

inline const float* f32(const Tensor* t) { return t ? static_cast<const float*>(t->data) : nullptr; }

template <class F>
class LoraLinears {
 public:
  LoraLinears(const LoraSet<F>* ad, double scale, const PackedBatch& b, ThreadPool& pool, const WeightGrads<F>* wg)
      : ad_(ad), scale_(scale), b_(b), pool_(pool), wg_(wg), T_(int64_t(b.tokens.size())), r_(ad ? ad->rank : 0) {}

 protected:
  const LoraPair<F>* lora(int64_t l, LoraTarget t) const { return ad_ && l >= 0 ? ad_->find(l, t) : nullptr; }

  // x [T, in] with LoRA dropout applied for layer l's target t (PackedBatch::lora_dropout): kept
  // elements scaled by 1/(1 − p), the mask a hash of (seed, layer, target, element index).
  std::vector<F> dropped(const std::vector<F>& x, int64_t l, LoraTarget t) const {
    auto mix = [](uint64_t z) {  // splitmix64's finalizer
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      return z ^ (z >> 31);
    };
    const double p = b_.lora_dropout;
    const F keep = F(1.0 / (1.0 - p));
    const uint64_t base = mix(b_.dropout_seed + 0x9e3779b97f4a7c15ULL * uint64_t(l * 16 + int64_t(t) + 1));
    std::vector<F> d(x.size());
    for (size_t i = 0; i < x.size(); i++) d[i] = double(mix(base + i) >> 11) * 0x1.0p-53 < p ? F(0) : x[i] * keep;
    return d;
  }

  // Full training: where weight W's gradient accumulates; null for LoRA (frozen weights) or W null.
  F* wgrad(const Tensor* W) const {
    if (!wg_ || !W) return nullptr;
    auto it = wg_->find(W->name);
    if (it == wg_->end()) throw Error("full training: no gradient buffer for weight '" + W->name + "'");
    return it->second;
  }

  // y[T, out] = x Wᵀ + bias + scale · (x Aᵀ) Bᵀ, saving x Aᵀ in xa.
  void linear(std::vector<F>& y, std::vector<F>& xa, const std::vector<F>& x, const Tensor& W, const Tensor* bias, int64_t l, LoraTarget t) {
    const LoraPair<F>* p = lora(l, t);
    const int64_t out = W.rows();
    y.resize(size_t(T_ * out));
    if (p) xa.resize(size_t(T_ * r_));
    if (p && b_.lora_dropout > 0) {  // base on x, the adapter branch on dropout(x)
      linear(y, xa, x, W, bias, -1, t);
      const std::vector<F> xd = dropped(x, l, t);
      lora_add(y.data(), xa.data(), xd.data(), p->A.data(), p->B.data(), scale_, T_, p->in, p->out, r_, &pool_);
      return;
    }
    if constexpr (std::is_same_v<F, float>) {
      matmul(W, x.data(), T_, y.data(), pool_, mm_);
      if (bias)
        for (int64_t t = 0; t < T_; t++)
          for (int64_t j = 0; j < out; j++) y[size_t(t * out + j)] += f32(bias)[j];
      if (p) lora_add(y.data(), xa.data(), x.data(), p->A.data(), p->B.data(), scale_, T_, p->in, p->out, r_, &pool_);
    } else {
      lora_linear_forward(y.data(), p ? xa.data() : nullptr, x.data(), W, f32(bias), p ? p->A.data() : nullptr, p ? p->B.data() : nullptr, scale_, T_,
                          r_, &pool_);
    }
  }

  // dx = dy W + LoRA terms (dx may be null), LoRA gradients into `g` (nullable); in full
  // training also dW += dyᵀ x and dbias += Σ dy.
  void linear_backward(F* dx, const std::vector<F>& dy, const std::vector<F>& x, const std::vector<F>& xa, const Tensor& W, const Tensor* bias,
                       int64_t l, LoraTarget t, LoraSet<F>* g) {
    const LoraPair<F>* p = lora(l, t);
    LoraPair<F>* gp = p && g ? g->find(l, t) : nullptr;
    if (p && b_.lora_dropout > 0) {
      // dx = dy W + dropout'(scale (dy B) A): the adapter branch's input gradient goes back
      // through the same mask; dA sees the dropped input.
      if (dx) matmul_backward_input(dx, dy.data(), W, T_, &pool_);
      const std::vector<F> xd = dropped(x, l, t);
      std::vector<F> dl(dx ? x.size() : 0, F(0));
      lora_linear_backward(dx ? dl.data() : nullptr, gp ? gp->A.data() : nullptr, gp ? gp->B.data() : nullptr, dy.data(), xd.data(), xa.data(), W,
                           p->A.data(), p->B.data(), scale_, T_, r_, &pool_, false);
      if (dx) {
        const std::vector<F> dd = dropped(dl, l, t);
        for (size_t i = 0; i < dd.size(); i++) dx[i] += dd[i];
      }
    } else {
      lora_linear_backward(dx, gp ? gp->A.data() : nullptr, gp ? gp->B.data() : nullptr, dy.data(), x.data(), p ? xa.data() : nullptr, W,
                           p ? p->A.data() : nullptr, p ? p->B.data() : nullptr, scale_, T_, r_, &pool_);
    }
    if (F* dW = wgrad(&W)) linear_backward_weight(dW, wgrad(bias), dy.data(), x.data(), T_, W.ne[0], W.rows(), &pool_);
  }

  const LoraSet<F>* ad_;
  const double scale_;
  const PackedBatch& b_;
  ThreadPool& pool_;
  const WeightGrads<F>* wg_;  // full training; null under LoRA
  const int64_t T_, r_;
  MatmulScratch mm_;
};

}  // namespace aha::train
