// LoRA adapters in the inference forward (unmerged, several per model, chosen per sequence) and
// log-prob scoring: the inference logits with an adapter against the train-mode forward's
// log-probs, B = 0 against no adapter, batched scoring against one sequence at a time, and the
// prefix cache / identical-prompt forks never sharing K/V between adapters.
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "aha/error.h"
#include "aha/model.h"
#include "aha/train.h"
#include "check.h"
#include "core/json.h"
#include "fixtures.h"

using namespace aha;

namespace {

std::unique_ptr<Model> load(const std::string& path) {
  LoadOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  o.context = 64;
  return Model::load(path, o);
}

std::string golden_adapter(const std::string& model) {
  std::string base = model.substr(0, model.find('-', model.find('-') + 1));  // "llama-tiny-f32.gguf" → "llama-tiny"
  return fixtures_dir() + "/golden/lora/" + base;
}

// log softmax(row)[id]
double log_prob(const float* row, int64_t V, int32_t id) {
  double mx = -INFINITY, sum = 0;
  for (int64_t v = 0; v < V; v++) mx = std::max(mx, double(row[v]));
  for (int64_t v = 0; v < V; v++) sum += std::exp(double(row[v]) - mx);
  return double(row[id]) - mx - std::log(sum);
}

// Log-probs of tokens[1..] from the inference forward (every position's logits) with the adapter.
std::vector<double> inference_logprobs(Model& m, int adapter, const std::vector<int32_t>& tokens) {
  const int64_t V = m.config().vocab_size;
  int seq = m.new_sequence(adapter);
  std::vector<float> logits;
  m.forward({{seq, tokens, true}}, logits);
  m.free_sequence(seq);
  std::vector<double> out;
  for (size_t t = 0; t + 1 < tokens.size(); t++) out.push_back(log_prob(logits.data() + int64_t(t) * V, V, tokens[t + 1]));
  return out;
}

const std::vector<int32_t> kTokens = {9707, 11, 1879, 0, 374, 264, 1273, 315, 279, 40, 1079, 16};

GenerateRequest greedy(const std::vector<int32_t>& prompt, int adapter, int n = 6) {
  GenerateRequest r;
  r.prompt = prompt;
  r.adapter = adapter;
  r.max_tokens = n;
  r.sampler.temperature = 0;
  r.ignore_eos = true;
  return r;
}

}  // namespace

// The inference forward with a loaded PEFT adapter gives the log-probs the train-mode forward
// gives (HF folders, the GGUF copy with llama's permuted q/k rows, a q8_0 base), with the adapter
// on and off; the adapter changes them.
TEST(train_adapter_inference_matches_train_forward) {
  for (const char* name : {"qwen2-tiny", "qwen3-tiny", "llama-tiny", "llama-tiny-f32.gguf", "qwen2-tiny-q8_0.gguf"}) {
    auto m = load(tiny(name));
    const int id = m->load_adapter(golden_adapter(name));
    CHECK(id >= 1);
    CHECK(m->adapters().size() == 1 && m->adapters()[0].rank == 4);
    const std::vector<ScoreSequence> one = {{{kTokens[0]}, std::vector<int32_t>(kTokens.begin() + 1, kTokens.end())}};
    double max_shift = 0;
    for (int adapter : {id, 0}) {
      std::vector<double> inf = inference_logprobs(*m, adapter, kTokens);
      std::vector<double> tr = completion_logprobs(*m, adapter, one)[0];
      CHECK(inf.size() == tr.size());
      double err = 0;
      for (size_t i = 0; i < inf.size(); i++) err = std::max(err, std::fabs(inf[i] - tr[i]));
      check::note(std::string(name) + (adapter ? " adapter" : " base") + ": max |Δ log p| " + std::to_string(err));
      CHECK_MSG(err < 5e-5, name << (adapter ? " with the adapter" : " without") << ": inference vs train-mode log-probs differ by " << err);
      if (adapter) {
        std::vector<double> base = inference_logprobs(*m, 0, kTokens);
        for (size_t i = 0; i < inf.size(); i++) max_shift = std::max(max_shift, std::fabs(inf[i] - base[i]));
      }
    }
    CHECK_MSG(max_shift > 1e-3, name << ": the adapter moved the log-probs by only " << max_shift);
  }
}

// A freshly initialized adapter (B = 0) computes exactly what the base model computes.
TEST(train_adapter_zero_b_equals_no_adapter) {
  auto m = load(tiny("qwen2-tiny"));
  LoraConfig lc;
  lc.rank = 4;
  const int id = m->add_adapter(LoraAdapter::init(m->config(), lc, 3), "fresh");
  const int64_t V = m->config().vocab_size;
  std::vector<float> a, b;
  int s0 = m->new_sequence(0), s1 = m->new_sequence(id);
  m->forward({{s0, kTokens, true}, {s1, kTokens, true}}, a);
  CHECK(a.size() == 2 * kTokens.size() * size_t(V));
  for (size_t i = 0; i < kTokens.size() * size_t(V); i++) CHECK_MSG(a[i] == a[i + kTokens.size() * size_t(V)], "logit " << i << " differs");
  m->free_sequence(s0);
  m->free_sequence(s1);
  // and the same numbers as a model that never had an adapter
  auto plain = load(tiny("qwen2-tiny"));
  int s = plain->new_sequence();
  plain->forward({{s, kTokens, true}}, b);
  for (size_t i = 0; i < b.size(); i++) CHECK(a[i] == b[i]);
}

// Scoring several sequences in one batch gives each sequence's log-probs alone, adapter on and off.
TEST(train_completion_logprobs_batched) {
  auto m = load(tiny("qwen3-tiny"));
  const int id = m->load_adapter(golden_adapter("qwen3-tiny"));
  const std::vector<ScoreSequence> seqs = {
      {{9707, 11, 1879}, {0, 374, 264}},
      {{40}, {1079, 16, 17, 18, 19}},
      {{9707, 11, 1879}, {0, 374, 264}},  // the same as the first: the same numbers
  };
  for (int adapter : {id, 0}) {
    auto all = completion_logprobs(*m, adapter, seqs);
    CHECK(all.size() == 3);
    for (size_t i = 0; i < seqs.size(); i++) {
      auto alone = completion_logprobs(*m, adapter, {seqs[i]})[0];
      CHECK(all[i].size() == seqs[i].completion.size() && alone.size() == all[i].size());
      for (size_t j = 0; j < alone.size(); j++) {
        CHECK_MSG(std::fabs(all[i][j] - alone[j]) < 1e-5, "sequence " << i << " token " << j << ": " << all[i][j] << " batched, " << alone[j] << " alone");
        CHECK(all[i][j] < 0);
      }
      // and against the inference forward of prompt + completion
      std::vector<int32_t> toks = seqs[i].prompt;
      toks.insert(toks.end(), seqs[i].completion.begin(), seqs[i].completion.end());
      auto inf = inference_logprobs(*m, adapter, toks);
      for (size_t j = 0; j < alone.size(); j++) CHECK(std::fabs(inf[seqs[i].prompt.size() - 1 + j] - alone[j]) < 2e-4);
    }
    for (size_t j = 0; j < all[0].size(); j++) CHECK(all[0][j] == all[2][j]);
  }
  bool threw = false;
  try {
    completion_logprobs(*m, 0, {{{1, 2}, {}}});
  } catch (const Error& e) {
    threw = std::string(e.what()).find("empty completion") != std::string::npos;
  }
  CHECK(threw);
  threw = false;
  try {
    completion_logprobs(*m, 7, {{{1, 2}, {3}}});
  } catch (const Error& e) {
    threw = std::string(e.what()).find("no LoRA adapter 7") != std::string::npos;
  }
  CHECK(threw);
}

// Generation: K/V computed with one adapter is never reused for another or for none (prefix
// cache, forks of identical prompts), requests with different adapters decode together with the
// results each gives alone, and new weights drop the adapter's cached prefixes.
TEST(train_adapter_generation_cache_isolation) {
  const std::vector<int32_t> prompt(kTokens.begin(), kTokens.begin() + 9);
  // What each gives alone, on fresh models (no cache to share).
  std::vector<int32_t> want_base, want_x;
  {
    auto m = load(tiny("qwen2-tiny"));
    want_base = m->generate({greedy(prompt, 0)}, nullptr)[0].tokens;
  }
  {
    auto m = load(tiny("qwen2-tiny"));
    const int x = m->load_adapter(golden_adapter("qwen2-tiny"));
    want_x = m->generate({greedy(prompt, x)}, nullptr)[0].tokens;
  }
  CHECK_MSG(want_base != want_x, "the adapter does not change the greedy continuation; the test cannot tell them apart");

  auto m = load(tiny("qwen2-tiny"));
  const int x = m->load_adapter(golden_adapter("qwen2-tiny"), "x");
  const int y = m->load_adapter(golden_adapter("qwen2-tiny"), "y");
  CHECK(x != y && m->adapters().size() == 2 && m->adapters()[1].name == "y");
  auto r1 = m->generate({greedy(prompt, x)}, nullptr);
  CHECK(r1[0].tokens == want_x && r1[0].cached_tokens == 0);
  // the same prompt without the adapter: nothing cached for it
  auto r2 = m->generate({greedy(prompt, 0)}, nullptr);
  CHECK_MSG(r2[0].cached_tokens == 0, "a prefix computed with adapter x was reused without it (" << r2[0].cached_tokens << " tokens)");
  CHECK(r2[0].tokens == want_base);
  // another adapter with the same weights still computes its own prefix
  auto r3 = m->generate({greedy(prompt, y)}, nullptr);
  CHECK(r3[0].cached_tokens == 0 && r3[0].tokens == want_x);
  // x again: its own prefix is reused
  auto r4 = m->generate({greedy(prompt, x)}, nullptr);
  CHECK(r4[0].cached_tokens == int64_t(prompt.size()) - 1 && r4[0].tokens == want_x);
  // one call mixing adapters on one prompt: forks only within an adapter, decoded together
  auto r5 = m->generate({greedy(prompt, x), greedy(prompt, 0), greedy(prompt, x), greedy(prompt, 0)}, nullptr);
  CHECK(r5[0].tokens == want_x && r5[2].tokens == want_x);
  CHECK(r5[1].tokens == want_base && r5[3].tokens == want_base);
  CHECK(r5[2].cached_tokens == int64_t(prompt.size()) && r5[3].cached_tokens == int64_t(prompt.size()));
  // new weights (B = 0: the base model's numbers): x's cached prefixes are gone
  LoraAdapter zero = m->adapter(x);
  for (auto& p : zero.weights().mods) std::fill(p.B.begin(), p.B.end(), 0.0f);
  m->update_adapter(x, zero);
  CHECK(m->adapters()[0].version == 1);
  auto r6 = m->generate({greedy(prompt, x)}, nullptr);
  CHECK_MSG(r6[0].cached_tokens == 0, "a prefix computed with adapter x's old weights was reused");
  CHECK(r6[0].tokens == want_base);
  // removal: refused while a sequence uses it, then requests for it fail
  int s = m->new_sequence(y);
  CHECK(m->sequence_adapter(s) == y && m->sequence_adapter(m->fork_sequence(s)) == y);
  bool threw = false;
  try {
    m->remove_adapter(y);
  } catch (const Error& e) {
    threw = std::string(e.what()).find("in use") != std::string::npos;
  }
  CHECK(threw);
  m->free_sequence(s);
  m->free_sequence(s + 1);
  m->remove_adapter(y);
  threw = false;
  try {
    m->generate({greedy(prompt, y)}, nullptr);
  } catch (const Error& e) {
    threw = std::string(e.what()).find("no LoRA adapter") != std::string::npos;
  }
  CHECK(threw);
  // an adapter for another model is refused with the file named
  threw = false;
  try {
    m->load_adapter(golden_adapter("qwen3-tiny"));
  } catch (const Error& e) {
    threw = std::string(e.what()).find("adapter_model.safetensors") != std::string::npos;
  }
  CHECK(threw);
}

// Adapters our engine wrote (`aha train sft`), loaded by PEFT onto transformers in float64
// (tests/fixtures/golden/lora-logits, made by tests/oracle/lora_logits_golden.py): the engine's
// unmerged forward with the same files gives PEFT's logits (HF folders, GGUF copies; a DeepSeek
// adapter on every MLA, dense-layer, shared- and routed-expert projection).
TEST(train_adapter_logits_match_peft) {
  for (auto [golden, path] : {std::pair{"qwen2-tiny", "qwen2-tiny"}, std::pair{"qwen3-tiny", "qwen3-tiny"}, std::pair{"llama-tiny", "llama-tiny"},
                              std::pair{"llama-tiny", "llama-tiny-f32.gguf"}, std::pair{"qwen2-tiny", "qwen2-tiny-f32.gguf"},
                              std::pair{"deepseek-v3-tiny", "deepseek-v3-tiny"}, std::pair{"deepseek-v3-tiny", "deepseek-v3-tiny-kv_b.gguf"}}) {
    const std::string gpath = fixtures_dir() + "/golden/lora-logits/" + golden + ".json";
    std::ifstream in(gpath);
    if (!in) check::fail(__FILE__, __LINE__, "missing golden " + gpath + " (make it with tests/oracle/lora_logits_golden.py)");
    std::stringstream ss;
    ss << in.rdbuf();
    Json g = Json::parse(ss.str(), gpath);
    const bool ds = std::string(path).rfind("deepseek", 0) == 0;
    auto m = load(ds ? fixtures_dir() + "/generated-deepseek/" + path : tiny(path));
    const int id = m->load_adapter(fixtures_dir() + "/golden/lora-logits/" + golden);
    std::vector<int32_t> tokens;
    for (auto& t : g.find("tokens")->array()) tokens.push_back(int32_t(t.integer()));
    std::vector<int32_t> probes;
    for (auto& t : g.find("probe_ids")->array()) probes.push_back(int32_t(t.integer()));
    const int64_t V = m->config().vocab_size;
    std::vector<float> logits;
    int seq = m->new_sequence(id);
    m->forward({{seq, tokens, true}}, logits);
    m->free_sequence(seq);
    double worst = 0, shift = 0;
    auto& pos = g.find("positions")->array();
    CHECK(pos.size() == tokens.size());
    for (size_t t = 0; t < pos.size(); t++) {
      const float* row = logits.data() + int64_t(t) * V;
      const double scale = pos[t].find("max_abs")->number();
      double mx = -INFINITY, sum = 0;
      for (int64_t v = 0; v < V; v++) mx = std::max(mx, double(row[v]));
      for (int64_t v = 0; v < V; v++) sum += std::exp(double(row[v]) - mx);
      worst = std::max(worst, std::fabs(mx + std::log(sum) - pos[t].find("logsumexp")->number()) / scale);
      for (auto& e : pos[t].find("top")->array()) worst = std::max(worst, std::fabs(row[e.array()[0].integer()] - e.array()[1].number()) / scale);
      auto& pv = pos[t].find("probes")->array();
      for (size_t k = 0; k < probes.size(); k++) worst = std::max(worst, std::fabs(row[probes[k]] - pv[k].number()) / scale);
      shift = std::max(shift, std::fabs(pos[t].find("logsumexp")->number() - pos[t].find("base_logsumexp")->number()));
    }
    char line[200];
    std::snprintf(line, sizeof line, "%s: max error / max |logit| against PEFT %.2e (the adapter moves logsumexp by up to %.3f)", path, worst, shift);
    check::note(line);
    CHECK_MSG(worst < 1e-4, path << ": logits with our adapter differ from PEFT's by " << worst << " of the largest logit");
    CHECK_MSG(shift > 1e-2, golden << ": the golden's adapter hardly changes the logits");
  }
}
