// Full training of small dense models: every parameter's gradient against central differences of
// the loss in double (Llama with every bias and llama3 rope, Qwen2, Qwen3 with q/k norms and tied
// embeddings), the tied table's two gradients, f32 against f64; fresh models from a config (HF's
// init, seeded), models read from every format and saved as HF folders the engine loads with the
// same logits; the trainer: AdamW without decay on norms and biases, accumulation, memorization,
// exact resume from a checkpoint, and a blown-up step that changes nothing.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "aha/model.h"
#include "aha/train.h"
#include "check.h"
#include "core/thread_pool.h"
#include "fixtures.h"
#include "models/loader.h"

using namespace aha;

namespace {

// Small configs of each architecture (vocab 40): every code path of the dense family.
ModelConfig small_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  if (arch == Arch::Llama) {  // every projection biased, llama3 rope bending these frequencies
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 4;
    c.attention_bias = true;
    c.rope_scaling = RopeScalingType::Llama3;
    c.rope_factor = 8, c.rope_original_max_position = 8;
  } else if (arch == Arch::Qwen2) {  // q/k/v biases
    c.num_attention_heads = 2, c.num_key_value_heads = 1, c.head_dim = 8;
    c.attention_bias = true;
    c.rope_theta = 1e6;
  } else {  // q/k norms, head_dim ≠ hidden/heads, tied embeddings
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 12;
    c.qk_norm = true;
    c.tie_word_embeddings = true;
  }
  return c;
}

// A fresh model with norms and biases moved off 1 and 0, so their gradients are generic.
DenseParams<float> small_model(Arch arch, uint64_t seed = 7) {
  DenseParams<float> p = dense_params_init(small_config(arch), 0.3, seed);
  std::mt19937 rng{uint32_t(seed)};
  std::normal_distribution<float> d(0.0f, 0.2f);
  for (auto& t : p.tensors)
    if (!t.decay)
      for (float& x : t.values) x += d(rng);
  return p;
}

// Two sequences; the first has a prompt without loss.
std::vector<TrainSequence> small_batch() {
  TrainSequence a, b;
  a.input_ids = {1, 5, 9, 33, 12, 7, 7, 20, 39};
  a.labels = {-100, -100, -100, 33, 12, 7, 7, 20, 39};
  b.input_ids = {1, 14, 3, 27, 0, 31};
  b.labels = b.input_ids;
  return {a, b};
}

}  // namespace

// d loss / d every parameter, at its largest entry and a few spread ones, against central
// differences of the double loss through the f32 weights (the quotient divides by the stored
// difference); and the f32 run against the f64 one.
TEST(train_full_grads_match_finite_differences) {
  ThreadPool pool(2);
  for (Arch arch : {Arch::Llama, Arch::Qwen2, Arch::Qwen3}) {
    DenseParams<float> p = small_model(arch);
    const auto batch = small_batch();
    FullLossAndGrads g64 = full_loss_and_grads(p, batch, GradPrecision::F64, pool);
    FullLossAndGrads g32 = full_loss_and_grads(p, batch, GradPrecision::F32, pool);
    CHECK(g64.grads.tensors.size() == p.tensors.size());
    CHECK(std::fabs(g32.loss - g64.loss) < 1e-6 * g64.loss);
    double worst = 0, worst32 = 0;
    for (size_t k = 0; k < p.tensors.size(); k++) {
      std::vector<float>& w = p.tensors[k].values;
      const std::vector<double>& g = g64.grads.tensors[k].values;
      CHECK(g64.grads.tensors[k].name == p.tensors[k].name && g.size() == w.size());
      size_t top = 0;
      for (size_t i = 0; i < g.size(); i++)
        if (std::fabs(g[i]) > std::fabs(g[top])) top = i;
      CHECK_MSG(g[top] != 0, p.tensors[k].name << " has no gradient");
      std::vector<size_t> at = {top};
      for (size_t i = 0; i < 4; i++) at.push_back((i * 7919 + 13) % w.size());
      std::vector<double> num, ana;
      for (size_t i : at) {
        const float w0 = w[i], wp = w0 + 2e-4f, wm = w0 - 2e-4f;
        w[i] = wp;
        const double lp = full_loss_and_grads(p, batch, GradPrecision::F64, pool).loss;
        w[i] = wm;
        const double lm = full_loss_and_grads(p, batch, GradPrecision::F64, pool).loss;
        w[i] = w0;
        num.push_back((lp - lm) / (double(wp) - double(wm)));
        ana.push_back(g[i]);
      }
      const double e = nerr(ana, num);
      CHECK_MSG(e < 1e-5, arch_name(arch) << " " << p.tensors[k].name << ": analytic vs finite-difference error " << e);
      worst = std::max(worst, e);
      worst32 = std::max(worst32, nerr(g32.grads.tensors[k].values, g));
    }
    CHECK_MSG(worst32 < 1e-5, arch_name(arch) << ": f32 gradients vs f64, error " << worst32);
    char line[160];
    std::snprintf(line, sizeof line, "%s: %zu tensors, finite-difference error ≤ %.1e, f32 vs f64 ≤ %.1e", arch_name(arch), p.tensors.size(), worst, worst32);
    check::note(line);
  }
}

// A tied table is both the embedding and the lm head: its gradient is the sum of the two that an
// untied copy of the same model gets.
TEST(train_full_tied_embedding_gets_both_gradients) {
  ThreadPool pool(2);
  DenseParams<float> tied = small_model(Arch::Qwen3);
  DenseParams<float> untied = tied;
  untied.config.tie_word_embeddings = false;
  untied.tensors.push_back({"lm_head.weight", tied.find("model.embed_tokens.weight")->shape, tied.find("model.embed_tokens.weight")->values, true});
  FullLossAndGrads a = full_loss_and_grads(tied, small_batch(), GradPrecision::F64, pool);
  FullLossAndGrads b = full_loss_and_grads(untied, small_batch(), GradPrecision::F64, pool);
  CHECK(std::fabs(a.loss - b.loss) < 1e-12 * a.loss);
  CHECK(!a.grads.find("lm_head.weight"));
  std::vector<double> sum = b.grads.find("model.embed_tokens.weight")->values;
  const auto& head = b.grads.find("lm_head.weight")->values;
  for (size_t i = 0; i < sum.size(); i++) sum[i] += head[i];
  CHECK(nerr(a.grads.find("model.embed_tokens.weight")->values, sum) < 1e-12);
}

// HF's init: N(0, initializer_range²) matrices and embedding, zero biases, unit norms; seeded and
// portable (one stream per tensor); config.json written and read back; only the dense family.
TEST(train_full_init_is_seeded_hf_style) {
  ModelConfig c = small_config(Arch::Qwen2);
  c.hidden_size = 64, c.intermediate_size = 128, c.vocab_size = 300;
  DenseParams<float> a = dense_params_init(c, 0.02, 1), b = dense_params_init(c, 0.02, 1), d = dense_params_init(c, 0.02, 2);
  CHECK(a.parameters() == b.parameters());
  for (size_t k = 0; k < a.tensors.size(); k++) {
    const auto& t = a.tensors[k];
    CHECK(t.values == b.tensors[k].values);
    const bool bias = t.name.find("bias") != std::string::npos, norm = t.name.find("norm") != std::string::npos;
    CHECK(t.decay == !(bias || norm));
    if (bias || norm) {
      for (float x : t.values) CHECK(x == (norm ? 1.0f : 0.0f));
      continue;
    }
    CHECK(t.values != d.tensors[k].values);
    double s = 0, ss = 0;
    for (float x : t.values) s += x, ss += double(x) * x;
    const double n = double(t.values.size()), mean = s / n, sd = std::sqrt(ss / n - mean * mean);
    CHECK_MSG(std::fabs(mean) < 4 * 0.02 / std::sqrt(n) && std::fabs(sd - 0.02) < 0.02 * 6 / std::sqrt(n), t.name << ": mean " << mean << ", std " << sd);
  }
  // the engine reads back what the config writer states
  for (Arch arch : {Arch::Llama, Arch::Qwen2, Arch::Qwen3}) {
    ModelConfig w = small_config(arch), r = config_from_hf_json(dense_hf_config_json(w, 0.02), "config.json");
    CHECK(r.arch == w.arch && r.vocab_size == w.vocab_size && r.hidden_size == w.hidden_size && r.intermediate_size == w.intermediate_size);
    CHECK(r.num_hidden_layers == w.num_hidden_layers && r.num_attention_heads == w.num_attention_heads && r.num_key_value_heads == w.num_key_value_heads);
    CHECK(r.head_dim == w.head_dim && r.max_position_embeddings == w.max_position_embeddings && r.rms_norm_eps == w.rms_norm_eps);
    CHECK(r.rope_theta == w.rope_theta && r.rope_scaling == w.rope_scaling && r.rope_factor == w.rope_factor);
    CHECK(r.rope_original_max_position == w.rope_original_max_position && r.attention_bias == w.attention_bias && r.qk_norm == w.qk_norm);
    CHECK(r.tie_word_embeddings == w.tie_word_embeddings && r.bos_token_id == w.bos_token_id && r.eos_token_ids == w.eos_token_ids);
  }
  const TempDir tmp("aha-full");
  const std::string& dir = tmp.path();
  {
    std::ofstream f(dir + "/config.json");
    f << "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 50, \"hidden_size\": 8, \"intermediate_size\": 16, \"num_hidden_layers\": 1,"
         " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 4, \"initializer_range\": 0.5, \"tie_word_embeddings\": true}";
  }
  DenseParams<float> q = dense_params_init(dir + "/config.json", 3);
  CHECK(q.initializer_range == 0.5 && q.config.qk_norm && q.config.tie_word_embeddings && !q.find("lm_head.weight"));
  CHECK(q.find("model.layers.0.self_attn.q_norm.weight") && q.find("model.embed_tokens.weight")->shape == (std::vector<int64_t>{50, 8}));
  ModelConfig ds = small_config(Arch::Qwen2);
  ds.arch = Arch::DeepseekV3;
  CHECK_THROWS(dense_params_init(ds, 0.02, 1), "supports the dense family");
}

// Every format the engine reads gives the same f32 parameters in HF's layout (a GGUF llama's q/k
// rows un-permuted); a saved folder loads in the engine with the source model's logits.
TEST(train_full_params_load_and_save) {
  for (auto [hf, gguf] : {std::pair{"qwen2-tiny", "qwen2-tiny-f32.gguf"}, std::pair{"qwen3-tiny", "qwen3-tiny-f32.gguf"},
                          std::pair{"llama-tiny", "llama-tiny-f32.gguf"}}) {
    DenseParams<float> a = dense_params_load(tiny(hf)), b = dense_params_load(tiny(gguf));
    CHECK(a.tensors.size() == b.tensors.size() && a.config.tie_word_embeddings == b.config.tie_word_embeddings && b.config.rope_neox);
    for (size_t k = 0; k < a.tensors.size(); k++)
      CHECK_MSG(a.tensors[k].name == b.tensors[k].name && a.tensors[k].shape == b.tensors[k].shape && a.tensors[k].values == b.tensors[k].values,
                gguf << ": " << b.tensors[k].name << " differs from the HF folder's");
    CHECK(a.rope_freqs.empty() && b.rope_freqs.empty() == (std::string(hf) != "llama-tiny"));
    const TempDir tmp("aha-full");
    const std::string& dir = tmp.path();
    save_dense_model(dir, a);
    LoadOptions o;
    o.threads = 2;
    o.kv_dtype = DType::F32;
    o.context = 64;
    auto src = Model::load(tiny(hf), o), saved = Model::load(dir, o);
    std::vector<int32_t> toks = {9707, 11, 1879, 0, 374, 264};
    std::vector<float> la, lb;
    int sa = src->new_sequence(), sb = saved->new_sequence();
    src->forward({{sa, toks, true}}, la);
    saved->forward({{sb, toks, true}}, lb);
    CHECK_MSG(la == lb, hf << ": the saved folder's logits differ from the source's");
    DenseParams<float> c = dense_params_load(dir);
    for (size_t k = 0; k < a.tensors.size(); k++) CHECK(c.tensors[k].values == a.tensors[k].values);
    if (std::string(hf) == "llama-tiny") {
      CHECK_THROWS(save_dense_model(dir, b), "rope_freqs");
      CHECK_THROWS(FullTrainer(b, {}), "rope_freqs");
    }
  }
  // the q8_0 copy dequantized: close to the f32 weights, not equal
  DenseParams<float> q = dense_params_load(tiny("qwen2-tiny-q8_0.gguf")), f = dense_params_load(tiny("qwen2-tiny"));
  double e = 0;
  for (size_t k = 0; k < q.tensors.size(); k++) {
    std::vector<double> a(q.tensors[k].values.begin(), q.tensors[k].values.end()), b(f.tensors[k].values.begin(), f.tensors[k].values.end());
    e = std::max(e, nerr(a, b));
  }
  CHECK_MSG(e > 0 && e < 2e-2, "q8_0 vs f32 parameters: " << e);
}

// AdamW over a whole model decays the matrices and the embedding, never the norms and biases
// (transformers' Trainer); two micro-batches step as one batch of both.
TEST(train_full_adamw_decay_and_accumulation) {
  DenseParams<float> p = small_model(Arch::Qwen2);
  AdamWConfig c;
  c.weight_decay = 0.1;
  AdamW<DenseParams<float>> opt(p, c);
  DenseParams<float> zero = p, q = p;
  for (auto& t : zero.tensors) std::fill(t.values.begin(), t.values.end(), 0.0f);
  opt.step(q, zero, 0.1);
  for (size_t k = 0; k < p.tensors.size(); k++)
    for (size_t i = 0; i < p.tensors[k].values.size(); i++)
      CHECK(q.tensors[k].values[i] == (p.tensors[k].decay ? float(double(p.tensors[k].values[i]) * 0.99) : p.tensors[k].values[i]));

  FullTrainer::Options o;
  o.threads = 2;
  FullTrainer one(p, o), two(p, o);
  auto batch = small_batch();
  const TrainStepResult r1 = one.step({batch}, 1e-2), r2 = two.step({{batch[0]}, {batch[1]}}, 1e-2);
  CHECK(r1.target_tokens == r2.target_tokens && r1.tokens == r2.tokens && r2.step == 1);
  CHECK(std::fabs(r1.loss - r2.loss) < 1e-6 * r1.loss && std::fabs(r1.grad_norm - r2.grad_norm) < 1e-5 * r1.grad_norm);
  double e = 0;
  for (size_t k = 0; k < p.tensors.size(); k++)
    for (size_t i = 0; i < p.tensors[k].values.size(); i++)
      e = std::max(e, double(std::fabs(one.params().tensors[k].values[i] - two.params().tensors[k].values[i])));
  CHECK_MSG(e < 1e-5, "params after one step of one batch vs two micro-batches: max difference " << e);
}

// From scratch, the trainer memorizes two sequences; a run saved at step 4 and loaded again goes
// on exactly as the one never interrupted; a blown-up step throws and leaves the model as it was.
TEST(train_full_trainer_memorizes_resumes_and_refuses_blowups) {
  FullTrainer::Options o;
  o.threads = 2;
  const auto batch = small_batch();
  FullTrainer t(dense_params_init(small_config(Arch::Qwen3), 0.02, 11), o);
  double first = 0, last = 0;
  for (int s = 0; s < 60; s++) {
    const TrainStepResult r = t.step({batch}, 1e-2);
    if (s == 0) first = r.loss;
    last = r.loss;
  }
  check::note("memorize from scratch: loss " + std::to_string(first) + " → " + std::to_string(last) + " in 60 steps");
  CHECK_MSG(first > 3 && last < 0.05, "loss " << first << " → " << last);

  FullTrainer a(small_model(Arch::Llama), o);
  const TempDir tmp("aha-full");
  const std::string& dir = tmp.path();
  std::vector<double> want;
  for (int s = 1; s <= 8; s++) {
    want.push_back(a.step({batch}, 3e-3).loss);
    if (s == 4) a.save(dir);
  }
  FullTrainer b = FullTrainer::load(dir, o);
  CHECK(b.optimizer().steps() == 4);
  for (int s = 5; s <= 8; s++) {
    const TrainStepResult r = b.step({batch}, 3e-3);
    CHECK_MSG(r.loss == want[size_t(s - 1)], "step " << s << ": resumed loss " << r.loss << ", uninterrupted " << want[size_t(s - 1)]);
    CHECK(r.step == s);
  }
  for (size_t k = 0; k < a.params().tensors.size(); k++) {
    CHECK(a.params().tensors[k].values == b.params().tensors[k].values);
    CHECK(a.optimizer().exp_avg().tensors[k].values == b.optimizer().exp_avg().tensors[k].values);
  }

  const DenseParams<float> before = b.params();
  CHECK_THROWS(b.step({batch}, 1e39), "the model was not updated");
  CHECK_THROWS(b.step({batch}, NAN), "learning rate");
  CHECK(b.optimizer().steps() == 8);
  for (size_t k = 0; k < before.tensors.size(); k++) CHECK(b.params().tensors[k].values == before.tensors[k].values);
}
