// The training ops of the dense family: each forward beside its backward, in plain scalar C++
// (the reference; no intrinsics), instantiated for float (the training engine) and double (the
// finite-difference checks of native/tests/test_train.cpp and `aha grad --dtype f64`).
//
// Argument order (llm.c): outputs, buffers saved for backward, inputs, weights, sizes.
// Parameter gradients accumulate (+=); activation gradients are assigned (=).
// Matrices are row-major; a weight W is an engine Tensor of any dtype with ne = {in, out} (out
// rows of in elements), dequantized on the fly wherever it is read: frozen under LoRA, or the f32
// master weights of full training, whose gradients (dW, dw, dE) are plain [out, in] arrays.
// `pool` may be null (single-threaded).
#pragma once
#include <cstdint>
#include <functional>

#include "aha/model.h"
#include "core/thread_pool.h"

namespace aha::train {

// RMSNorm over `rows` rows of n: y = x / sqrt(mean(x²) + eps) * w.
// rstd[rows] is saved for backward; w[n] is an f32 weight; dw (nullable, full training) accumulates.
template <class F>
void rmsnorm_forward(F* y, F* rstd, const F* x, const float* w, int64_t rows, int64_t n, double eps);
template <class F>
void rmsnorm_backward(F* dx, F* dw, const F* dy, const F* x, const F* rstd, const float* w, int64_t rows, int64_t n);

// Rotary embedding of `rows` tokens of n_heads heads each (x, y: [rows, n_heads*head_dim]),
// token t at position pos[t]; inv_freq[head_dim/2]. neox: pairs (i, i + head_dim/2), else (2i, 2i+1).
// Llama3 / linear scaling only change inv_freq. y may alias x (the backward too).
template <class F>
void rope_forward(F* y, const F* x, const int64_t* pos, const float* inv_freq, int64_t rows, int64_t n_heads, int64_t head_dim, bool neox);
template <class F>
void rope_backward(F* dx, const F* dy, const int64_t* pos, const float* inv_freq, int64_t rows, int64_t n_heads, int64_t head_dim, bool neox);

// Causal GQA attention over packed sequences: token t attends to tokens [seq_begin[t], t].
// q, out: [T, n_heads*head_dim]; k, v: [T, n_kv_heads*head_dim]; query head h reads KV head
// h / (n_heads/n_kv_heads). out = softmax(q kᵀ / sqrt(head_dim)) v; lse[n_heads, T] (the
// softmax's log-normalizer) is saved, and backward recomputes the probabilities from it.
template <class F>
void attention_forward(F* out, F* lse, const F* q, const F* k, const F* v, const int64_t* seq_begin, int64_t T, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, ThreadPool* pool);
template <class F>
void attention_backward(F* dq, F* dk, F* dv, const F* dout, const F* out, const F* lse, const F* q, const F* k, const F* v,
                        const int64_t* seq_begin, int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, ThreadPool* pool);

// SwiGLU: h[n] = silu(gate[n]) * up[n].
template <class F>
void swiglu_forward(F* h, const F* gate, const F* up, int64_t n);
template <class F>
void swiglu_backward(F* dgate, F* dup, const F* dh, const F* gate, const F* up, int64_t n);

// A frozen linear layer with an optional LoRA adapter (PEFT's Linear):
//   y[m, out] = x W ᵀ + bias + scale · (x Aᵀ) Bᵀ,   A[r, in], B[out, r]
// xa[m, r] = x Aᵀ is saved for backward. A == nullptr: no adapter (r ignored, xa unused).
// The W product here is the scalar reference (dequantized rows, accumulated in double); the
// float training forward uses the engine's matmul instead (train/dense_lora.cpp).
template <class F>
void lora_linear_forward(F* y, F* xa, const F* x, const Tensor& W, const float* bias, const F* A, const F* B, double scale, int64_t m,
                         int64_t r, ThreadPool* pool);
// dx[m, in] = dy W + scale · (dy B) A;  dA += scale · (dy B)ᵀ x;  dB += scale · dyᵀ xa.
// dx may be null (the gradient stops here), as may dA/dB (no adapter: A == nullptr).
template <class F>
void lora_linear_backward(F* dx, F* dA, F* dB, const F* dy, const F* x, const F* xa, const Tensor& W, const F* A, const F* B, double scale,
                          int64_t m, int64_t r, ThreadPool* pool, bool base = true);  // base: false leaves out dy W (dx gets the LoRA term only)

// The weight's own gradient of y[m, out] = x Wᵀ + bias (full training, every parameter trainable):
//   dW[out, in] += dyᵀ x;  dbias[out] += Σ_i dy[i] (dbias may be null).
template <class F>
void linear_backward_weight(F* dW, F* dbias, const F* dy, const F* x, int64_t m, int64_t in, int64_t out, ThreadPool* pool);

// Only the LoRA term: y[m, out] += scale · (x Aᵀ) Bᵀ, xa[m, r] = x Aᵀ (xa may be null).
template <class F>
void lora_add(F* y, F* xa, const F* x, const F* A, const F* B, double scale, int64_t m, int64_t in, int64_t out, int64_t r, ThreadPool* pool);

// dx[m, in] = dy[m, out] · W, W dequantized on the fly (columns split across threads in whole blocks).
template <class F>
void matmul_backward_input(F* dx, const F* dy, const Tensor& W, int64_t m, ThreadPool* pool);

// Token embedding: x[T, H] = rows of E {H, vocab}.
template <class F>
void embedding_forward(F* x, const int32_t* tokens, const Tensor& E, int64_t T);
// Full training: dE[vocab, H] += dx scattered to the rows of the tokens (a token seen twice gets both).
template <class F>
void embedding_backward(F* dE, const F* dx, const int32_t* tokens, int64_t T, int64_t H);

// The lm head, log-softmax and cross-entropy, in chunks of `chunk` rows so that the logits
// [chunk, vocab] are the largest buffer. Rows with targets[t] < 0 are skipped. Returns
// Σ_t −log softmax(x_t Wᵀ)[targets[t]] over the rows with a target; dx (nullable) gets
// grad_scale · d(that sum)/dx (assigned; rows without a target get 0); dW[vocab, H] (nullable,
// full training) accumulates grad_scale · d(that sum)/dW; row_loss[T] (nullable) gets each
// row's −log p of its target (0 for rows without one). W: {H, vocab}.
// Float runs the lm head through the engine's matmul (the logits inference computes).
template <class F>
double lm_head_cross_entropy(F* dx, F* dW, double* row_loss, const F* x, const Tensor& W, const int32_t* targets, int64_t T, double grad_scale,
                             int64_t chunk, ThreadPool* pool);

// The lm head's log-probs at a sampling temperature, and the gradient of a loss that is a sum
// of functions of them (GRPO's per-token loss), in chunks as above. For rows with a target:
//   logp[t] = log softmax(x_t Wᵀ / temperature)[targets[t]],  entropy[t] (nullable) that
// distribution's entropy (0 for rows without a target). With dx or dW (then dloss is required),
// dloss(n, rows, logp, dlogp) is called once per chunk, serially, with the chunk's rows and
// log-probs and writes d loss / d logp of each; dx gets d loss / dx (assigned; 0 for rows
// without a target) and dW (full training) accumulates d loss / dW:
// d logp_t / d logit_v = ([v = target] − p_v) / temperature.
using LogprobGrad = std::function<void(int64_t n, const int64_t* rows, const double* logp, double* dlogp)>;
template <class F>
void lm_head_logprobs(F* dx, F* dW, double* logp, double* entropy, const F* x, const Tensor& W, const int32_t* targets, int64_t T, double temperature,
                      const LogprobGrad* dloss, int64_t chunk, ThreadPool* pool);

}  // namespace aha::train
