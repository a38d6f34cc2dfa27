// Whole-model gradients against torch autograd through transformers in float64: LoRA through PEFT
// (tests/fixtures/golden/lora, made by tests/oracle/lora_grad_golden.py: the same adapter files)
// and full training, every parameter (golden/full, tests/oracle/full_grad_golden.py). The same two
// sequences, the loss and every gradient tensor (its norm, sum and sampled entries), from the HF
// folders and the GGUF copies (llama's permuted q/k rows included), in f32 and f64.
#include <cmath>
#include <fstream>
#include <sstream>

#include "aha/model.h"
#include "aha/train.h"
#include "check.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "fixtures.h"

using namespace aha;

namespace {

Json load_json(const std::string& path, const char* script = "lora_grad_golden.py") {
  std::ifstream in(path);
  if (!in) check::fail(__FILE__, __LINE__, "missing golden " + path + " (make it with tests/oracle/" + script + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str(), path);
}

std::vector<int32_t> ids(const Json& a) {
  std::vector<int32_t> v;
  for (auto& x : a.array()) v.push_back(int32_t(x.integer()));
  return v;
}

struct Errors {
  double loss = 0, norm = 0, entries = 0;  // relative: |Δloss|/loss, max |Δnorm|/norm, max |Δentry| / tensor norm
};

Errors compare(const std::string& golden, const std::string& model_path, GradPrecision prec) {
  Json g = load_json(fixtures_dir() + "/golden/lora/" + golden + ".json");
  LoadOptions o;
  o.threads = 2;
  o.context = 64;
  auto m = Model::load(model_path, o);
  LoraAdapter ad = LoraAdapter::load(fixtures_dir() + "/golden/lora/" + golden, m->config());
  CHECK(ad.config().rank == g.find("rank")->integer() && ad.config().use_rslora == g.find("use_rslora")->boolean());
  std::vector<TrainSequence> batch;
  for (auto& s : g.find("sequences")->array()) batch.push_back({ids(*s.find("input_ids")), ids(*s.find("labels"))});
  LoraLossAndGrads r = lora_loss_and_grads(*m, ad, batch, prec);
  Errors e;
  CHECK(r.target_tokens == g.find("target_tokens")->integer());
  const double want_loss = g.find("loss")->number();
  e.loss = std::fabs(r.loss - want_loss) / want_loss;
  size_t n = 0;
  for (int64_t l = 0; l < m->config().num_hidden_layers; l++)
    for (int i = 0; i < kLoraTargets; i++)
      for (bool b : {false, true}) {
        const std::string name = lora_peft_name(l, LoraTarget(i), b);
        const Json* t = g.find("grads")->find(name);
        const LoraPair<double>* p = r.grads.find(l, LoraTarget(i));
        CHECK_MSG(bool(t) == bool(p), (t ? "the engine does not adapt " : "the golden lacks ") << name);
        if (!p) continue;
        const std::vector<double>& v = b ? p->B : p->A;
        auto& shape = t->find("shape")->array();
        CHECK(size_t(shape[0].integer() * shape[1].integer()) == v.size());
        double norm = 0;
        for (double x : v) norm += x * x;
        norm = std::sqrt(norm);
        const double want_norm = t->find("norm")->number();
        e.norm = std::max(e.norm, std::fabs(norm - want_norm) / want_norm);
        auto& idx = t->find("idx")->array();
        auto& val = t->find("val")->array();
        for (size_t k = 0; k < idx.size(); k++)
          e.entries = std::max(e.entries, std::fabs(v[size_t(idx[k].integer())] - val[k].number()) / want_norm);
        n++;
      }
  CHECK(n == g.find("grads")->object().size());
  char line[256];
  std::snprintf(line, sizeof line, "%s %s: loss %.10f (PEFT %.10f), rel. errors: loss %.2e, norms %.2e, entries %.2e", model_path.c_str(),
                prec == GradPrecision::F64 ? "f64" : "f32", r.loss, want_loss, e.loss, e.norm, e.entries);
  check::note(line);
  return e;
}

void check_model(const std::string& golden, const std::vector<std::string>& paths, bool deepseek = false) {
  for (auto& name : paths) {
    const std::string p = deepseek ? fixtures_dir() + "/generated-deepseek/" + name : tiny(name);
    Errors f32 = compare(golden, p, GradPrecision::F32);
    CHECK_MSG(f32.loss < 1e-5 && f32.norm < 1e-4 && f32.entries < 1e-4,
              p << " f32: loss " << f32.loss << ", norms " << f32.norm << ", entries " << f32.entries);
    // f64 agrees to the oracle's own rounding (transformers computes the rotary cos/sin in f32)
    Errors f64 = compare(golden, p, GradPrecision::F64);
    CHECK_MSG(f64.loss < 1e-7 && f64.norm < 1e-6 && f64.entries < 1e-6,
              p << " f64: loss " << f64.loss << ", norms " << f64.norm << ", entries " << f64.entries);
  }
}

// Every parameter's gradient (full training) of the model file at `model_path`.
Errors compare_full(const std::string& golden, const std::string& model_path, GradPrecision prec) {
  Json g = load_json(fixtures_dir() + "/golden/full/" + golden + ".json", "full_grad_golden.py");
  DenseParams<float> p = dense_params_load(model_path);
  CHECK(p.config.tie_word_embeddings == g.find("tied")->boolean());
  std::vector<TrainSequence> batch;
  for (auto& s : g.find("sequences")->array()) batch.push_back({ids(*s.find("input_ids")), ids(*s.find("labels"))});
  ThreadPool pool(2);
  FullLossAndGrads r = full_loss_and_grads(p, batch, prec, pool);
  Errors e;
  CHECK(r.target_tokens == g.find("target_tokens")->integer());
  const double want_loss = g.find("loss")->number();
  e.loss = std::fabs(r.loss - want_loss) / want_loss;
  const auto& want = g.find("grads")->object();
  CHECK_MSG(r.grads.tensors.size() == want.size(), r.grads.tensors.size() << " parameters, transformers has " << want.size());
  for (auto& t : r.grads.tensors) {
    auto it = want.find(t.name);
    CHECK_MSG(it != want.end(), "transformers has no parameter " << t.name);
    std::vector<int64_t> shape;
    for (auto& d : it->second.find("shape")->array()) shape.push_back(d.integer());
    CHECK_MSG(shape == t.shape, t.name << ": shape differs");
    double norm = 0;
    for (double x : t.values) norm += x * x;
    norm = std::sqrt(norm);
    const double want_norm = it->second.find("norm")->number();
    e.norm = std::max(e.norm, std::fabs(norm - want_norm) / want_norm);
    auto& idx = it->second.find("idx")->array();
    auto& val = it->second.find("val")->array();
    for (size_t k = 0; k < idx.size(); k++) e.entries = std::max(e.entries, std::fabs(t.values[size_t(idx[k].integer())] - val[k].number()) / want_norm);
  }
  char line[256];
  std::snprintf(line, sizeof line, "%s full %s: loss %.10f (transformers %.10f), rel. errors: loss %.2e, norms %.2e, entries %.2e", model_path.c_str(),
                prec == GradPrecision::F64 ? "f64" : "f32", r.loss, want_loss, e.loss, e.norm, e.entries);
  check::note(line);
  return e;
}

// f64 is exact to float64 rounding against the patched oracle (measured ≤ 1e-12), except with
// llama3 rope from config.json: the engine's inv_freq differs from transformers' float32 one in
// the last bits (measured 1e-8); the GGUF's rope_freqs give transformers' numbers.
void check_full(const std::string& golden, const std::vector<std::pair<std::string, double>>& paths) {
  for (auto& [p, f64_tol] : paths) {
    Errors f32 = compare_full(golden, tiny(p), GradPrecision::F32);
    CHECK_MSG(f32.loss < 1e-6 && f32.norm < 1e-5 && f32.entries < 1e-5,
              p << " full f32: loss " << f32.loss << ", norms " << f32.norm << ", entries " << f32.entries);
    Errors f64 = compare_full(golden, tiny(p), GradPrecision::F64);
    CHECK_MSG(f64.loss < f64_tol && f64.norm < f64_tol && f64.entries < f64_tol,
              p << " full f64: loss " << f64.loss << ", norms " << f64.norm << ", entries " << f64.entries);
  }
}

}  // namespace

TEST(train_golden_qwen2_full_grads_match_transformers) { check_full("qwen2-tiny", {{"qwen2-tiny", 1e-10}, {"qwen2-tiny-f32.gguf", 1e-10}}); }
TEST(train_golden_qwen3_full_grads_match_transformers) { check_full("qwen3-tiny", {{"qwen3-tiny", 1e-10}, {"qwen3-tiny-f32.gguf", 1e-10}}); }
TEST(train_golden_llama_full_grads_match_transformers) { check_full("llama-tiny", {{"llama-tiny", 1e-7}, {"llama-tiny-f32.gguf", 1e-10}}); }

TEST(train_golden_qwen2_lora_grads_match_peft) { check_model("qwen2-tiny", {"qwen2-tiny", "qwen2-tiny-f32.gguf"}); }
TEST(train_golden_qwen3_lora_grads_match_peft) { check_model("qwen3-tiny", {"qwen3-tiny", "qwen3-tiny-f32.gguf"}); }
TEST(train_golden_llama_lora_grads_match_peft) { check_model("llama-tiny", {"llama-tiny", "llama-tiny-f32.gguf"}); }
// MLA (with and without q_lora), MoE routing weights (softmax and sigmoid), shared experts, dense
// first layers, YaRN; from the HF folders and llama.cpp's deepseek2 layout with attn_kv_b.
TEST(train_golden_deepseek_v2_lite_lora_grads_match_peft) {
  check_model("deepseek-v2-lite-tiny", {"deepseek-v2-lite-tiny", "deepseek-v2-lite-tiny-kv_b.gguf"}, true);
}
TEST(train_golden_deepseek_v3_lora_grads_match_peft) { check_model("deepseek-v3-tiny", {"deepseek-v3-tiny", "deepseek-v3-tiny-kv_b.gguf"}, true); }
