// Train-mode forward and backward of the deepseek family under LoRA (see train/lora_model.h):
// MLA in its expanded form (every token's per-head K and V rebuilt from its latent by kv_b_proj,
// which is what gradients flow through), MoE with the routed experts frozen and the gradient
// through the selected experts' routing weights into the router's input (the selection itself
// is discrete), shared experts and the dense first layers adaptable.
// One block per function pair, in the order of the inference forward (models/deepseek.cpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "aha/error.h"
#include "train/lora_linears.h"
#include "train/lora_model.h"
#include "train/ops.h"

namespace aha::train {

namespace {

constexpr int64_t kLogitChunk = 64;  // rows of logits [kLogitChunk, vocab] held at once

// What one layer's backward reads.
template <class F>
struct DsSaved {
  std::vector<F> x, rstd1, xn1;                // [T, H] residual stream entering the layer; attn_norm
  std::vector<F> qa, xa_qa, rstd_qa, qan, xa_qb;  // with q_lora_rank: q_a_proj's output, q_a_layernorm
  std::vector<F> q, xa_q;                      // [T, n_heads * qk]: q_proj's (or q_b_proj's) output
  std::vector<F> kva, xa_kva;                  // [T, kv_lora_rank + rope]: kv_a_proj_with_mqa's output
  std::vector<F> rstd_c, c;                    // kv_a_layernorm of the latent: [T], [T, kv_lora_rank]
  std::vector<F> kv, xa_kvb;                   // [T, n_heads * (nope + v)]: kv_b_proj's output
  std::vector<F> qf, kf, vf, outp, lse;        // attention's operands, heads padded to D = max(qk, v)
  std::vector<F> attn, xa_o;                   // [T, n_heads * v]
  std::vector<F> x_mid, rstd2, xn2;            // after the attention block; ffn_norm
  std::vector<F> gate, up, h, xa_gate, xa_up, xa_down;  // dense FFN or the shared experts
  std::vector<F> scores, topk_w;               // [T, E] softmax/sigmoid scores; [T, K] routing weights
  std::vector<int32_t> topk_i;                 // [T, K]
  std::vector<std::vector<int64_t>> slots;     // per routed expert: the (t·K + k) slots routed to it
  std::vector<std::vector<F>> eg, eu, eh, eo;  // per routed expert: gate, up, silu(gate)·up, its output
  std::vector<std::vector<F>> xa_gu, xa_d;     // per routed expert: x Aₑᵀ of its gate_up and down adapters
};

// A dims-only descriptor of a product [rows, in] → [rows, out] (lora_linear_backward with base
// false reads only the shape of W).
inline Tensor shape_of(int64_t in, int64_t out) {
  Tensor t;
  t.dtype = DType::F32;
  t.ne = {in, out};
  t.row_bytes = size_t(in) * 4;
  return t;
}

template <class F>
class DsRunner : LoraLinears<F> {
  using B = LoraLinears<F>;
  using B::b_, B::pool_, B::T_, B::r_, B::scale_, B::mm_, B::lora, B::linear, B::linear_backward;

 public:
  DsRunner(const DeepseekModel& m, const LoraSet<F>* ad, double scale, const PackedBatch& b, ThreadPool& pool)
      : B(ad, scale, b, pool, nullptr), m_(m), c_(m.config()), d_(c_.deepseek) {
    const int64_t qk = d_.qk_nope_head_dim + d_.qk_rope_head_dim;
    D_ = std::max(qk, d_.v_head_dim);
    // attention_forward divides by sqrt(D); DeepSeek's scale (YaRN-corrected) goes onto q.
    qs_ = double(m.softmax_scale()) * std::sqrt(double(D_));
  }

  void forward() {
    const int64_t H = c_.hidden_size;
    std::vector<F> x(size_t(T_ * H));
    embedding_forward(x.data(), b_.tokens.data(), m_.tok_embd(), T_);
    saved_.resize(size_t(c_.num_hidden_layers));
    for (int64_t l = 0; l < c_.num_hidden_layers; l++) {
      layer_forward(l, x);
      if (b_.checkpoint_layers) {
        std::vector<F> in = std::move(saved_[size_t(l)].x);
        saved_[size_t(l)] = DsSaved<F>();
        saved_[size_t(l)].x = std::move(in);
      }
    }
    xf_ = std::move(x);
    rstdf_.resize(size_t(T_));
    xnf_.resize(size_t(T_ * H));
    rmsnorm_forward(xnf_.data(), rstdf_.data(), xf_.data(), f32(&m_.output_norm()), T_, H, c_.rms_norm_eps);
  }

  double loss_and_backward(LoraSet<F>* grads) {
    const double inv_n = 1.0 / double(b_.n_targets);
    std::vector<F> dxnf(grads ? size_t(T_ * c_.hidden_size) : 0);
    const double loss = inv_n * lm_head_cross_entropy(grads ? dxnf.data() : nullptr, static_cast<F*>(nullptr), nullptr, xnf_.data(), m_.output(),
                                                      b_.targets.data(), T_, inv_n, kLogitChunk, &pool_);
    if (grads) backward(dxnf, grads);
    return loss;
  }

  void logprobs_and_backward(double* logp, double* entropy, double temperature, const LogprobGrad* dloss, LoraSet<F>* grads) {
    std::vector<F> dxnf(grads ? size_t(T_ * c_.hidden_size) : 0);
    lm_head_logprobs(grads ? dxnf.data() : nullptr, static_cast<F*>(nullptr), logp, entropy, xnf_.data(), m_.output(), b_.targets.data(), T_,
                     temperature, dloss, kLogitChunk, &pool_);
    if (grads) backward(dxnf, grads);
  }

  void token_losses(double* losses) {
    lm_head_cross_entropy<F>(nullptr, nullptr, losses, xnf_.data(), m_.output(), b_.targets.data(), T_, 1.0, kLogitChunk, &pool_);
  }

 private:
  void layer_forward(int64_t l, std::vector<F>& x) {
    attention_forward_block(l, x);
    if (d_.is_moe_layer(l)) moe_forward_block(l, x);
    else ffn_forward_block(l, x);
  }

  void backward(const std::vector<F>& dxnf, LoraSet<F>* g) {
    const int64_t H = c_.hidden_size;
    std::vector<F> dx(size_t(T_ * H));
    rmsnorm_backward(dx.data(), static_cast<F*>(nullptr), dxnf.data(), xf_.data(), rstdf_.data(), f32(&m_.output_norm()), T_, H);
    for (int64_t l = c_.num_hidden_layers - 1; l >= 0; l--) {
      if (b_.checkpoint_layers) {  // the same forward again, from the layer's saved input
        std::vector<F> x = saved_[size_t(l)].x;
        layer_forward(l, x);
      }
      if (d_.is_moe_layer(l)) moe_backward_block(l, dx, g);
      else ffn_backward_block(l, dx, g);
      attention_backward_block(l, dx, g);
      if (b_.checkpoint_layers) saved_[size_t(l)] = DsSaved<F>();
    }
  }

  // y[rows, out] = x Wᵀ for a frozen weight without an adapter (the routed experts, the router).
  void product(F* y, const F* x, const Tensor& W, int64_t rows) {
    if constexpr (std::is_same_v<F, float>) matmul(W, x, rows, y, pool_, mm_);
    else lora_linear_forward<F>(y, nullptr, x, W, nullptr, nullptr, nullptr, 0.0, rows, 0, &pool_);
  }

  // The latent part of kv_a_proj's output rows: [T, kv_lora_rank].
  std::vector<F> latent_of(const std::vector<F>& kva) const {
    const int64_t r = d_.kv_lora_rank, KVA = r + d_.qk_rope_head_dim;
    std::vector<F> c(size_t(T_ * r));
    for (int64_t t = 0; t < T_; t++) std::copy(kva.begin() + t * KVA, kva.begin() + t * KVA + r, c.begin() + t * r);
    return c;
  }

  void attention_forward_block(int64_t l, std::vector<F>& x) {
    const DeepseekLayer& L = m_.layer(l);
    DsSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size, nh = c_.num_attention_heads, nope = d_.qk_nope_head_dim, rope = d_.qk_rope_head_dim, qk = nope + rope;
    const int64_t vd = d_.v_head_dim, r = d_.kv_lora_rank, KVA = r + rope, KVB = nh * (nope + vd), D = D_;
    const bool neox = !d_.rope_interleave;
    const F m = F(m_.rope_attention_factor());
    S.x = x;
    S.rstd1.resize(size_t(T_));
    S.xn1.resize(size_t(T_ * H));
    rmsnorm_forward(S.xn1.data(), S.rstd1.data(), x.data(), f32(L.attn_norm), T_, H, c_.rms_norm_eps);
    if (L.wq) {
      linear(S.q, S.xa_q, S.xn1, *L.wq, nullptr, l, LoraTarget::QProj);
    } else {
      const int64_t qr = d_.q_lora_rank;
      linear(S.qa, S.xa_qa, S.xn1, *L.wq_a, nullptr, l, LoraTarget::QAProj);
      S.rstd_qa.resize(size_t(T_));
      S.qan.resize(size_t(T_ * qr));
      rmsnorm_forward(S.qan.data(), S.rstd_qa.data(), S.qa.data(), f32(L.q_a_norm), T_, qr, DeepseekModel::kMlaNormEps);
      linear(S.q, S.xa_qb, S.qan, *L.wq_b, nullptr, l, LoraTarget::QBProj);
    }
    linear(S.kva, S.xa_kva, S.xn1, *L.wkv_a, nullptr, l, LoraTarget::KvAProj);
    S.rstd_c.resize(size_t(T_));
    S.c.resize(size_t(T_ * r));
    rmsnorm_forward(S.c.data(), S.rstd_c.data(), latent_of(S.kva).data(), f32(L.kv_a_norm), T_, r, DeepseekModel::kMlaNormEps);
    linear(S.kv, S.xa_kvb, S.c, *L.wkv_b, nullptr, l, LoraTarget::KvBProj);

    // RoPE on the query heads' rope parts and on the one shared k_pe, times YaRN's attention factor.
    std::vector<F> qpe(size_t(T_ * nh * rope)), kpe(size_t(T_ * rope));
    for (int64_t t = 0; t < T_; t++) {
      for (int64_t h = 0; h < nh; h++)
        std::copy_n(S.q.begin() + t * nh * qk + h * qk + nope, rope, qpe.begin() + (t * nh + h) * rope);
      std::copy_n(S.kva.begin() + t * KVA + r, rope, kpe.begin() + t * rope);
    }
    rope_forward(qpe.data(), qpe.data(), b_.pos.data(), m_.inv_freq().data(), T_, nh, rope, neox);
    rope_forward(kpe.data(), kpe.data(), b_.pos.data(), m_.inv_freq().data(), T_, 1, rope, neox);
    // Q = [q_nope | m·rope(q_pe)]·qs, K = [k_nope | m·rope(k_pe)], V = v, each head zero-padded to D.
    S.qf.assign(size_t(T_ * nh * D), F(0));
    S.kf.assign(S.qf.size(), F(0));
    S.vf.assign(S.qf.size(), F(0));
    const F qs = F(qs_);
    for (int64_t t = 0; t < T_; t++)
      for (int64_t h = 0; h < nh; h++) {
        F* qo = S.qf.data() + (t * nh + h) * D;
        F* ko = S.kf.data() + (t * nh + h) * D;
        F* vo = S.vf.data() + (t * nh + h) * D;
        const F* qi = S.q.data() + t * nh * qk + h * qk;
        const F* kvi = S.kv.data() + t * KVB + h * (nope + vd);
        for (int64_t i = 0; i < nope; i++) qo[i] = qi[i] * qs, ko[i] = kvi[i];
        for (int64_t i = 0; i < rope; i++) qo[nope + i] = qpe[size_t((t * nh + h) * rope + i)] * m * qs, ko[nope + i] = kpe[size_t(t * rope + i)] * m;
        for (int64_t i = 0; i < vd; i++) vo[i] = kvi[nope + i];
      }
    S.outp.resize(S.qf.size());
    S.lse.resize(size_t(nh * T_));
    attention_forward(S.outp.data(), S.lse.data(), S.qf.data(), S.kf.data(), S.vf.data(), b_.seq_begin.data(), T_, nh, nh, D, &pool_);
    S.attn.resize(size_t(T_ * nh * vd));
    for (int64_t t = 0; t < T_; t++)
      for (int64_t h = 0; h < nh; h++) std::copy_n(S.outp.begin() + (t * nh + h) * D, vd, S.attn.begin() + (t * nh + h) * vd);
    std::vector<F> proj;
    linear(proj, S.xa_o, S.attn, *L.wo, nullptr, l, LoraTarget::OProj);
    for (size_t i = 0; i < x.size(); i++) x[i] += proj[i];
    S.x_mid = x;
  }

  void attention_backward_block(int64_t l, std::vector<F>& dx, LoraSet<F>* g) {
    const DeepseekLayer& L = m_.layer(l);
    const DsSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size, nh = c_.num_attention_heads, nope = d_.qk_nope_head_dim, rope = d_.qk_rope_head_dim, qk = nope + rope;
    const int64_t vd = d_.v_head_dim, r = d_.kv_lora_rank, KVA = r + rope, KVB = nh * (nope + vd), D = D_;
    const bool neox = !d_.rope_interleave;
    const F m = F(m_.rope_attention_factor()), qs = F(qs_);
    std::vector<F> dattn(S.attn.size());
    linear_backward(dattn.data(), dx, S.attn, S.xa_o, *L.wo, nullptr, l, LoraTarget::OProj, g);
    std::vector<F> doutp(S.outp.size(), F(0)), dqf(S.qf.size()), dkf(S.kf.size()), dvf(S.vf.size());
    for (int64_t t = 0; t < T_; t++)
      for (int64_t h = 0; h < nh; h++) std::copy_n(dattn.begin() + (t * nh + h) * vd, vd, doutp.begin() + (t * nh + h) * D);
    attention_backward(dqf.data(), dkf.data(), dvf.data(), doutp.data(), S.outp.data(), S.lse.data(), S.qf.data(), S.kf.data(), S.vf.data(),
                       b_.seq_begin.data(), T_, nh, nh, D, &pool_);
    // Back through the padding, the scales and the two RoPEs (k_pe is shared: its heads' gradients add).
    std::vector<F> dq(S.q.size()), dkv(S.kv.size()), dqpe(size_t(T_ * nh * rope)), dkpe(size_t(T_ * rope), F(0));
    for (int64_t t = 0; t < T_; t++)
      for (int64_t h = 0; h < nh; h++) {
        const F* gq = dqf.data() + (t * nh + h) * D;
        const F* gk = dkf.data() + (t * nh + h) * D;
        const F* gv = dvf.data() + (t * nh + h) * D;
        F* oq = dq.data() + t * nh * qk + h * qk;
        F* okv = dkv.data() + t * KVB + h * (nope + vd);
        for (int64_t i = 0; i < nope; i++) oq[i] = gq[i] * qs, okv[i] = gk[i];
        for (int64_t i = 0; i < rope; i++) dqpe[size_t((t * nh + h) * rope + i)] = gq[nope + i] * qs * m, dkpe[size_t(t * rope + i)] += gk[nope + i] * m;
        for (int64_t i = 0; i < vd; i++) okv[nope + i] = gv[i];
      }
    rope_backward(dqpe.data(), dqpe.data(), b_.pos.data(), m_.inv_freq().data(), T_, nh, rope, neox);
    rope_backward(dkpe.data(), dkpe.data(), b_.pos.data(), m_.inv_freq().data(), T_, 1, rope, neox);
    for (int64_t t = 0; t < T_; t++)
      for (int64_t h = 0; h < nh; h++) std::copy_n(dqpe.begin() + (t * nh + h) * rope, rope, dq.begin() + t * nh * qk + h * qk + nope);
    // kv_b_proj, kv_a_layernorm: d kv_a_proj's output = [d latent | d k_pe].
    std::vector<F> dc(S.c.size()), dcr(S.c.size()), dkva(S.kva.size());
    linear_backward(dc.data(), dkv, S.c, S.xa_kvb, *L.wkv_b, nullptr, l, LoraTarget::KvBProj, g);
    rmsnorm_backward(dcr.data(), static_cast<F*>(nullptr), dc.data(), latent_of(S.kva).data(), S.rstd_c.data(), f32(L.kv_a_norm), T_, r);
    for (int64_t t = 0; t < T_; t++) {
      std::copy_n(dcr.begin() + t * r, r, dkva.begin() + t * KVA);
      std::copy_n(dkpe.begin() + t * rope, rope, dkva.begin() + t * KVA + r);
    }
    // Under LoRA the first layer's input is the frozen embedding: no gradient flows further.
    const bool need_dx = l > 0;
    std::vector<F> dxn(need_dx ? size_t(T_ * H) : 0), tmp(need_dx ? size_t(T_ * H) : 0);
    linear_backward(need_dx ? dxn.data() : nullptr, dkva, S.xn1, S.xa_kva, *L.wkv_a, nullptr, l, LoraTarget::KvAProj, g);
    if (L.wq) {
      linear_backward(need_dx ? tmp.data() : nullptr, dq, S.xn1, S.xa_q, *L.wq, nullptr, l, LoraTarget::QProj, g);
    } else {
      std::vector<F> dqan(S.qan.size()), dqa(S.qa.size());
      linear_backward(dqan.data(), dq, S.qan, S.xa_qb, *L.wq_b, nullptr, l, LoraTarget::QBProj, g);
      rmsnorm_backward(dqa.data(), static_cast<F*>(nullptr), dqan.data(), S.qa.data(), S.rstd_qa.data(), f32(L.q_a_norm), T_, d_.q_lora_rank);
      linear_backward(need_dx ? tmp.data() : nullptr, dqa, S.xn1, S.xa_qa, *L.wq_a, nullptr, l, LoraTarget::QAProj, g);
    }
    if (!need_dx) return;
    for (size_t i = 0; i < dxn.size(); i++) dxn[i] += tmp[i];
    rmsnorm_backward(tmp.data(), static_cast<F*>(nullptr), dxn.data(), S.x.data(), S.rstd1.data(), f32(L.attn_norm), T_, H);
    for (size_t i = 0; i < dx.size(); i++) dx[i] += tmp[i];
  }

  // SwiGLU MLP with adaptable projections (a dense layer's, or the shared experts'): returns its output.
  std::vector<F> mlp_forward(int64_t l, DsSaved<F>& S, const Tensor& wg, const Tensor& wu, const Tensor& wd, LoraTarget tg, LoraTarget tu,
                             LoraTarget td) {
    linear(S.gate, S.xa_gate, S.xn2, wg, nullptr, l, tg);
    linear(S.up, S.xa_up, S.xn2, wu, nullptr, l, tu);
    S.h.resize(S.gate.size());
    swiglu_forward(S.h.data(), S.gate.data(), S.up.data(), int64_t(S.h.size()));
    std::vector<F> out;
    linear(out, S.xa_down, S.h, wd, nullptr, l, td);
    return out;
  }

  // dxn2 += d(MLP output)/d xn2 · dy, LoRA gradients into g.
  void mlp_backward(int64_t l, const DsSaved<F>& S, const std::vector<F>& dy, std::vector<F>& dxn2, const Tensor& wg, const Tensor& wu,
                    const Tensor& wd, LoraTarget tg, LoraTarget tu, LoraTarget td, LoraSet<F>* g) {
    std::vector<F> dh(S.h.size()), dgate(S.h.size()), dup(S.h.size()), tmp(dxn2.size());
    linear_backward(dh.data(), dy, S.h, S.xa_down, wd, nullptr, l, td, g);
    swiglu_backward(dgate.data(), dup.data(), dh.data(), S.gate.data(), S.up.data(), int64_t(dh.size()));
    linear_backward(tmp.data(), dgate, S.xn2, S.xa_gate, wg, nullptr, l, tg, g);
    for (size_t i = 0; i < tmp.size(); i++) dxn2[i] += tmp[i];
    linear_backward(tmp.data(), dup, S.xn2, S.xa_up, wu, nullptr, l, tu, g);
    for (size_t i = 0; i < tmp.size(); i++) dxn2[i] += tmp[i];
  }

  void ffn_norm_forward(const DeepseekLayer& L, DsSaved<F>& S, const std::vector<F>& x) {
    const int64_t H = c_.hidden_size;
    S.rstd2.resize(size_t(T_));
    S.xn2.resize(size_t(T_ * H));
    rmsnorm_forward(S.xn2.data(), S.rstd2.data(), x.data(), f32(L.ffn_norm), T_, H, c_.rms_norm_eps);
  }

  void ffn_norm_backward(const DeepseekLayer& L, const DsSaved<F>& S, const std::vector<F>& dxn2, std::vector<F>& dx) {
    std::vector<F> tmp(dx.size());
    rmsnorm_backward(tmp.data(), static_cast<F*>(nullptr), dxn2.data(), S.x_mid.data(), S.rstd2.data(), f32(L.ffn_norm), T_, c_.hidden_size);
    for (size_t i = 0; i < dx.size(); i++) dx[i] += tmp[i];
  }

  void ffn_forward_block(int64_t l, std::vector<F>& x) {
    const DeepseekLayer& L = m_.layer(l);
    DsSaved<F>& S = saved_[size_t(l)];
    ffn_norm_forward(L, S, x);
    const std::vector<F> y = mlp_forward(l, S, *L.w_gate, *L.w_up, *L.w_down, LoraTarget::GateProj, LoraTarget::UpProj, LoraTarget::DownProj);
    for (size_t i = 0; i < x.size(); i++) x[i] += y[i];
  }

  void ffn_backward_block(int64_t l, std::vector<F>& dx, LoraSet<F>* g) {
    const DeepseekLayer& L = m_.layer(l);
    const DsSaved<F>& S = saved_[size_t(l)];
    std::vector<F> dxn2(dx.size(), F(0));
    mlp_backward(l, S, dx, dxn2, *L.w_gate, *L.w_up, *L.w_down, LoraTarget::GateProj, LoraTarget::UpProj, LoraTarget::DownProj, g);
    ffn_norm_backward(L, S, dxn2, dx);
  }

  // The gate: scores over every expert, the selection as inference makes it (MoeGate::route on the
  // f32 logits), the routing weights recomputed from the scores in F so that they differentiate.
  void route(const DeepseekLayer& L, DsSaved<F>& S) {
    const int64_t E = d_.n_routed_experts, K = L.gate.top_k;
    std::vector<F> logits(size_t(T_ * E));
    product(logits.data(), S.xn2.data(), *L.gate_inp, T_);
    std::vector<float> lf(logits.begin(), logits.end()), wf(size_t(T_ * K));
    S.topk_i.resize(size_t(T_ * K));
    L.gate.route(lf.data(), T_, wf.data(), S.topk_i.data());
    S.scores.resize(logits.size());
    S.topk_w.resize(size_t(T_ * K));
    for (int64_t t = 0; t < T_; t++) {
      const F* lg = logits.data() + t * E;
      F* s = S.scores.data() + t * E;
      if (L.gate.scoring == DeepseekConfig::Scoring::Softmax) {
        const F mx = *std::max_element(lg, lg + E);
        F sum = 0;
        for (int64_t e = 0; e < E; e++) sum += (s[e] = F(std::exp(lg[e] - mx)));
        for (int64_t e = 0; e < E; e++) s[e] /= sum;
      } else {
        for (int64_t e = 0; e < E; e++) s[e] = F(1) / (F(1) + F(std::exp(-lg[e])));
      }
      F sum = 0;
      for (int64_t k = 0; k < K; k++) sum += s[S.topk_i[size_t(t * K + k)]];
      const F denom = L.gate.norm_topk_prob && K > 1 ? sum + F(1e-20) : F(1);
      for (int64_t k = 0; k < K; k++) S.topk_w[size_t(t * K + k)] = s[S.topk_i[size_t(t * K + k)]] / denom * F(L.gate.routed_scaling_factor);
    }
  }

  void moe_forward_block(int64_t l, std::vector<F>& x) {
    const DeepseekLayer& L = m_.layer(l);
    DsSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size, E = d_.n_routed_experts, K = L.gate.top_k;
    ffn_norm_forward(L, S, x);
    route(L, S);
    S.slots.assign(size_t(E), {});
    for (int64_t i = 0; i < T_ * K; i++) S.slots[size_t(S.topk_i[size_t(i)])].push_back(i);
    S.eg.assign(size_t(E), {});
    S.eu.assign(size_t(E), {});
    S.eh.assign(size_t(E), {});
    S.eo.assign(size_t(E), {});
    S.xa_gu.assign(size_t(E), {});
    S.xa_d.assign(size_t(E), {});
    const LoraPair<F>* pgu = lora(l, LoraTarget::ExpertsGateUp);
    const LoraPair<F>* pd = lora(l, LoraTarget::ExpertsDown);
    std::vector<F> out(x.size(), F(0));
    for (int64_t e = 0; e < E; e++) {
      const auto& sl = S.slots[size_t(e)];
      if (sl.empty()) continue;
      const int64_t n = int64_t(sl.size()), FF = L.exp_gate[size_t(e)]->rows();
      std::vector<F> xe(size_t(n * H));
      for (int64_t i = 0; i < n; i++) std::copy_n(S.xn2.begin() + (sl[size_t(i)] / K) * H, H, xe.begin() + i * H);
      auto& g = S.eg[size_t(e)], &u = S.eu[size_t(e)], &h = S.eh[size_t(e)], &o = S.eo[size_t(e)];
      g.resize(size_t(n * FF));
      u.resize(g.size());
      h.resize(g.size());
      o.resize(size_t(n * H));
      product(g.data(), xe.data(), *L.exp_gate[size_t(e)], n);
      product(u.data(), xe.data(), *L.exp_up[size_t(e)], n);
      if (pgu) {  // one adapter over the fused [gate | up] rows, as transformers stores them
        std::vector<F> be(size_t(2 * FF * r_)), gu(size_t(n * 2 * FF), F(0));
        lora_expert_b(*pgu, r_, e, be.data());
        S.xa_gu[size_t(e)].resize(size_t(n * r_));
        lora_add<F>(gu.data(), S.xa_gu[size_t(e)].data(), xe.data(), pgu->A.data() + e * r_ * H, be.data(), scale_, n, H, 2 * FF, r_, &pool_);
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j < FF; j++) g[size_t(i * FF + j)] += gu[size_t(i * 2 * FF + j)], u[size_t(i * FF + j)] += gu[size_t(i * 2 * FF + FF + j)];
      }
      swiglu_forward(h.data(), g.data(), u.data(), int64_t(h.size()));
      product(o.data(), h.data(), *L.exp_down[size_t(e)], n);
      if (pd) {
        std::vector<F> be(size_t(H * r_));
        lora_expert_b(*pd, r_, e, be.data());
        S.xa_d[size_t(e)].resize(size_t(n * r_));
        lora_add<F>(o.data(), S.xa_d[size_t(e)].data(), h.data(), pd->A.data() + e * r_ * FF, be.data(), scale_, n, FF, H, r_, &pool_);
      }
      for (int64_t i = 0; i < n; i++) {
        const int64_t t = sl[size_t(i)] / K;
        const F w = S.topk_w[size_t(sl[size_t(i)])];
        for (int64_t j = 0; j < H; j++) out[size_t(t * H + j)] += w * o[size_t(i * H + j)];
      }
    }
    if (L.sh_gate) {
      const std::vector<F> y = mlp_forward(l, S, *L.sh_gate, *L.sh_up, *L.sh_down, LoraTarget::SharedGate, LoraTarget::SharedUp, LoraTarget::SharedDown);
      for (size_t i = 0; i < out.size(); i++) out[i] += y[i];
    }
    for (size_t i = 0; i < x.size(); i++) x[i] += out[i];
  }

  void moe_backward_block(int64_t l, std::vector<F>& dx, LoraSet<F>* g) {
    const DeepseekLayer& L = m_.layer(l);
    const DsSaved<F>& S = saved_[size_t(l)];
    const int64_t H = c_.hidden_size, E = d_.n_routed_experts, K = L.gate.top_k;
    std::vector<F> dxn2(dx.size(), F(0)), dw(size_t(T_ * K), F(0));
    if (L.sh_gate)
      mlp_backward(l, S, dx, dxn2, *L.sh_gate, *L.sh_up, *L.sh_down, LoraTarget::SharedGate, LoraTarget::SharedUp, LoraTarget::SharedDown, g);
    // Routed experts (frozen, or adapted): d routing weight = dy · the expert's output; the input
    // gradient through down, SwiGLU, gate and up, scattered back to the tokens.
    const LoraPair<F>* pgu = lora(l, LoraTarget::ExpertsGateUp);
    const LoraPair<F>* pd = lora(l, LoraTarget::ExpertsDown);
    LoraPair<F>* ggu = pgu && g ? g->find(l, LoraTarget::ExpertsGateUp) : nullptr;
    LoraPair<F>* gd = pd && g ? g->find(l, LoraTarget::ExpertsDown) : nullptr;
    for (int64_t e = 0; e < E; e++) {
      const auto& sl = S.slots[size_t(e)];
      if (sl.empty()) continue;
      const int64_t n = int64_t(sl.size()), FF = L.exp_gate[size_t(e)]->rows();
      const auto &gt = S.eg[size_t(e)], &u = S.eu[size_t(e)], &o = S.eo[size_t(e)];
      std::vector<F> dy(size_t(n * H)), dh(size_t(n * FF)), dg(dh.size()), du(dh.size()), dxe(size_t(n * H)), tmp(size_t(n * H));
      for (int64_t i = 0; i < n; i++) {
        const int64_t t = sl[size_t(i)] / K;
        const F w = S.topk_w[size_t(sl[size_t(i)])];
        F dot = 0;
        for (int64_t j = 0; j < H; j++) {
          dy[size_t(i * H + j)] = w * dx[size_t(t * H + j)];
          dot += dx[size_t(t * H + j)] * o[size_t(i * H + j)];
        }
        dw[size_t(sl[size_t(i)])] = dot;
      }
      matmul_backward_input(dh.data(), dy.data(), *L.exp_down[size_t(e)], n, &pool_);
      if (pd) {
        std::vector<F> be(size_t(H * r_)), gb(size_t(H * r_), F(0));
        lora_expert_b(*pd, r_, e, be.data());
        lora_linear_backward<F>(dh.data(), gd ? gd->A.data() + e * r_ * FF : nullptr, gd ? gb.data() : nullptr, dy.data(), S.eh[size_t(e)].data(),
                                S.xa_d[size_t(e)].data(), shape_of(FF, H), pd->A.data() + e * r_ * FF, be.data(), scale_, n, r_, &pool_, false);
        if (gd) lora_expert_b_add(*gd, r_, e, gb.data());
      }
      swiglu_backward(dg.data(), du.data(), dh.data(), gt.data(), u.data(), int64_t(dh.size()));
      matmul_backward_input(dxe.data(), dg.data(), *L.exp_gate[size_t(e)], n, &pool_);
      matmul_backward_input(tmp.data(), du.data(), *L.exp_up[size_t(e)], n, &pool_);
      if (pgu) {
        std::vector<F> be(size_t(2 * FF * r_)), gb(be.size(), F(0)), dgu(size_t(n * 2 * FF)), xe(size_t(n * H));
        lora_expert_b(*pgu, r_, e, be.data());
        for (int64_t i = 0; i < n; i++) {
          std::copy_n(dg.begin() + i * FF, FF, dgu.begin() + i * 2 * FF);
          std::copy_n(du.begin() + i * FF, FF, dgu.begin() + i * 2 * FF + FF);
          std::copy_n(S.xn2.begin() + (sl[size_t(i)] / K) * H, H, xe.begin() + i * H);
        }
        lora_linear_backward<F>(dxe.data(), ggu ? ggu->A.data() + e * r_ * H : nullptr, ggu ? gb.data() : nullptr, dgu.data(), xe.data(),
                                S.xa_gu[size_t(e)].data(), shape_of(H, 2 * FF), pgu->A.data() + e * r_ * H, be.data(), scale_, n, r_, &pool_, false);
        if (ggu) lora_expert_b_add(*ggu, r_, e, gb.data());
      }
      for (int64_t i = 0; i < n; i++) {
        const int64_t t = sl[size_t(i)] / K;
        for (int64_t j = 0; j < H; j++) dxn2[size_t(t * H + j)] += dxe[size_t(i * H + j)] + tmp[size_t(i * H + j)];
      }
    }
    // Routing weights w_k = rsf · s_k / Σ (normalized) or rsf · s_k → scores → logits → xn2.
    std::vector<F> dlogits(size_t(T_ * E), F(0));
    const F rsf = F(L.gate.routed_scaling_factor);
    for (int64_t t = 0; t < T_; t++) {
      const F* s = S.scores.data() + t * E;
      const int32_t* idx = S.topk_i.data() + t * K;
      const F* gw = dw.data() + t * K;
      std::vector<F> ds(size_t(E), F(0));
      if (L.gate.norm_topk_prob && K > 1) {
        F sum = 0, dot = 0;
        for (int64_t k = 0; k < K; k++) sum += s[idx[k]];
        const F denom = sum + F(1e-20);
        for (int64_t k = 0; k < K; k++) dot += gw[k] * s[idx[k]];
        for (int64_t k = 0; k < K; k++) ds[size_t(idx[k])] = rsf * (gw[k] / denom - dot / (denom * denom));
      } else {
        for (int64_t k = 0; k < K; k++) ds[size_t(idx[k])] = rsf * gw[k];
      }
      F* dl = dlogits.data() + t * E;
      if (L.gate.scoring == DeepseekConfig::Scoring::Softmax) {
        F dot = 0;
        for (int64_t e = 0; e < E; e++) dot += ds[size_t(e)] * s[e];
        for (int64_t e = 0; e < E; e++) dl[e] = s[e] * (ds[size_t(e)] - dot);
      } else {
        for (int64_t e = 0; e < E; e++) dl[e] = ds[size_t(e)] * s[e] * (F(1) - s[e]);
      }
    }
    std::vector<F> tmp(dxn2.size());
    matmul_backward_input(tmp.data(), dlogits.data(), *L.gate_inp, T_, &pool_);
    for (size_t i = 0; i < tmp.size(); i++) dxn2[i] += tmp[i];
    ffn_norm_backward(L, S, dxn2, dx);
  }

  const DeepseekModel& m_;
  const ModelConfig& c_;
  const DeepseekConfig& d_;
  int64_t D_ = 0;   // attention's head width: max(qk_nope + qk_rope, v_head_dim)
  double qs_ = 1;   // what q is multiplied by so that attention's 1/sqrt(D) becomes DeepSeek's softmax scale
  std::vector<DsSaved<F>> saved_;
  std::vector<F> xf_, rstdf_, xnf_;
};

}  // namespace

template <class F>
double deepseek_lora_loss(const DeepseekModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, LoraSet<F>* grads, ThreadPool& pool) {
  DsRunner<F> r(model, adapter, scale, b, pool);
  r.forward();
  return r.loss_and_backward(grads);
}

template <class F>
void deepseek_lora_token_losses(const DeepseekModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double* losses,
                                ThreadPool& pool) {
  DsRunner<F> r(model, adapter, scale, b, pool);
  r.forward();
  r.token_losses(losses);
}

template <class F>
void deepseek_lora_logprobs(const DeepseekModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double temperature,
                            double* logp, double* entropy, const LogprobGrad* dloss, LoraSet<F>* grads, ThreadPool& pool, double* forward_seconds) {
  DsRunner<F> r(model, adapter, scale, b, pool);
  const auto t0 = std::chrono::steady_clock::now();
  r.forward();
  if (forward_seconds) *forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.logprobs_and_backward(logp, entropy, temperature, dloss, grads);
}

LoraModel LoraModel::of(Model& m) {
  LoraModel lm;
  lm.dense = m.dense_model_if();
  lm.deepseek = m.deepseek_model_if();
  if (!lm.dense && !lm.deepseek) throw Error(std::string("LoRA training is not supported for ") + m.info().architecture + " models");
  if (lm.deepseek && !lm.deepseek->has_expanded_form())
    throw Error("training a DeepSeek model runs MLA in its expanded form, which needs attn_kv_b; this file stores only attn_k_b / attn_v_b "
                "(convert it from the HF checkpoint with kv_b_proj kept whole)");
  return lm;
}

template <class F>
double lora_loss(const LoraModel& m, const LoraSet<F>* adapter, double scale, const PackedBatch& b, LoraSet<F>* grads, ThreadPool& pool) {
  return m.dense ? dense_lora_loss<F>(*m.dense, adapter, scale, b, grads, pool) : deepseek_lora_loss<F>(*m.deepseek, adapter, scale, b, grads, pool);
}

template <class F>
void lora_token_losses(const LoraModel& m, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double* losses, ThreadPool& pool) {
  if (m.dense) dense_lora_token_losses<F>(*m.dense, adapter, scale, b, losses, pool);
  else deepseek_lora_token_losses<F>(*m.deepseek, adapter, scale, b, losses, pool);
}

template <class F>
void lora_logprobs(const LoraModel& m, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double temperature, double* logp, double* entropy,
                   const LogprobGrad* dloss, LoraSet<F>* grads, ThreadPool& pool, double* forward_seconds) {
  if (m.dense) dense_lora_logprobs<F>(*m.dense, adapter, scale, b, temperature, logp, entropy, dloss, grads, pool, forward_seconds);
  else deepseek_lora_logprobs<F>(*m.deepseek, adapter, scale, b, temperature, logp, entropy, dloss, grads, pool, forward_seconds);
}

#define AHA_INSTANTIATE(F)                                                                                                                    \
  template double deepseek_lora_loss<F>(const DeepseekModel&, const LoraSet<F>*, double, const PackedBatch&, LoraSet<F>*, ThreadPool&);       \
  template void deepseek_lora_logprobs<F>(const DeepseekModel&, const LoraSet<F>*, double, const PackedBatch&, double, double*, double*,      \
                                          const LogprobGrad*, LoraSet<F>*, ThreadPool&, double*);                                             \
  template double lora_loss<F>(const LoraModel&, const LoraSet<F>*, double, const PackedBatch&, LoraSet<F>*, ThreadPool&);                    \
  template void lora_logprobs<F>(const LoraModel&, const LoraSet<F>*, double, const PackedBatch&, double, double*, double*, const LogprobGrad*, \
                                 LoraSet<F>*, ThreadPool&, double*);
AHA_INSTANTIATE(float)
AHA_INSTANTIATE(double)
#undef AHA_INSTANTIATE
template void deepseek_lora_token_losses<float>(const DeepseekModel&, const LoraSet<float>*, double, const PackedBatch&, double*, ThreadPool&);
template void lora_token_losses<float>(const LoraModel&, const LoraSet<float>*, double, const PackedBatch&, double*, ThreadPool&);

}  // namespace aha::train
