// The dense family in train mode, on the tiny models: the train forward's loss against the
// inference forward's logits, whole-model LoRA gradients against finite differences of the loss
// in double (every target module, f32 and q8_0 base weights), float against double, and PEFT
// adapter files: initialization, save/load, and the errors for adapters that do not fit.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "aha/model.h"
#include "aha/train.h"
#include "check.h"
#include "fixtures.h"
#include "lora_fixtures.h"
#include "formats/safetensors.h"
#include "core/mapped_file.h"
#include "train/dense_lora.h"

using namespace aha;

namespace {

std::unique_ptr<Model> load(const std::string& path) {
  LoadOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  o.context = 64;
  return Model::load(path, o);
}

// Two sequences; the first has its first three labels masked (a prompt), the second is all targets.
std::vector<TrainSequence> batch() {
  TrainSequence a, b;
  a.input_ids = {9707, 11, 1879, 0, 374, 264, 1273};
  a.labels = {-100, -100, -100, 0, 374, 264, 1273};
  b.input_ids = {40, 1079, 16, 17, 18};
  b.labels = b.input_ids;
  return {a, b};
}

}  // namespace

TEST(train_dense_loss_matches_inference_logits) {
  for (const char* name : {"qwen2-tiny", "qwen3-tiny", "llama-tiny", "qwen2-tiny-q8_0.gguf"}) {
    auto m = load(tiny(name));
    const int64_t V = m->config().vocab_size;
    auto seqs = batch();
    double want = 0;
    int64_t n = 0;
    for (auto& s : seqs) {
      int id = m->new_sequence();
      std::vector<float> logits;
      m->forward({{id, s.input_ids, true}}, logits);
      m->free_sequence(id);
      for (size_t t = 0; t + 1 < s.labels.size(); t++) {
        if (s.labels[t + 1] == -100) continue;
        const float* row = logits.data() + int64_t(t) * V;
        double mx = -INFINITY, sum = 0;
        for (int64_t v = 0; v < V; v++) mx = std::max(mx, double(row[v]));
        for (int64_t v = 0; v < V; v++) sum += std::exp(double(row[v]) - mx);
        want += mx + std::log(sum) - row[s.labels[t + 1]];
        n++;
      }
    }
    want /= double(n);
    train::PackedBatch b = train::pack_sequences(seqs, m->config());
    CHECK(b.n_targets == n);
    const double lf = train::dense_lora_loss<float>(m->dense_model(), nullptr, 0, b, nullptr, m->thread_pool());
    const double ld = train::dense_lora_loss<double>(m->dense_model(), nullptr, 0, b, nullptr, m->thread_pool());
    check::note(std::string(name) + ": inference " + std::to_string(want) + ", train f32 " + std::to_string(lf) + ", f64 " + std::to_string(ld));
    CHECK_MSG(std::fabs(lf - want) < 1e-5 * want, name << ": train-mode loss " << lf << ", from the inference logits " << want);
    // q8_0: the engine's matmul quantizes activations, the f64 reference does not
    const double tol = std::string(name).find("q8_0") != std::string::npos ? 2e-3 : 1e-5;
    CHECK_MSG(std::fabs(ld - want) < tol * want, name << ": f64 loss " << ld << " vs " << want);
  }
}

// d loss / d A and B of every target module of every layer against central differences of the
// double loss (one entry per tensor, spread), and the float gradients against the double ones.
// qwen3 (q/k norm, rsLoRA) and llama (llama3 rope, GGUF row order) are covered against PEFT in
// test_train_golden.cpp; the q8_0 base has no PEFT counterpart.
TEST(train_dense_lora_grads_match_finite_differences) {
  for (const char* name : {"qwen2-tiny", "qwen2-tiny-q8_0.gguf"}) {
    auto m = load(tiny(name));
    const bool rslora = std::string(name) == "qwen2-tiny";
    LoraAdapter ad = random_b_adapter(m->config(), rslora);
    LoraLossAndGrads g64 = lora_loss_and_grads(*m, ad, batch(), GradPrecision::F64);
    LoraLossAndGrads g32 = lora_loss_and_grads(*m, ad, batch(), GradPrecision::F32);
    train::PackedBatch b = train::pack_sequences(batch(), m->config());
    // the double weights the FD perturbs
    LoraSet<double> w;
    w.n_layers = ad.weights().n_layers;
    w.rank = ad.weights().rank;
    for (auto& p : ad.weights().mods) w.mods.push_back({p.in, p.out, {p.A.begin(), p.A.end()}, {p.B.begin(), p.B.end()}});
    std::vector<double> num, ana, all32, all64;
    const double h = 1e-5;
    size_t k = 0;
    for (size_t i = 0; i < w.mods.size(); i++) {
      if (w.mods[i].A.empty()) continue;
      for (bool isb : {false, true}) {
        auto& v = isb ? w.mods[i].B : w.mods[i].A;
        auto& gv = isb ? g64.grads.mods[i].B : g64.grads.mods[i].A;
        auto& gf = isb ? g32.grads.mods[i].B : g32.grads.mods[i].A;
        all64.insert(all64.end(), gv.begin(), gv.end());
        all32.insert(all32.end(), gf.begin(), gf.end());
        const size_t e = (k++ * 7919) % v.size();
        const double x0 = v[e];
        v[e] = x0 + h;
        const double lp = train::dense_lora_loss<double>(m->dense_model(), &w, ad.scale(), b, nullptr, m->thread_pool());
        v[e] = x0 - h;
        const double lm = train::dense_lora_loss<double>(m->dense_model(), &w, ad.scale(), b, nullptr, m->thread_pool());
        v[e] = x0;
        num.push_back((lp - lm) / (2 * h));
        ana.push_back(gv[e]);
      }
    }
    CHECK(k == size_t(2 * 7 * m->config().num_hidden_layers));
    const double e_fd = nerr(ana, num), e_32 = nerr(all32, all64);
    check::note(std::string(name) + ": loss " + std::to_string(g64.loss) + ", FD error " + std::to_string(e_fd) + " over " + std::to_string(num.size()) +
                " entries, f32 vs f64 gradients " + std::to_string(e_32));
    CHECK_MSG(e_fd < 1e-6, name << ": LoRA gradients vs finite differences, normalized error " << e_fd);
    CHECK_MSG(std::fabs(g32.loss - g64.loss) < 2e-3 * g64.loss, name << ": f32 loss " << g32.loss << " vs f64 " << g64.loss);
    // q8_0: the float forward runs the engine's matmul, which quantizes the activations to q8_0
    // (the logits inference computes), while backward multiplies by the dequantized weight: a
    // straight-through gradient, measured 6e-2 from the exact one (1e-3 with f32 activations).
    const double tol = std::string(name).find("q8_0") != std::string::npos ? 0.1 : 1e-4;
    CHECK_MSG(e_32 < tol, name << ": f32 vs f64 gradients, normalized error " << e_32);
  }
}

// Activation checkpointing recomputes each layer from its saved input: the same numbers, bit for
// bit, in both precisions.
TEST(train_checkpointed_layers_give_identical_gradients) {
  auto m = load(tiny("qwen2-tiny"));
  LoraAdapter ad = random_b_adapter(m->config(), false);
  for (GradPrecision p : {GradPrecision::F32, GradPrecision::F64}) {
    LoraLossAndGrads plain = lora_loss_and_grads(*m, ad, batch(), p, false);
    LoraLossAndGrads ckpt = lora_loss_and_grads(*m, ad, batch(), p, true);
    CHECK(plain.loss == ckpt.loss);
    CHECK(plain.grads.mods.size() == ckpt.grads.mods.size());
    for (size_t i = 0; i < plain.grads.mods.size(); i++) {
      CHECK(plain.grads.mods[i].A == ckpt.grads.mods[i].A);
      CHECK(plain.grads.mods[i].B == ckpt.grads.mods[i].B);
    }
  }
}

// LoRA dropout: with p = 0 nothing changes; with p = 0.3 the gradients are those of the loss with
// the same masks (finite differences in float64 through the same seed), the recomputation under
// checkpointing draws the same masks, and another seed draws others.
TEST(train_lora_dropout_gradients) {
  auto m = load(tiny("qwen2-tiny"));
  LoraAdapter ad = random_b_adapter(m->config(), false);
  const LoraLossAndGrads none = lora_loss_and_grads(*m, ad, batch(), GradPrecision::F64);
  CHECK(lora_loss_and_grads(*m, ad, batch(), GradPrecision::F64, false, 77).loss == none.loss);  // config dropout 0
  LoraConfig cfg = ad.config();
  cfg.dropout = 0.3;
  LoraAdapter dropped = LoraAdapter::init(m->config(), cfg, 42);
  dropped.weights() = ad.weights();
  const LoraLossAndGrads g = lora_loss_and_grads(*m, dropped, batch(), GradPrecision::F64, false, 77);
  const LoraLossAndGrads gc = lora_loss_and_grads(*m, dropped, batch(), GradPrecision::F64, true, 77);
  const LoraLossAndGrads other = lora_loss_and_grads(*m, dropped, batch(), GradPrecision::F64, false, 78);
  CHECK(g.loss != none.loss);
  CHECK(g.loss == gc.loss);
  CHECK(g.loss != other.loss);
  train::PackedBatch b = train::pack_sequences(batch(), m->config());
  b.lora_dropout = 0.3;
  b.dropout_seed = 77;
  LoraSet<double> w;
  w.n_layers = ad.weights().n_layers;
  w.rank = ad.weights().rank;
  for (auto& p : ad.weights().mods) w.mods.push_back({p.in, p.out, {p.A.begin(), p.A.end()}, {p.B.begin(), p.B.end()}});
  train::to_engine_order(w, m->config());
  LoraSet<double> ge = g.grads;
  train::to_engine_order(ge, m->config());
  std::vector<double> num, ana;
  size_t k = 0;
  for (size_t i = 0; i < w.mods.size(); i++) {
    if (w.mods[i].A.empty()) continue;
    for (bool isb : {false, true}) {
      auto& v = isb ? w.mods[i].B : w.mods[i].A;
      const auto& gv = isb ? ge.mods[i].B : ge.mods[i].A;
      const size_t e = (k++ * 7919) % v.size();
      const double x0 = v[e], h = 1e-5;
      v[e] = x0 + h;
      const double lp = train::dense_lora_loss<double>(m->dense_model(), &w, dropped.scale(), b, nullptr, m->thread_pool());
      v[e] = x0 - h;
      const double lm = train::dense_lora_loss<double>(m->dense_model(), &w, dropped.scale(), b, nullptr, m->thread_pool());
      v[e] = x0;
      num.push_back((lp - lm) / (2 * h));
      ana.push_back(gv[e]);
    }
  }
  const double e_fd = nerr(ana, num);
  check::note("LoRA dropout 0.3: FD error " + std::to_string(e_fd) + " over " + std::to_string(num.size()) + " entries");
  CHECK_MSG(e_fd < 1e-6, "dropout gradients vs finite differences: " << e_fd);
  for (size_t i = 0; i < g.grads.mods.size(); i++) {
    CHECK(g.grads.mods[i].A == gc.grads.mods[i].A);
    CHECK(g.grads.mods[i].B == gc.grads.mods[i].B);
  }
}

TEST(train_lora_adapter_init_save_load) {
  auto m = load(tiny("qwen2-tiny"));
  const ModelConfig& c = m->config();
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.target_modules = {"q_proj", "v_proj", "down_proj"};
  LoraAdapter a = LoraAdapter::init(c, lc, 7);
  CHECK(a.scale() == 2.0);
  lc.use_rslora = true;
  CHECK(LoraAdapter::init(c, lc, 7).scale() == 4.0);
  lc.use_rslora = false;
  // PEFT's kaiming_uniform_(a=√5): U(±1/√in); B zero; untargeted modules absent.
  const LoraPair<float>* q = a.weights().find(1, LoraTarget::QProj);
  const LoraPair<float>* d = a.weights().find(0, LoraTarget::DownProj);
  CHECK(q && d && !a.weights().find(0, LoraTarget::KProj));
  CHECK(q->A.size() == size_t(4 * 64) && q->B.size() == size_t(64 * 4) && d->A.size() == size_t(4 * 128));
  double ss = 0, mx = 0;
  for (float x : d->A) ss += double(x) * x, mx = std::max(mx, double(std::fabs(x)));
  const double bound = 1 / std::sqrt(128.0);
  CHECK(mx <= bound && mx > 0.9 * bound);
  CHECK(std::fabs(ss / double(d->A.size()) - bound * bound / 3) < 0.2 * bound * bound / 3);
  for (float x : q->B) CHECK(x == 0.0f);
  CHECK(LoraAdapter::init(c, lc, 7).weights().find(0, LoraTarget::VProj)->A == a.weights().find(0, LoraTarget::VProj)->A);
  CHECK(LoraAdapter::init(c, lc, 8).weights().find(0, LoraTarget::VProj)->A != a.weights().find(0, LoraTarget::VProj)->A);

  // save → load gives the same tensors, under PEFT's names and shapes
  for (auto& p : a.weights().mods)
    for (size_t i = 0; i < p.B.size(); i++) p.B[i] = float(i % 7) * 0.01f;
  const TempDir tmp("aha-train");
  std::string dir = tmp.path();
  a.save(dir);
  LoraAdapter b = LoraAdapter::load(dir, c);
  CHECK(b.config().rank == 4 && b.config().alpha == 8 && b.config().target_modules == lc.target_modules);
  for (size_t i = 0; i < a.weights().mods.size(); i++) CHECK(a.weights().mods[i].A == b.weights().mods[i].A && a.weights().mods[i].B == b.weights().mods[i].B);
  MappedFile f(dir + "/adapter_model.safetensors");
  auto ts = parse_safetensors(f.data(), f.size(), "adapter");
  CHECK(ts.size() == 2 * 3 * 2);
  bool found = false;
  for (auto& t : ts)
    if (t.name == "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight") found = t.ne == std::vector<int64_t>{128, 4} && t.dtype == DType::F32;
  CHECK(found);

  // errors: an adapter made for another model, a config that is not LoRA or not supported
  auto q3 = load(tiny("qwen3-tiny"));
  CHECK_THROWS(LoraAdapter::load(dir, q3->config()), "expected [128, 4]");  // qwen3-tiny: q_proj out 128 (head_dim 32)
  CHECK_THROWS(LoraAdapter::load(dir + "/nope", c), "not a PEFT adapter folder");
  auto with_config = [&](const std::string& json) {
    std::ofstream(dir + "/adapter_config.json") << json;
    return LoraAdapter::load(dir, c);
  };
  CHECK_THROWS(with_config(R"({"r": 0, "lora_alpha": 8, "target_modules": ["q_proj"]})"), "rank must be at least 1");
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "qkv_proj"]})"), "unknown LoRA target module 'qkv_proj'");
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "q_proj"]})"), "listed twice");
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "target_modules": ".*proj"})"), "regular expressions are not supported");
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "use_dora": true, "target_modules": ["q_proj"]})"), "DoRA");
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "lora_dropout": 1.5, "target_modules": ["q_proj"]})"), "dropout");
  CHECK_THROWS(with_config(R"({"r": 8, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]})"), "expected [8, 128]");
  // a tensor the config does not target, and a targeted one missing
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})"), "down_proj is not in target_modules");
  CHECK_THROWS(with_config(R"({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj", "up_proj"]})"), "missing tensor");
  LoraAdapter all = with_config(R"({"r": 4, "lora_alpha": 8, "lora_dropout": 0.05, "target_modules": ["down_proj", "q_proj", "v_proj"]})");
  CHECK(all.config().dropout == 0.05);
  LoraConfig bad;
  bad.rank = 0;
  CHECK_THROWS(LoraAdapter::init(c, bad, 1), "rank must be at least 1");
  bad.rank = 2;
  bad.target_modules = {"lm_head"};
  CHECK_THROWS(LoraAdapter::init(c, bad, 1), "unknown LoRA target module 'lm_head'");
  std::remove((dir + "/adapter_config.json").c_str());
  std::remove((dir + "/adapter_model.safetensors").c_str());
  rmdir(dir.c_str());
}

TEST(train_pack_sequences_rejects_bad_input) {
  auto m = load(tiny("qwen2-tiny"));
  const ModelConfig& c = m->config();
  CHECK_THROWS(train::pack_sequences({}, c), "no sequences");
  CHECK_THROWS(train::pack_sequences({{{1, 2}, {1}}}, c), "1 labels for 2 tokens");
  CHECK_THROWS(train::pack_sequences({{{1, 2}, {-100, -100}}}, c), "no target tokens");
  CHECK_THROWS(train::pack_sequences({{{1, 200000}, {1, 2}}}, c), "outside the vocabulary");
  CHECK_THROWS(train::pack_sequences({{{1, 2}, {1, -5}}}, c), "neither -100 nor a token id");
  auto b = train::pack_sequences({{{1, 2, 3}, {-100, 2, -100}}, {{4, 5}, {4, 5}}}, c);
  CHECK(b.targets == (std::vector<int32_t>{2, -1, -1, 5, -1}));
  CHECK(b.seq_begin == (std::vector<int64_t>{0, 0, 0, 3, 3}) && b.pos == (std::vector<int64_t>{0, 1, 2, 0, 1}) && b.n_targets == 2);
}
