// The oracle: every tiny model, from its HF folder and its GGUF copy, against the logits that
// Hugging Face transformers computed in float64 (tests/fixtures/golden, made by
// tests/oracle/hf_golden.py). f32 weights and an f32 cache match within 1e-4 relative at every
// position; greedy decoding follows transformers' tokens wherever its top-2 margin is clear.
#include <cmath>
#include <fstream>
#include <sstream>

#include "aha/model.h"
#include "check.h"
#include "core/json.h"
#include "fixtures.h"
#include "golden_check.h"

using namespace aha;

namespace {

using golden::ids;
using golden::load_golden;
using golden::position_error;

void check_model(const std::string& golden_name, const std::string& path) {
  Json g = load_golden(golden_name);
  LoadOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  o.context = 512;
  auto m = Model::load(path, o);
  const int64_t V = m->config().vocab_size;
  CHECK(V == g.find("vocab_size")->integer());
  auto probes = ids(*g.find("probe_ids"));
  double worst = 0;
  for (auto& s : g.find("sequences")->array()) {
    auto toks = ids(*s.find("tokens"));
    int seq = m->new_sequence();
    std::vector<float> logits;
    m->forward({{seq, toks, true}}, logits);
    m->free_sequence(seq);
    auto& positions = s.find("positions")->array();
    CHECK(positions.size() == toks.size());
    for (size_t p = 0; p < positions.size(); p++) {
      double e = position_error(logits.data() + int64_t(p) * V, V, positions[p], probes);
      worst = std::max(worst, e);
      CHECK_MSG(e < 1e-4, path << ": sequence of " << toks.size() << " tokens, position " << p << ": error " << e);
    }
  }
  check::note(path + ": worst relative error " + std::to_string(worst));
  // Greedy continuation of the first text.
  auto& gr = *g.find("greedy");
  GenerateRequest r;
  r.prompt = ids(*g.find("sequences")->array()[0].find("tokens"));
  r.sampler.temperature = 0;
  r.max_tokens = int(gr.find("tokens")->array().size());
  r.ignore_eos = true;
  auto got = m->generate({r}, nullptr)[0].tokens;
  auto want = ids(*gr.find("tokens"));
  auto& margins = gr.find("margins")->array();
  for (size_t i = 0; i < want.size(); i++) {
    if (margins[i].number() < 1e-3) break;  // a near-tie: float32 may pick either
    CHECK_MSG(got[i] == want[i], path << ": greedy token " << i << " is " << got[i] << ", transformers chose " << want[i]);
  }
}

}  // namespace

TEST(golden_qwen2_matches_transformers) {
  check_model("qwen2-tiny", tiny("qwen2-tiny"));
  check_model("qwen2-tiny", tiny("qwen2-tiny-f32.gguf"));
  check_model("qwen2-tiny", tiny("qwen2-tiny-sharded"));
}

TEST(golden_qwen3_matches_transformers) {
  check_model("qwen3-tiny", tiny("qwen3-tiny"));
  check_model("qwen3-tiny", tiny("qwen3-tiny-f32.gguf"));
}

TEST(golden_llama_matches_transformers) {
  check_model("llama-tiny", tiny("llama-tiny"));
  check_model("llama-tiny", tiny("llama-tiny-f32.gguf"));
}
