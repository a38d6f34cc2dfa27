// The dense family in train mode: a forward that saves what backward needs, and the backward
// that gives the mean cross-entropy over the target tokens and every LoRA gradient, with the base
// weights frozen (any dtype); or, in full training, the same backward giving every weight's own
// gradient (embeddings, projections and biases, norms, lm head). F = float runs the weight
// products on the engine's matmul (the numbers inference computes), F = double on the scalar
// reference (finite-difference checks, `aha grad --dtype f64`).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "aha/train.h"
#include "core/thread_pool.h"
#include "models/dense.h"
#include "train/ops.h"

namespace aha::train {

// Sequences packed one after another into T tokens.
struct PackedBatch {
  std::vector<int32_t> tokens;     // [T]
  std::vector<int64_t> pos;        // [T] position within its sequence
  std::vector<int64_t> seq_begin;  // [T] index of its sequence's first token
  std::vector<int32_t> targets;    // [T] the token position t is scored on, −1: none
  int64_t n_targets = 0;
  // Activation checkpointing: the forward keeps only each layer's input; the backward recomputes
  // the layer's activations from it just before its backward (one layer's worth alive at a time).
  bool checkpoint_layers = false;
  // LoRA dropout (PEFT's lora_dropout, training only): each element of an adapted projection's
  // input to the adapter branch is dropped with this probability (the rest scaled by 1/(1 − p)),
  // by a hash of (dropout_seed, layer, target, position), so every pass over the batch agrees.
  double lora_dropout = 0;
  uint64_t dropout_seed = 0;
};

// Packs HF-style (input_ids, labels) sequences; errors name the sequence and what is wrong.
PackedBatch pack_sequences(const std::vector<TrainSequence>& seqs, const ModelConfig& c);

// convert_hf_to_gguf's permute of a q/k projection's rows [n_heads * head_dim, cols]: within a
// head, HF row j·(head_dim/2) + i is GGUF row 2i + j. to_gguf false undoes it.
template <class F>
void permute_head_rows(std::vector<F>& rows, int64_t n_heads, int64_t head_dim, int64_t cols, bool to_gguf);

// GGUF llama files store the q/k rows permuted for interleaved rope; an adapter keeps HF's order.
// The engine computes with B's q_proj/k_proj rows in the weights' order: to_engine_order gives
// that copy of HF-ordered weights (or gradients), from_engine_order turns it back.
// Both are identities for models with HF's rope layout (config.rope_neox).
template <class F>
void to_engine_order(LoraSet<F>& s, const ModelConfig& c);
template <class F>
void from_engine_order(LoraSet<F>& s, const ModelConfig& c);

// Mean cross-entropy over the batch's targets; with `grads`, d loss / d each LoRA tensor is
// added to it (+=). `adapter` may be null (the base model's loss).
template <class F>
double dense_lora_loss(const DenseModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, LoraSet<F>* grads, ThreadPool& pool);

// Full training: d loss / d each weight the forward reads accumulates (+=) into the array its
// canonical name ("blk.0.attn_q.weight") maps to, laid out as the weight ([out, in] row-major).
// A tied lm head is the embedding table: both of its gradients land in the one array.
template <class F>
using WeightGrads = std::map<std::string, F*>;

// Full training: the mean cross-entropy over the batch's targets, every weight's gradient into
// `grads`. Every weight of `model` needs an entry.
template <class F>
double dense_full_loss(const DenseModel& model, const PackedBatch& b, const WeightGrads<F>& grads, ThreadPool& pool);

// −log p of each position's target (losses[T], 0 where there is none): the forward only.
template <class F>
void dense_lora_token_losses(const DenseModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double* losses, ThreadPool& pool);

// The log-prob of each position's target at a sampling temperature (logp[T], 0 where there is
// none) and its entropy (entropy[T], nullable); with grads, d loss / d each LoRA tensor is added
// to it (+=) for a loss that is a sum of per-token functions of logp (see lm_head_logprobs).
template <class F>
void dense_lora_logprobs(const DenseModel& model, const LoraSet<F>* adapter, double scale, const PackedBatch& b, double temperature, double* logp,
                         double* entropy, const LogprobGrad* dloss, LoraSet<F>* grads, ThreadPool& pool, double* forward_seconds = nullptr);

}  // namespace aha::train
