// Dense decoder forward: embed → N × (attention block, FFN block) → norm → lm head.
// Every intermediate has a name ("blk.3.attn_out") and goes to the dump hook when one is set.
#include "models/dense.h"

#include <cmath>
#include <cstring>

#include "aha/error.h"
#include "aha/kernels.h"
#include "backends/cpu/ops.h"
#include "train/ops.h"

namespace aha {

DenseModel::DenseModel(WeightStore& ws) : c_(ws.config) {
  const int64_t H = c_.hidden_size, F = c_.intermediate_size, V = c_.vocab_size;
  const int64_t QD = c_.num_attention_heads * c_.head_dim, KD = c_.num_key_value_heads * c_.head_dim;
  tok_embd_ = &ws.get("token_embd.weight", {H, V});
  output_norm_ = &ws.get_f32("output_norm.weight", {H});
  output_ = ws.find("output.weight") ? &ws.get("output.weight", {H, V}) : tok_embd_;
  if (!weight_kernel(output_->dtype)) fail_file(ws.path, std::string("lm head dtype ") + dtype_name(output_->dtype) + " has no kernel");
  for (int64_t l = 0; l < c_.num_hidden_layers; l++) {
    auto n = [&](const char* s) { return "blk." + std::to_string(l) + "." + s; };
    DenseLayer L;
    L.attn_norm = &ws.get_f32(n("attn_norm.weight"), {H});
    L.wq = &ws.get(n("attn_q.weight"), {H, QD});
    L.wk = &ws.get(n("attn_k.weight"), {H, KD});
    L.wv = &ws.get(n("attn_v.weight"), {H, KD});
    L.wo = &ws.get(n("attn_output.weight"), {QD, H});
    if (ws.find(n("attn_q.bias"))) {
      L.bq = &ws.get_f32(n("attn_q.bias"), {QD});
      L.bk = &ws.get_f32(n("attn_k.bias"), {KD});
      L.bv = &ws.get_f32(n("attn_v.bias"), {KD});
    } else if (c_.attention_bias) {
      fail_file(ws.path, "missing tensor '" + n("attn_q.bias") + "'");
    }
    if (ws.find(n("attn_output.bias"))) L.bo = &ws.get_f32(n("attn_output.bias"), {H});
    if (c_.qk_norm) {
      L.q_norm = &ws.get_f32(n("attn_q_norm.weight"), {c_.head_dim});
      L.k_norm = &ws.get_f32(n("attn_k_norm.weight"), {c_.head_dim});
    }
    L.ffn_norm = &ws.get_f32(n("ffn_norm.weight"), {H});
    L.w_gate = &ws.get(n("ffn_gate.weight"), {H, F});
    L.w_up = &ws.get(n("ffn_up.weight"), {H, F});
    L.w_down = &ws.get(n("ffn_down.weight"), {F, H});
    for (const Tensor* t : {L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down})
      if (!weight_kernel(t->dtype)) fail_file(ws.path, "tensor '" + t->name + "': dtype " + dtype_name(t->dtype) + " has no matmul kernel");
    layers_.push_back(L);
  }
  inv_freq_ = rope_inv_freq(c_, ws.rope_freqs);
}

static void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

static void add_bias(float* y, const Tensor* b, int64_t T, int64_t n) {
  if (!b) return;
  const float* bb = static_cast<const float*>(b->data);
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < n; i++) y[t * n + i] += bb[i];
}

void add_lora(float* y, const float* x, const ForwardBatch& b, int64_t l, LoraTarget t, int64_t T, ThreadPool& pool) {
  if (!b.lora) return;
  if (const LoraPair<float>* p = b.lora->find(l, t))
    train::lora_add<float>(y, nullptr, x, p->A.data(), p->B.data(), b.lora_scale, T, p->in, p->out, b.lora->rank, &pool);
}

static void emit(const DumpHook* dump, const std::string& name, const float* d, int64_t rows, int64_t cols) {
  if (dump && *dump) (*dump)(name, d, rows, cols);
}

void DenseModel::forward(const ForwardBatch& b, KvCache& cache, ThreadPool& pool, DenseWorkspace& w, float* logits,
                         const DumpHook* dump) const {
  const int64_t T = int64_t(b.tokens.size()), H = c_.hidden_size, V = c_.vocab_size;
  grow(w.x, size_t(T * H));
  grow(w.xn, size_t(T * H));
  for (int64_t t = 0; t < T; t++) {
    int32_t id = b.tokens[size_t(t)];
    if (id < 0 || id >= V) throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
  }
  // Token embedding: one row of the (possibly quantized) table per token.
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      dequantize_row(tok_embd_->dtype, static_cast<const uint8_t*>(tok_embd_->data) + size_t(b.tokens[size_t(t)]) * tok_embd_->row_bytes,
                     w.x.data() + t * H, H);
  });
  emit(dump, "inp_embd", w.x.data(), T, H);

  for (int64_t l = 0; l < c_.num_hidden_layers; l++) {
    attention_block(l, b, cache, pool, w, dump);
    ffn_block(l, b, pool, w, dump);
    emit(dump, "blk." + std::to_string(l) + ".out", w.x.data(), T, H);
  }

  // Final norm and lm head only for the rows whose logits are wanted.
  const int64_t R = int64_t(b.logit_rows.size());
  const CpuOps& ops = cpu_ops();
  for (int64_t r = 0; r < R; r++)
    ops.rmsnorm(w.xn.data() + r * H, w.x.data() + b.logit_rows[size_t(r)] * H, static_cast<const float*>(output_norm_->data), H,
                float(c_.rms_norm_eps));
  emit(dump, "result_norm", w.xn.data(), R, H);
  matmul(*output_, w.xn.data(), R, logits, pool, w.mm);
  emit(dump, "result_output", logits, R, V);
}

void DenseModel::attention_block(int64_t l, const ForwardBatch& b, KvCache& cache, ThreadPool& pool, DenseWorkspace& w,
                                 const DumpHook* dump) const {
  const DenseLayer& L = layers_[size_t(l)];
  const int64_t T = int64_t(b.tokens.size()), H = c_.hidden_size, hd = c_.head_dim;
  const int64_t nh = c_.num_attention_heads, nkv = c_.num_key_value_heads, QD = nh * hd, KD = nkv * hd;
  const float eps = float(c_.rms_norm_eps);
  const CpuOps& ops = cpu_ops();
  const std::string p = "blk." + std::to_string(l) + ".";
  grow(w.q, size_t(T * QD));
  grow(w.k, size_t(T * KD));
  grow(w.v, size_t(T * KD));
  grow(w.attn, size_t(T * QD));
  grow(w.proj, size_t(T * H));

  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      ops.rmsnorm(w.xn.data() + t * H, w.x.data() + t * H, static_cast<const float*>(L.attn_norm->data), H, eps);
  });
  emit(dump, p + "attn_norm", w.xn.data(), T, H);

  const MatmulJob qkv[] = {{L.wq, w.xn.data(), T, w.q.data()}, {L.wk, w.xn.data(), T, w.k.data()}, {L.wv, w.xn.data(), T, w.v.data()}};
  matmul_many(qkv, 3, pool, w.mm);
  add_bias(w.q.data(), L.bq, T, QD);
  add_bias(w.k.data(), L.bk, T, KD);
  add_bias(w.v.data(), L.bv, T, KD);
  add_lora(w.q.data(), w.xn.data(), b, l, LoraTarget::QProj, T, pool);
  add_lora(w.k.data(), w.xn.data(), b, l, LoraTarget::KProj, T, pool);
  add_lora(w.v.data(), w.xn.data(), b, l, LoraTarget::VProj, T, pool);
  emit(dump, p + "Qcur", w.q.data(), T, QD);
  emit(dump, p + "Kcur", w.k.data(), T, KD);
  emit(dump, p + "Vcur", w.v.data(), T, KD);

  // q/k norm (qwen3), rotary embedding, then K/V into the cache at each token's slot.
  const int64_t bs = cache.block_size();
  const DType kv = cache.dtype();
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) {
      float* q = w.q.data() + t * QD;
      float* k = w.k.data() + t * KD;
      if (L.q_norm) {
        for (int64_t h = 0; h < nh; h++) ops.rmsnorm(q + h * hd, q + h * hd, static_cast<const float*>(L.q_norm->data), hd, eps);
        for (int64_t h = 0; h < nkv; h++) ops.rmsnorm(k + h * hd, k + h * hd, static_cast<const float*>(L.k_norm->data), hd, eps);
      }
      const int64_t pos = b.pos[size_t(t)];
      rope(q, nh, hd, pos, inv_freq_.data(), c_.rope_neox);
      rope(k, nkv, hd, pos, inv_freq_.data(), c_.rope_neox);
      const int32_t blk = b.blocks[size_t(t)][pos / bs];
      const float* v = w.v.data() + t * KD;
      cache.write(l, blk, pos % bs, k, v);
    }
  });
  emit(dump, p + "Qrope", w.q.data(), T, QD);
  emit(dump, p + "Krope", w.k.data(), T, KD);

  // Attention: one task per (token, KV head); the query heads of a GQA group share K/V reads.
  const int group = int(nh / nkv);
  const size_t scratch_per_thread = size_t(group) * size_t((hd + 15) / 16 * 16);
  grow(w.attn_scratch, scratch_per_thread * size_t(pool.size()));
  pool.parallel_for(T * nkv, [&](int64_t i0, int64_t i1, int thread) {
    for (int64_t i = i0; i < i1; i++) {
      const int64_t t = i / nkv, h = i % nkv;
      AttentionArgs a;
      a.q = w.q.data() + t * QD + h * group * hd;
      a.out = w.attn.data() + t * QD + h * group * hd;
      a.group = group;
      a.head_dim = int(hd);
      a.scale = float(1.0 / std::sqrt(double(hd)));
      a.n_ctx = b.pos[size_t(t)] + 1;
      a.blocks = b.blocks[size_t(t)];
      a.block_size = bs;
      a.k0 = cache.k(l, 0, 0, h);
      a.v0 = cache.v(l, 0, 0, h);
      a.block_stride = cache.block_stride();
      a.slot_stride = cache.row_bytes();
      a.kv = kv;
      a.scratch = w.attn_scratch.data() + scratch_per_thread * size_t(thread);
      ops.attention(a);
    }
  });
  emit(dump, p + "kqv_out", w.attn.data(), T, QD);

  matmul(*L.wo, w.attn.data(), T, w.proj.data(), pool, w.mm);
  add_bias(w.proj.data(), L.bo, T, H);
  add_lora(w.proj.data(), w.attn.data(), b, l, LoraTarget::OProj, T, pool);
  emit(dump, p + "attn_out", w.proj.data(), T, H);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) { ops.add(w.x.data() + t0 * H, w.proj.data() + t0 * H, (t1 - t0) * H); });
}

void DenseModel::ffn_block(int64_t l, const ForwardBatch& b, ThreadPool& pool, DenseWorkspace& w, const DumpHook* dump) const {
  const DenseLayer& L = layers_[size_t(l)];
  const int64_t T = int64_t(b.tokens.size());
  const int64_t H = c_.hidden_size, F = c_.intermediate_size;
  const CpuOps& ops = cpu_ops();
  const std::string p = "blk." + std::to_string(l) + ".";
  grow(w.gate, size_t(T * F));
  grow(w.up, size_t(T * F));
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      ops.rmsnorm(w.xn.data() + t * H, w.x.data() + t * H, static_cast<const float*>(L.ffn_norm->data), H, float(c_.rms_norm_eps));
  });
  emit(dump, p + "ffn_norm", w.xn.data(), T, H);
  const MatmulJob gate_up[] = {{L.w_gate, w.xn.data(), T, w.gate.data()}, {L.w_up, w.xn.data(), T, w.up.data()}};
  matmul_many(gate_up, 2, pool, w.mm);
  add_lora(w.gate.data(), w.xn.data(), b, l, LoraTarget::GateProj, T, pool);
  add_lora(w.up.data(), w.xn.data(), b, l, LoraTarget::UpProj, T, pool);
  pool.parallel_for(T * F, [&](int64_t i0, int64_t i1, int) { ops.swiglu(w.gate.data() + i0, w.gate.data() + i0, w.up.data() + i0, i1 - i0); }, 16);
  emit(dump, p + "ffn_act", w.gate.data(), T, F);
  matmul(*L.w_down, w.gate.data(), T, w.proj.data(), pool, w.mm);
  add_lora(w.proj.data(), w.gate.data(), b, l, LoraTarget::DownProj, T, pool);
  emit(dump, p + "ffn_out", w.proj.data(), T, H);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) { ops.add(w.x.data() + t0 * H, w.proj.data() + t0 * H, (t1 - t0) * H); });
}

}  // namespace aha
