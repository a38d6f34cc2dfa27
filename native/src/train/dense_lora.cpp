// Train-mode forward and backward of the dense family (see dense_lora.h): LoRA on frozen weights,
// or full training, where the same backward also gives every weight's own gradient.
// One block per function pair, in the order of the inference forward (models/dense.cpp).
#include "train/dense_lora.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "aha/error.h"
#include "backends/cpu/matmul.h"
#include "train/lora_linears.h"
#include "train/lora_model.h"
#include "train/ops.h"

namespace aha::train {

namespace {

constexpr int64_t kLogitChunk = 64;  // rows of logits [kLogitChunk, vocab] held at once

// What one layer's backward reads.
template <class F>
struct LayerSaved {
  std::vector<F> x;              // [T, H] residual stream entering the layer
  std::vector<F> rstd1, xn1;     // [T], [T, H] attn_norm
  std::vector<F> xa_q, xa_k, xa_v, xa_o;  // [T, r] x Aᵀ of each adapted projection
  std::vector<F> q_raw, k_raw;   // [T, QD], [T, KD] before the q/k norm (qwen3 only)
  std::vector<F> rstd_q, rstd_k; // [T * n_heads], [T * n_kv_heads] (qwen3 only)
  std::vector<F> q, k, v;        // [T, QD], [T, KD], [T, KD] as attention reads them (normed, rotated)
  std::vector<F> attn, lse;      // [T, QD], [n_heads, T]
  std::vector<F> x_mid;          // [T, H] residual stream after the attention block
  std::vector<F> rstd2, xn2;     // [T], [T, H] ffn_norm
  std::vector<F> gate, up, h;    // [T, intermediate]: projections and silu(gate) * up
  std::vector<F> xa_gate, xa_up, xa_down;  // [T, r]
};

template <class F>
class Runner : LoraLinears<F> {
  using B = LoraLinears<F>;
  using B::ad_, B::b_, B::pool_, B::wg_, B::T_, B::r_, B::wgrad, B::linear, B::linear_backward;

 public:
  Runner(const DenseModel& m, const LoraSet<F>* ad, double scale, const PackedBatch& b, ThreadPool& pool, const WeightGrads<F>* wg = nullptr)
      : B(ad, scale, b, pool, wg), m_(m), c_(m.config()) {}

  void forward() {
    const int64_t H = c_.hidden_size;
    std::vector<F> x(size_t(T_ * H));
    embedding_forward(x.data(), b_.tokens.data(), m_.tok_embd(), T_);
    saved_.resize(size_t(c_.num_hidden_layers));
    for (int64_t l = 0; l < c_.num_hidden_layers; l++) {
      attention_forward_block(l, x);
      ffn_forward_block(l, x);
      if (b_.checkpoint_layers) keep_only_input(l);
    }
    xf_ = std::move(x);
    rstdf_.resize(size_t(T_));
    xnf_.resize(size_t(T_ * H));
    rmsnorm_forward(xnf_.data(), rstdf_.data(), xf_.data(), f32(&m_.output_norm()), T_, H, c_.rms_norm_eps);
  }

  // Loss; with LoRA grads or weight grads, the backward pass too.
  double loss_and_backward(LoraSet<F>* grads) {
    const int64_t H = c_.hidden_size;
    const double inv_n = 1.0 / double(b_.n_targets);
    const bool back = grads || wg_;
    std::vector<F> dxnf(back ? size_t(T_ * H) : 0);
    const double loss = inv_n * lm_head_cross_entropy(back ? dxnf.data() : nullptr, wgrad(&m_.output()), nullptr, xnf_.data(), m_.output(),
                                                      b_.targets.data(), T_, inv_n, kLogitChunk, &pool_);
    if (back) backward(dxnf, grads);
    return loss;
  }

  // The lm head's log-probs at `temperature` (and entropies); with grads, the backward of the
  // per-token objective `dloss` too.
  void logprobs_and_backward(double* logp, double* entropy, double temperature, const LogprobGrad* dloss, LoraSet<F>* grads) {
    const bool back = grads || wg_;
    std::vector<F> dxnf(back ? size_t(T_ * c_.hidden_size) : 0);
    lm_head_logprobs(back ? dxnf.data() : nullptr, wgrad(&m_.output()), logp, entropy, xnf_.data(), m_.output(), b_.targets.data(), T_, temperature,
                     dloss, kLogitChunk, &pool_);
    if (back) backward(dxnf, grads);
  }

  // −log p of each position's target (0 where there is none): losses[T].
  void token_losses(double* losses) {
    lm_head_cross_entropy<F>(nullptr, nullptr, losses, xnf_.data(), m_.output(), b_.targets.data(), T_, 1.0, kLogitChunk, &pool_);
  }

 private:
  // From d loss / d the final norm's output [T, H] down through every layer (and, in full
  // training, into the embedding table). `grads`: the LoRA gradients, null in full training.
  void backward(const std::vector<F>& dxnf, LoraSet<F>* grads) {
    const int64_t H = c_.hidden_size;
    std::vector<F> dx(size_t(T_ * H));
    rmsnorm_backward(dx.data(), wgrad(&m_.output_norm()), dxnf.data(), xf_.data(), rstdf_.data(), f32(&m_.output_norm()), T_, H);
    for (int64_t l = c_.num_hidden_layers - 1; l >= 0; l--) {
      if (b_.checkpoint_layers) {  // the same forward again, from the layer's saved input
        std::vector<F> x = saved_[size_t(l)].x;
        attention_forward_block(l, x);
        ffn_forward_block(l, x);
      }
      ffn_backward_block(l, dx, grads);
      attention_backward_block(l, dx, grads);
      if (b_.checkpoint_layers) saved_[size_t(l)] = LayerSaved<F>();
    }
    if (F* dE = wgrad(&m_.tok_embd())) embedding_backward(dE, dx.data(), b_.tokens.data(), T_, H);
  }

  // Checkpointing: drop layer l's saved activations but its input.
  void keep_only_input(int64_t l) {
    std::vector<F> in = std::move(saved_[size_t(l)].x);
    saved_[size_t(l)] = LayerSaved<F>();
    saved_[size_t(l)].x = std::move(in);
  }

  void attention_forward_block(int64_t l, std::vector<F>& x) {
    const DenseLayer& L = m_.layer(l);
    LayerSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size, nh = c_.num_attention_heads, nkv = c_.num_key_value_heads, hd = c_.head_dim;
    S.x = x;
    S.rstd1.resize(size_t(T_));
    S.xn1.resize(size_t(T_ * H));
    rmsnorm_forward(S.xn1.data(), S.rstd1.data(), x.data(), f32(L.attn_norm), T_, H, c_.rms_norm_eps);
    linear(L.q_norm ? S.q_raw : S.q, S.xa_q, S.xn1, *L.wq, L.bq, l, LoraTarget::QProj);
    linear(L.k_norm ? S.k_raw : S.k, S.xa_k, S.xn1, *L.wk, L.bk, l, LoraTarget::KProj);
    linear(S.v, S.xa_v, S.xn1, *L.wv, L.bv, l, LoraTarget::VProj);
    if (L.q_norm) {
      S.q.resize(S.q_raw.size());
      S.k.resize(S.k_raw.size());
      S.rstd_q.resize(size_t(T_ * nh));
      S.rstd_k.resize(size_t(T_ * nkv));
      rmsnorm_forward(S.q.data(), S.rstd_q.data(), S.q_raw.data(), f32(L.q_norm), T_ * nh, hd, c_.rms_norm_eps);
      rmsnorm_forward(S.k.data(), S.rstd_k.data(), S.k_raw.data(), f32(L.k_norm), T_ * nkv, hd, c_.rms_norm_eps);
    }
    rope_forward(S.q.data(), S.q.data(), b_.pos.data(), m_.inv_freq().data(), T_, nh, hd, c_.rope_neox);
    rope_forward(S.k.data(), S.k.data(), b_.pos.data(), m_.inv_freq().data(), T_, nkv, hd, c_.rope_neox);
    S.attn.resize(size_t(T_ * nh * hd));
    S.lse.resize(size_t(nh * T_));
    attention_forward(S.attn.data(), S.lse.data(), S.q.data(), S.k.data(), S.v.data(), b_.seq_begin.data(), T_, nh, nkv, hd, &pool_);
    std::vector<F> proj;
    linear(proj, S.xa_o, S.attn, *L.wo, L.bo, l, LoraTarget::OProj);
    for (size_t i = 0; i < x.size(); i++) x[i] += proj[i];
    S.x_mid = x;
  }

  void ffn_forward_block(int64_t l, std::vector<F>& x) {
    const DenseLayer& L = m_.layer(l);
    LayerSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size;
    S.rstd2.resize(size_t(T_));
    S.xn2.resize(size_t(T_ * H));
    rmsnorm_forward(S.xn2.data(), S.rstd2.data(), x.data(), f32(L.ffn_norm), T_, H, c_.rms_norm_eps);
    linear(S.gate, S.xa_gate, S.xn2, *L.w_gate, nullptr, l, LoraTarget::GateProj);
    linear(S.up, S.xa_up, S.xn2, *L.w_up, nullptr, l, LoraTarget::UpProj);
    S.h.resize(S.gate.size());
    swiglu_forward(S.h.data(), S.gate.data(), S.up.data(), int64_t(S.h.size()));
    std::vector<F> proj;
    linear(proj, S.xa_down, S.h, *L.w_down, nullptr, l, LoraTarget::DownProj);
    for (size_t i = 0; i < x.size(); i++) x[i] += proj[i];
  }

  // dx: [T, H] gradient of the residual stream leaving the block; on return, entering it.
  void ffn_backward_block(int64_t l, std::vector<F>& dx, LoraSet<F>* g) {
    const DenseLayer& L = m_.layer(l);
    const LayerSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size;
    std::vector<F> dh(S.h.size()), dgate(S.h.size()), dup(S.h.size()), dxn(size_t(T_ * H)), tmp(size_t(T_ * H));
    linear_backward(dh.data(), dx, S.h, S.xa_down, *L.w_down, nullptr, l, LoraTarget::DownProj, g);
    swiglu_backward(dgate.data(), dup.data(), dh.data(), S.gate.data(), S.up.data(), int64_t(dh.size()));
    linear_backward(dxn.data(), dgate, S.xn2, S.xa_gate, *L.w_gate, nullptr, l, LoraTarget::GateProj, g);
    linear_backward(tmp.data(), dup, S.xn2, S.xa_up, *L.w_up, nullptr, l, LoraTarget::UpProj, g);
    for (size_t i = 0; i < dxn.size(); i++) dxn[i] += tmp[i];
    rmsnorm_backward(tmp.data(), wgrad(L.ffn_norm), dxn.data(), S.x_mid.data(), S.rstd2.data(), f32(L.ffn_norm), T_, H);
    for (size_t i = 0; i < dx.size(); i++) dx[i] += tmp[i];
  }

  void attention_backward_block(int64_t l, std::vector<F>& dx, LoraSet<F>* g) {
    const DenseLayer& L = m_.layer(l);
    const LayerSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size, nh = c_.num_attention_heads, nkv = c_.num_key_value_heads, hd = c_.head_dim;
    std::vector<F> dattn(S.attn.size()), dq(S.q.size()), dk(S.k.size()), dv(S.v.size());
    linear_backward(dattn.data(), dx, S.attn, S.xa_o, *L.wo, L.bo, l, LoraTarget::OProj, g);
    attention_backward(dq.data(), dk.data(), dv.data(), dattn.data(), S.attn.data(), S.lse.data(), S.q.data(), S.k.data(), S.v.data(),
                       b_.seq_begin.data(), T_, nh, nkv, hd, &pool_);
    rope_backward(dq.data(), dq.data(), b_.pos.data(), m_.inv_freq().data(), T_, nh, hd, c_.rope_neox);
    rope_backward(dk.data(), dk.data(), b_.pos.data(), m_.inv_freq().data(), T_, nkv, hd, c_.rope_neox);
    if (L.q_norm) {
      std::vector<F> t(dq.size());
      rmsnorm_backward(t.data(), wgrad(L.q_norm), dq.data(), S.q_raw.data(), S.rstd_q.data(), f32(L.q_norm), T_ * nh, hd);
      dq.swap(t);
      t.resize(dk.size());
      rmsnorm_backward(t.data(), wgrad(L.k_norm), dk.data(), S.k_raw.data(), S.rstd_k.data(), f32(L.k_norm), T_ * nkv, hd);
      dk.swap(t);
    }
    // Under LoRA the first layer's input is the frozen embedding: no gradient flows further.
    const bool need_dx = l > 0 || wg_;
    std::vector<F> dxn(need_dx ? size_t(T_ * H) : 0), tmp(need_dx ? size_t(T_ * H) : 0);
    linear_backward(need_dx ? dxn.data() : nullptr, dq, S.xn1, S.xa_q, *L.wq, L.bq, l, LoraTarget::QProj, g);
    linear_backward(need_dx ? tmp.data() : nullptr, dk, S.xn1, S.xa_k, *L.wk, L.bk, l, LoraTarget::KProj, g);
    for (size_t i = 0; i < dxn.size(); i++) dxn[i] += tmp[i];
    linear_backward(need_dx ? tmp.data() : nullptr, dv, S.xn1, S.xa_v, *L.wv, L.bv, l, LoraTarget::VProj, g);
    if (!need_dx) return;
    for (size_t i = 0; i < dxn.size(); i++) dxn[i] += tmp[i];
    rmsnorm_backward(tmp.data(), wgrad(L.attn_norm), dxn.data(), S.x.data(), S.rstd1.data(), f32(L.attn_norm), T_, H);
    for (size_t i = 0; i < dx.size(); i++) dx[i] += tmp[i];
  }

  const DenseModel& m_;
  const ModelConfig& c_;
  std::vector<LayerSaved<F>> saved_;
  std::vector<F> xf_, rstdf_, xnf_;  // [T, H], [T], [T, H]: the final norm's input, saved rstd and output
};

}  // namespace

template <class F>
void permute_head_rows(std::vector<F>& rows, int64_t n_heads, int64_t head_dim, int64_t cols, bool to_gguf) {
  const int64_t half = head_dim / 2;
  std::vector<F> out(rows.size());
  for (int64_t h = 0; h < n_heads; h++)
    for (int64_t i = 0; i < half; i++)
      for (int64_t j = 0; j < 2; j++) {
        const int64_t hf = h * head_dim + j * half + i, gg = h * head_dim + 2 * i + j;
        const int64_t dst = to_gguf ? gg : hf, src = to_gguf ? hf : gg;
        std::copy(rows.begin() + src * cols, rows.begin() + (src + 1) * cols, out.begin() + dst * cols);
      }
  rows.swap(out);
}
template void permute_head_rows<float>(std::vector<float>&, int64_t, int64_t, int64_t, bool);
template void permute_head_rows<double>(std::vector<double>&, int64_t, int64_t, int64_t, bool);

namespace {

template <class F>
void permute_qk_rows(LoraSet<F>& s, const ModelConfig& c, bool to_gguf) {
  // Only llama.cpp's converter permutes rows (llama-style GGUFs); deepseek2 keeps HF's order.
  if (c.rope_neox || c.arch == Arch::DeepseekV2 || c.arch == Arch::DeepseekV3) return;
  for (int64_t l = 0; l < s.n_layers; l++)
    for (auto [t, heads] : {std::pair{LoraTarget::QProj, c.num_attention_heads}, std::pair{LoraTarget::KProj, c.num_key_value_heads}})
      if (LoraPair<F>* p = s.find(l, t)) permute_head_rows(p->B, heads, c.head_dim, s.rank, to_gguf);
}

}  // namespace

template <class F>
void to_engine_order(LoraSet<F>& s, const ModelConfig& c) {
  permute_qk_rows(s, c, true);
}
template <class F>
void from_engine_order(LoraSet<F>& s, const ModelConfig& c) {
  permute_qk_rows(s, c, false);
}
template void to_engine_order<float>(LoraSet<float>&, const ModelConfig&);
template void to_engine_order<double>(LoraSet<double>&, const ModelConfig&);
template void from_engine_order<float>(LoraSet<float>&, const ModelConfig&);
template void from_engine_order<double>(LoraSet<double>&, const ModelConfig&);

PackedBatch pack_sequences(const std::vector<TrainSequence>& seqs, const ModelConfig& c) {
  PackedBatch b;
  if (seqs.empty()) throw Error("the batch has no sequences");
  for (size_t s = 0; s < seqs.size(); s++) {
    const auto& q = seqs[s];
    const std::string where = "sequence " + std::to_string(s);
    if (q.input_ids.empty()) throw Error(where + " has no tokens");
    if (q.labels.size() != q.input_ids.size())
      throw Error(where + ": " + std::to_string(q.labels.size()) + " labels for " + std::to_string(q.input_ids.size()) + " tokens");
    if (int64_t(q.input_ids.size()) > c.max_position_embeddings)
      throw Error(where + " has " + std::to_string(q.input_ids.size()) + " tokens, more than the model's context (" +
                  std::to_string(c.max_position_embeddings) + ")");
    const int64_t begin = int64_t(b.tokens.size());
    for (size_t t = 0; t < q.input_ids.size(); t++) {
      const int32_t id = q.input_ids[t], lab = q.labels[t];
      if (id < 0 || id >= c.vocab_size) throw Error(where + ": token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
      if (lab != -100 && (lab < 0 || lab >= c.vocab_size)) throw Error(where + ": label " + std::to_string(lab) + " is neither -100 nor a token id");
      b.tokens.push_back(id);
      b.pos.push_back(int64_t(t));
      b.seq_begin.push_back(begin);
      const int32_t next = t + 1 < q.labels.size() ? q.labels[t + 1] : -100;
      b.targets.push_back(next == -100 ? -1 : next);
      if (next != -100) b.n_targets++;
    }
  }
  if (b.n_targets == 0) throw Error("the batch has no target tokens (every label after the first of each sequence is -100)");
  return b;
}

template <class F>
double dense_lora_loss(const DenseModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, LoraSet<F>* grads, ThreadPool& pool) {
  Runner<F> r(model, adapter, scale, b, pool);
  r.forward();
  return r.loss_and_backward(grads);
}

template <class F>
void dense_lora_token_losses(const DenseModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double* losses, ThreadPool& pool) {
  Runner<F> r(model, adapter, scale, b, pool);
  r.forward();
  r.token_losses(losses);
}

template <class F>
void dense_lora_logprobs(const DenseModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double temperature, double* logp,
                         double* entropy, const LogprobGrad* dloss, LoraSet<F>* grads, ThreadPool& pool, double* forward_seconds) {
  Runner<F> r(model, adapter, scale, b, pool);
  const auto t0 = std::chrono::steady_clock::now();
  r.forward();
  if (forward_seconds) *forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.logprobs_and_backward(logp, entropy, temperature, dloss, grads);
}

template <class F>
double dense_full_loss(const DenseModel& model, const PackedBatch& b, const WeightGrads<F>& grads, ThreadPool& pool) {
  Runner<F> r(model, nullptr, 0, b, pool, &grads);
  r.forward();
  return r.loss_and_backward(nullptr);
}

template double dense_full_loss<float>(const DenseModel&, const PackedBatch&, const WeightGrads<float>&, ThreadPool&);
template double dense_full_loss<double>(const DenseModel&, const PackedBatch&, const WeightGrads<double>&, ThreadPool&);
template void dense_lora_logprobs<float>(const DenseModel&, const LoraSet<float>*, double, const PackedBatch&, double, double*, double*, const LogprobGrad*,
                                         LoraSet<float>*, ThreadPool&, double*);
template void dense_lora_logprobs<double>(const DenseModel&, const LoraSet<double>*, double, const PackedBatch&, double, double*, double*,
                                          const LogprobGrad*, LoraSet<double>*, ThreadPool&, double*);
template void dense_lora_token_losses<float>(const DenseModel&, const LoraSet<float>*, double, const PackedBatch&, double*, ThreadPool&);
template double dense_lora_loss<float>(const DenseModel&, const LoraSet<float>*, double, const PackedBatch&, LoraSet<float>*, ThreadPool&);
template double dense_lora_loss<double>(const DenseModel&, const LoraSet<double>*, double, const PackedBatch&, LoraSet<double>*, ThreadPool&);

}  // namespace aha::train

namespace aha {

namespace {

template <class G, class F>
LoraSet<G> convert(const LoraSet<F>& s) {
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
  }
  return o;
}

template <class F>
LoraSet<F> zeros_like(const LoraSet<float>& s) {
  LoraSet<F> o = convert<F>(s);
  for (auto& p : o.mods) {
    std::fill(p.A.begin(), p.A.end(), F(0));
    std::fill(p.B.begin(), p.B.end(), F(0));
  }
  return o;
}

}  // namespace

LoraLossAndGrads lora_loss_and_grads(Model& model, const LoraAdapter& adapter, const std::vector<TrainSequence>& batch, GradPrecision precision,
                                     bool checkpoint_layers, uint64_t dropout_seed) {
  const train::LoraModel dm = train::LoraModel::of(model);
  const ModelConfig& c = dm.config();
  if (adapter.weights().n_layers != c.num_hidden_layers)
    throw Error("the adapter has " + std::to_string(adapter.weights().n_layers) + " layers, the model " + std::to_string(c.num_hidden_layers));
  train::PackedBatch b = train::pack_sequences(batch, c);
  b.checkpoint_layers = checkpoint_layers;
  if (dropout_seed) {
    b.lora_dropout = adapter.config().dropout;
    b.dropout_seed = dropout_seed;
  }
  LoraLossAndGrads out;
  out.target_tokens = b.n_targets;
  if (precision == GradPrecision::F64) {
    LoraSet<double> w = convert<double>(adapter.weights()), g = zeros_like<double>(adapter.weights());
    train::to_engine_order(w, c);
    out.loss = train::lora_loss<double>(dm, &w, adapter.scale(), b, &g, model.thread_pool());
    out.grads = std::move(g);
  } else {
    LoraSet<float> w = adapter.weights(), g = zeros_like<float>(adapter.weights());
    train::to_engine_order(w, c);
    out.loss = train::lora_loss<float>(dm, &w, adapter.scale(), b, &g, model.thread_pool());
    out.grads = convert<double>(g);
  }
  train::from_engine_order(out.grads, c);
  return out;
}

std::vector<std::vector<double>> completion_logprobs(Model& model, int adapter, const std::vector<ScoreSequence>& seqs) {
  const train::LoraModel dm = train::LoraModel::of(model);
  const ModelConfig& c = dm.config();
  std::vector<TrainSequence> batch;
  for (size_t i = 0; i < seqs.size(); i++) {
    const ScoreSequence& s = seqs[i];
    if (s.prompt.empty()) throw Error("scored sequence " + std::to_string(i) + " has an empty prompt");
    if (s.completion.empty()) throw Error("scored sequence " + std::to_string(i) + " has an empty completion");
    TrainSequence t;
    t.input_ids = s.prompt;
    t.input_ids.insert(t.input_ids.end(), s.completion.begin(), s.completion.end());
    t.labels.assign(s.prompt.size(), -100);
    t.labels.insert(t.labels.end(), s.completion.begin(), s.completion.end());
    batch.push_back(std::move(t));
  }
  train::PackedBatch b = train::pack_sequences(batch, c);
  LoraSet<float> w;
  double scale = 0;
  if (adapter != 0) {
    const LoraAdapter& a = model.adapter(adapter);
    w = a.weights();
    train::to_engine_order(w, c);
    scale = a.scale();
  }
  std::vector<double> losses(b.tokens.size());
  train::lora_token_losses<float>(dm, adapter != 0 ? &w : nullptr, scale, b, losses.data(), model.thread_pool());
  std::vector<std::vector<double>> out(seqs.size());
  size_t t0 = 0;
  for (size_t i = 0; i < seqs.size(); i++) {
    // completion token j is predicted at position prompt.size() − 1 + j
    const size_t p = seqs[i].prompt.size();
    for (size_t j = 0; j < seqs[i].completion.size(); j++) out[i].push_back(-losses[t0 + p - 1 + j]);
    t0 += p + seqs[i].completion.size();
  }
  return out;
}

}  // namespace aha
