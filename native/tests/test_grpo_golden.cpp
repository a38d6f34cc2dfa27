// The GRPO loss and its LoRA gradients against TRL's GRPOTrainer loss code with torch autograd
// (tests/fixtures/golden/grpo, made by tests/oracle/grpo_golden.py): every loss_type and
// scale_rewards, on-policy and off-policy with the KL term and masked truncated completions; the
// advantages, the loss, TRL's metrics and every gradient tensor (norm, sum, sampled entries), from
// the HF folders and the GGUF copies, in f32 and f64; and micro-batching changes nothing.
#include <cmath>
#include <fstream>
#include <sstream>

#include "aha/grpo.h"
#include "aha/model.h"
#include "check.h"
#include "core/json.h"
#include "fixtures.h"

using namespace aha;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) check::fail(__FILE__, __LINE__, "missing " + path + " (make it with tests/oracle/grpo_golden.py)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A JSON value back to text (the rollouts object of a golden case, for grpo_rollouts_from_json).
std::string to_text(const Json& j) {
  std::ostringstream o;
  o.precision(17);
  switch (j.kind()) {
    case Json::Kind::Null: o << "null"; break;
    case Json::Kind::Bool: o << (j.boolean() ? "true" : "false"); break;
    case Json::Kind::Number: o << j.number(); break;
    case Json::Kind::String: o << '"' << j.string() << '"'; break;
    case Json::Kind::Array: {
      o << '[';
      for (size_t i = 0; i < j.array().size(); i++) o << (i ? "," : "") << to_text(j.array()[i]);
      o << ']';
      break;
    }
    case Json::Kind::Object: {
      o << '{';
      bool first = true;
      for (auto& [k, v] : j.object()) {
        o << (first ? "" : ",") << '"' << k << "\":" << to_text(v);
        first = false;
      }
      o << '}';
      break;
    }
  }
  return o.str();
}

struct Errors {
  double advantages = 0, loss = 0, metrics = 0, norm = 0, entries = 0;
};

void tensor_errors(const Json& grads, const LoraSet<double>& got, const ModelConfig& c, Errors& e) {
  size_t n = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; l++)
    for (int i = 0; i < kLoraTargets; i++)
      for (bool b : {false, true}) {
        const std::string name = lora_peft_name(l, LoraTarget(i), b);
        const Json* t = grads.find(name);
        const LoraPair<double>* p = got.find(l, LoraTarget(i));
        CHECK_MSG(bool(t) == bool(p), (t ? "the engine does not adapt " : "the golden lacks ") << name);
        if (!p) continue;
        const std::vector<double>& v = b ? p->B : p->A;
        double norm = 0;
        for (double x : v) norm += x * x;
        norm = std::sqrt(norm);
        const double want = t->find("norm")->number();
        e.norm = std::max(e.norm, std::fabs(norm - want) / want);
        auto& idx = t->find("idx")->array();
        auto& val = t->find("val")->array();
        for (size_t k = 0; k < idx.size(); k++) e.entries = std::max(e.entries, std::fabs(v[size_t(idx[k].integer())] - val[k].number()) / want);
        n++;
      }
  CHECK(n == grads.object().size());
}

// One case: advantages, loss, metrics and gradients; `micro_batch_tokens` splits the batch.
Errors compare_case(Model& m, const LoraAdapter& ad, const Json& cs, GradPrecision prec, int64_t micro_batch_tokens) {
  const std::string name = cs.find("name")->string();
  GrpoRollouts r = grpo_rollouts_from_json(to_text(*cs.find("rollouts")), name, m.config().eos_token_ids);
  Errors e;
  auto& want_adv = cs.find("advantages")->array();
  CHECK(want_adv.size() == r.advantages.advantages.size());
  for (size_t p = 0; p < want_adv.size(); p++)
    for (size_t g = 0; g < want_adv[p].array().size(); g++)
      e.advantages = std::max(e.advantages, std::fabs(r.advantages.advantages[p][g] - want_adv[p].array()[g].number()));
  // TRL takes this share in float32
  CHECK_NEAR(r.advantages.frac_reward_zero_std, cs.find("frac_reward_zero_std")->number(), 1e-7);
  GrpoLossAndGrads g = grpo_loss_and_grads(m, ad, r.batch, r.loss, prec, micro_batch_tokens);
  CHECK_MSG(g.loss_tokens == cs.find("num_items_in_batch")->integer(), name << ": " << g.loss_tokens << " loss tokens");
  e.loss = std::fabs(g.loss - cs.find("loss")->number()) / std::max(1.0, std::fabs(cs.find("loss")->number()));
  const Json& mt = *cs.find("metrics");
  auto metric = [&](const char* key, double got) {
    const Json* w = mt.find(key);
    CHECK_MSG(w || std::isnan(got), name << ": " << key << " is " << got << ", TRL logs none");
    if (w) e.metrics = std::max(e.metrics, std::fabs(got - w->number()) / std::max(1.0, std::fabs(w->number())));
  };
  metric("kl", g.kl);
  metric("entropy", g.entropy);
  metric("clip_ratio/low_mean", g.clip_low_mean);
  metric("clip_ratio/high_mean", g.clip_high_mean);
  metric("clip_ratio/region_mean", g.clip_region_mean);
  metric("clip_ratio/low_min", g.clip_low_min);
  metric("clip_ratio/high_max", g.clip_high_max);
  tensor_errors(*cs.find("grads"), g.grads, m.config(), e);
  return e;
}

void check_model(const std::string& golden, const std::vector<std::string>& paths, double f64_tol) {
  Json j = Json::parse(read_text(fixtures_dir() + "/golden/grpo/" + golden + ".json"), golden);
  for (auto& path : paths) {
    LoadOptions o;
    o.threads = 2;
    o.context = 64;
    auto m = Model::load(tiny(path), o);
    LoraAdapter ad = LoraAdapter::load(fixtures_dir() + "/golden/lora/" + golden, m->config());
    const bool gguf = path.size() > 5 && path.substr(path.size() - 5) == ".gguf";
    for (auto& cs : j.find("cases")->array()) {
      const std::string name = cs.find("name")->string();
      // The GGUF copies (llama's permuted q/k rows) in f32 on the cases with every option on.
      if (gguf && name.find("offpolicy") == std::string::npos) continue;
      for (GradPrecision prec : {GradPrecision::F32, GradPrecision::F64}) {
        const bool f64 = prec == GradPrecision::F64;
        if (gguf && f64) continue;
        Errors e = compare_case(*m, ad, cs, prec, 0);
        char line[320];
        std::snprintf(line, sizeof line, "%s %s %s: errors advantages %.1e, loss %.1e, metrics %.1e, norms %.1e, entries %.1e", path.c_str(), name.c_str(),
                      f64 ? "f64" : "f32", e.advantages, e.loss, e.metrics, e.norm, e.entries);
        check::note(line);
        CHECK_MSG(e.advantages < 1e-12, line);
        // The oracle runs rotary and RMSNorm in float64: f64 agrees to rounding (but for llama's
        // inv_freq, whose llama3 scaling the engine computes apart from transformers' float32);
        // TRL takes the clip ratios in float32.
        const double tol = f64 ? f64_tol : 2e-5;
        CHECK_MSG(e.loss < tol && e.metrics < (f64 ? 1e-7 : 2e-5) && e.norm < tol && e.entries < tol, line);
      }
    }
  }
}

}  // namespace

TEST(grpo_golden_qwen2_every_loss_type_and_scaling_matches_trl) { check_model("qwen2-tiny", {"qwen2-tiny", "qwen2-tiny-f32.gguf"}, 1e-10); }
TEST(grpo_golden_qwen3_matches_trl) { check_model("qwen3-tiny", {"qwen3-tiny", "qwen3-tiny-f32.gguf"}, 1e-10); }
TEST(grpo_golden_llama_matches_trl) { check_model("llama-tiny", {"llama-tiny", "llama-tiny-f32.gguf"}, 1e-6); }

// Packing the batch into micro-batches (memory) gives the same loss and gradients.
TEST(grpo_micro_batches_change_nothing) {
  Json j = Json::parse(read_text(fixtures_dir() + "/golden/grpo/qwen2-tiny.json"), "qwen2-tiny");
  LoadOptions o;
  o.threads = 2;
  o.context = 64;
  auto m = Model::load(tiny("qwen2-tiny"), o);
  LoraAdapter ad = LoraAdapter::load(fixtures_dir() + "/golden/lora/qwen2-tiny", m->config());
  for (auto& cs : j.find("cases")->array()) {
    const std::string name = cs.find("name")->string();
    if (name != "grpo-offpolicy-kl" && name != "dr_grpo-group") continue;
    GrpoRollouts r = grpo_rollouts_from_json(to_text(*cs.find("rollouts")), name, m->config().eos_token_ids);
    GrpoLossAndGrads whole = grpo_loss_and_grads(*m, ad, r.batch, r.loss, GradPrecision::F64, 0);
    GrpoLossAndGrads split = grpo_loss_and_grads(*m, ad, r.batch, r.loss, GradPrecision::F64, 12);
    CHECK_NEAR(split.loss, whole.loss, 1e-12);
    CHECK(split.tokens == whole.tokens && split.loss_tokens == whole.loss_tokens);
    double diff = 0, norm = 0;
    for (size_t k = 0; k < whole.grads.mods.size(); k++)
      for (auto [a, b] : {std::pair{&whole.grads.mods[k].A, &split.grads.mods[k].A}, std::pair{&whole.grads.mods[k].B, &split.grads.mods[k].B}})
        for (size_t i = 0; i < a->size(); i++) {
          diff = std::max(diff, std::fabs((*a)[i] - (*b)[i]));
          norm = std::max(norm, std::fabs((*a)[i]));
        }
    CHECK_MSG(diff <= 1e-10 * norm, name << ": micro-batches move a gradient by " << diff << " (max " << norm << ")");
  }
}
