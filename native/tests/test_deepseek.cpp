// The deepseek family (DeepSeek-V2/V3): config mapping and its errors, the MoE gate, the MLA
// latent cache, and every tiny model (tests/fixtures/generated-deepseek, make-tiny-deepseek.ts)
// against transformers' own DeepseekV2/V3ForCausalLM in float64 (tests/fixtures/golden/deepseek,
// hf_golden_deepseek.py): f32 weights and cache within 1e-4 relative at every position, in one
// prefill and decoding token by token through the cache, with the absorbed and the expanded MLA.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "aha/error.h"
#include "aha/kernels.h"
#include "aha/model.h"
#include "check.h"
#include "core/json.h"
#include "fixtures.h"
#include "golden_check.h"
#include "models/deepseek.h"
#include "models/loader.h"
#include "runtime/mla_cache.h"
#include "formats/safetensors_writer.h"

using namespace aha;

namespace {

const char* const kModels[] = {"deepseek-v2-lite-tiny", "deepseek-v2-tiny", "deepseek-v3-tiny", "deepseek-v3-tiny-dense2"};
// bf16 weights (the released dtype): its own golden, since transformers' float64 holds bf16 exactly.
const char* const kGoldenModels[] = {"deepseek-v2-lite-tiny", "deepseek-v2-tiny", "deepseek-v3-tiny", "deepseek-v3-tiny-dense2", "deepseek-v3-tiny-bf16"};

std::unique_ptr<Model> load(const std::string& name, MlaAttention mode, DType kv = DType::F32, int experts = 0, int threads = 2, int64_t context = 256) {
  LoadOptions o;
  o.threads = threads;
  o.kv_dtype = kv;
  o.context = context;
  o.mla_attention = mode;
  o.experts_per_token = experts;
  return Model::load(tiny_deepseek(name), o);
}

// Logits of every token of `toks`: in one forward (prefill) or one token per forward (decode).
std::vector<float> run(Model& m, const std::vector<int32_t>& toks, bool step_by_step) {
  const int64_t V = m.config().vocab_size;
  int seq = m.new_sequence();
  std::vector<float> all, logits;
  if (!step_by_step) {
    m.forward({{seq, toks, true}}, all);
  } else {
    for (int32_t t : toks) {
      m.forward({{seq, {t}, false}}, logits);
      all.insert(all.end(), logits.begin(), logits.begin() + V);
    }
  }
  m.free_sequence(seq);
  return all;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b, int64_t V) {
  CHECK(a.size() == b.size());
  double worst = 0;
  for (size_t r = 0; r < a.size() / size_t(V); r++) {
    double mx = 0, d = 0;
    for (int64_t i = 0; i < V; i++) {
      mx = std::max(mx, std::fabs(double(a[r * size_t(V) + size_t(i)])));
      d = std::max(d, std::fabs(double(a[r * size_t(V) + size_t(i)]) - b[r * size_t(V) + size_t(i)]));
    }
    worst = std::max(worst, d / mx);
  }
  return worst;
}

// Worst golden error over every sequence of the golden, computed as `how` computes logits.
double golden_error(Model& m, const Json& g, bool step_by_step, const std::string& what) {
  const int64_t V = m.config().vocab_size;
  auto probes = golden::ids(*g.find("probe_ids"));
  double worst = 0;
  for (auto& s : g.find("sequences")->array()) {
    auto toks = golden::ids(*s.find("tokens"));
    auto logits = run(m, toks, step_by_step);
    auto& positions = s.find("positions")->array();
    CHECK(positions.size() == toks.size());
    for (size_t p = 0; p < positions.size(); p++) {
      double e = golden::position_error(logits.data() + int64_t(p) * V, V, positions[p], probes);
      worst = std::max(worst, e);
      CHECK_MSG(e < 1e-4, what << ": sequence of " << toks.size() << " tokens, position " << p << ": error " << e);
    }
  }
  check::note(what + ": worst relative error " + std::to_string(worst));
  return worst;
}

std::string read_config(const std::string& name) {
  std::ifstream in(tiny_deepseek(name) + "/config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// config.json text with `key`'s value replaced (the value as JSON text).
std::string with(std::string text, const std::string& key, const std::string& value) {
  const std::string k = "\"" + key + "\": ";
  size_t at = text.find(k);
  if (at == std::string::npos) {
    at = text.find('{') + 1;
    return text.insert(at, "\n  " + k + value + ",");
  }
  size_t v0 = at + k.size(), v1 = text.find_first_of(",\n", v0);
  if (text[v0] == '{') v1 = text.find('}', v0) + 1;
  return text.replace(v0, v1 - v0, value);
}

}  // namespace

TEST(deepseek_goldens_prefill_and_cached_decode) {
  for (const char* name : kGoldenModels) {
    Json g = golden::load_golden(std::string("deepseek/") + name);
    auto m = load(name, MlaAttention::Auto);
    CHECK(m->config().vocab_size == g.find("vocab_size")->integer());
    // One loaded model, the switch flipped between runs. Prefill on two threads; decode (hundreds
    // of tiny steps) on one, which is what a shared 2-core test machine runs fastest.
    for (MlaAttention mode : {MlaAttention::Auto, MlaAttention::Absorbed, MlaAttention::Expanded}) {
      m->set_mla_attention(mode);
      const char* mn = mode == MlaAttention::Auto ? "auto" : mode == MlaAttention::Absorbed ? "absorbed" : "expanded";
      m->set_threads(2);
      golden_error(*m, g, false, std::string(name) + " prefill, " + mn);
      m->set_threads(1);
      if (mode != MlaAttention::Auto) golden_error(*m, g, true, std::string(name) + " decode, " + mn);
    }
  }
}

TEST(deepseek_greedy_follows_transformers) {
  for (const char* name : kGoldenModels) {
    Json g = golden::load_golden(std::string("deepseek/") + name);
    auto m = load(name, MlaAttention::Auto);
    auto& gr = *g.find("greedy");
    GenerateRequest r;
    r.prompt = golden::ids(*g.find("sequences")->array()[0].find("tokens"));
    r.sampler.temperature = 0;
    r.max_tokens = int(gr.find("tokens")->array().size());
    r.ignore_eos = true;
    auto got = m->generate({r}, nullptr)[0].tokens;
    auto want = golden::ids(*gr.find("tokens"));
    auto& margins = gr.find("margins")->array();
    CHECK(got.size() == want.size());
    for (size_t i = 0; i < want.size(); i++) {
      if (margins[i].number() < 1e-3) break;  // a near-tie: float32 may pick either
      CHECK_MSG(got[i] == want[i], name << ": greedy token " << i << " is " << got[i] << ", transformers chose " << want[i]);
    }
  }
}

// llama.cpp's deepseek2 GGUF, both layouts (make-tiny-deepseek.ts writes them as the converter
// does: experts stacked, kv_b split into k_b/v_b for the newer one): the same weights, so the
// same logits as the safetensors copy, and transformers' within 1e-4. The k_b/v_b layout has no
// expanded form: auto runs absorbed, expanded is a clear error.
TEST(deepseek_gguf_both_layouts_match_transformers) {
  struct Case {
    const char* file;
    const char* golden;
    bool expanded;
  };
  for (const Case& c : {Case{"deepseek-v2-lite-tiny-kv_b.gguf", "deepseek-v2-lite-tiny", true},
                        Case{"deepseek-v3-tiny-kv_b.gguf", "deepseek-v3-tiny", true},
                        Case{"deepseek-v3-tiny-k_b.gguf", "deepseek-v3-tiny", false}}) {
    Json g = golden::load_golden(std::string("deepseek/") + c.golden);
    auto m = load(c.file, MlaAttention::Auto);
    auto hf = load(c.golden, MlaAttention::Auto);
    CHECK(m->config().arch == hf->config().arch);
    CHECK(m->config().deepseek.n_group == hf->config().deepseek.n_group);
    CHECK(m->config().deepseek.score_correction_bias == hf->config().deepseek.score_correction_bias);
    CHECK(m->info().parameters == hf->info().parameters);
    auto toks = golden::ids(*g.find("sequences")->array()[1].find("tokens"));
    const int64_t V = m->config().vocab_size;
    if (!c.expanded) hf->set_mla_attention(MlaAttention::Absorbed);  // what auto runs on this file
    CHECK_MSG(max_rel_diff(run(*m, toks, false), run(*hf, toks, false), V) < 1e-6, c.file << ": logits differ from the safetensors copy");
    golden_error(*m, g, false, std::string(c.file) + " prefill, auto");
    m->set_mla_attention(MlaAttention::Absorbed);
    golden_error(*m, g, true, std::string(c.file) + " decode, absorbed");
    m->set_mla_attention(MlaAttention::Expanded);
    if (c.expanded) {
      golden_error(*m, g, false, std::string(c.file) + " prefill, expanded");
    } else {
      std::vector<float> logits;
      int seq = m->new_sequence();
      CHECK_THROWS(m->forward({{seq, {toks[0], toks[1]}, true}}, logits), "needs attn_kv_b");
    }
  }
}

// Released checkpoints come in shards with model.safetensors.index.json: the same weights, the same logits.
TEST(deepseek_sharded_checkpoint_equals_single_file) {
  Json g = golden::load_golden("deepseek/deepseek-v3-tiny");
  auto toks = golden::ids(*g.find("sequences")->array()[1].find("tokens"));
  auto one = load("deepseek-v3-tiny", MlaAttention::Auto);
  auto sharded = load("deepseek-v3-tiny-sharded", MlaAttention::Auto);
  CHECK(sharded->info().parameters == one->info().parameters);
  CHECK(run(*one, toks, false) == run(*sharded, toks, false));
  golden_error(*sharded, g, false, "deepseek-v3-tiny-sharded prefill");
}

// The two MLA forms on the same tokens: a prefill in chunks, then decode steps, with each chunk's
// attention reading what the previous ones cached.
TEST(deepseek_absorbed_equals_expanded) {
  for (const char* name : kModels) {
    Json g = golden::load_golden(std::string("deepseek/") + name);
    auto toks = golden::ids(*g.find("sequences")->array()[2].find("tokens"));  // the chat, the longest
    CHECK(toks.size() > 12);
    std::map<MlaAttention, std::vector<float>> out;
    std::map<MlaAttention, std::vector<float>> kqv;
    for (MlaAttention mode : {MlaAttention::Absorbed, MlaAttention::Expanded}) {
      auto m = load(name, mode);
      m->set_dump_hook([&](const std::string& n, const float* d, int64_t rows, int64_t cols) {
        if (n == "blk.1.kqv_out") kqv[mode].insert(kqv[mode].end(), d, d + rows * cols);
      });
      int seq = m->new_sequence();
      std::vector<float> logits;
      const size_t a = 5, b2 = 11;
      m->forward({{seq, {toks.begin(), toks.begin() + a}, true}}, logits);
      out[mode] = logits;
      m->forward({{seq, {toks.begin() + a, toks.begin() + b2}, true}}, logits);
      out[mode].insert(out[mode].end(), logits.begin(), logits.end());
      for (size_t i = b2; i < toks.size(); i++) {
        m->forward({{seq, {toks[i]}, false}}, logits);
        out[mode].insert(out[mode].end(), logits.begin(), logits.end());
      }
    }
    const int64_t V = 129280;
    double d = max_rel_diff(out[MlaAttention::Expanded], out[MlaAttention::Absorbed], V);
    check::note(std::string(name) + ": absorbed vs expanded, logits " + std::to_string(d));
    CHECK_MSG(d < 1e-5, name << ": absorbed and expanded logits differ by " << d);
    // The attention output itself (not only what survives to the logits).
    const auto& ka = kqv[MlaAttention::Absorbed];
    const auto& ke = kqv[MlaAttention::Expanded];
    CHECK(ka.size() == ke.size() && !ka.empty());
    double mx = 0, dd = 0;
    for (size_t i = 0; i < ka.size(); i++) mx = std::max(mx, std::fabs(double(ke[i]))), dd = std::max(dd, std::fabs(double(ka[i]) - ke[i]));
    CHECK_MSG(dd / mx < 1e-5, name << ": kqv_out differs by " << dd / mx);
  }
}

TEST(deepseek_mla_cache_holds_only_the_latent) {
  // bytes per token per layer = (kv_lora_rank + qk_rope_head_dim) × element size
  MlaCache c(3, 32, 16, DType::F32, 4, 16);
  CHECK(c.bytes_per_token() == 3 * (32 + 16) * 4);
  CHECK(c.bytes() == 4 * 16 * c.bytes_per_token());
  MlaCache h(3, 32, 16, DType::F16, 4, 16);
  CHECK(h.bytes_per_token() == 3 * (32 + 16) * 2);
  MlaCache bh(3, 32, 16, DType::BF16, 4, 16);
  CHECK(bh.bytes_per_token() == 3 * (32 + 16) * 2);
  CHECK_THROWS(MlaCache(3, 32, 16, DType::Q8_0, 4, 16), "MLA cache dtype must be f16, bf16 or f32, not q8_0");
  // The tiled layout (bf16 where the AMX tile attention runs) holds the same values as slot-major.
  {
    MlaCache flat(2, 64, 32, DType::BF16, 3, 32, false), tiled(2, 64, 32, DType::BF16, 3, 32, true);
    CHECK(!flat.tiled() && tiled.tiled() && flat.bytes() == tiled.bytes());
    CHECK(MlaCache(2, 64, 32, DType::BF16, 3, 32).tiled() == (cpu_has_amx_bf16() && active_isa() == Isa::Amx));
    CHECK(!MlaCache(2, 48, 16, DType::BF16, 3, 32).tiled());  // columns not whole 32-value groups
    CHECK_THROWS(MlaCache(2, 64, 32, DType::F32, 3, 32, true), "a tiled MLA cache needs bf16");
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    std::vector<float> c(64), k(32), c1(64), k1(32), c2(64), k2(32);
    for (int l = 0; l < 2; l++)
      for (int32_t b = 0; b < 3; b++)
        for (int64_t sl = 0; sl < 32; sl++) {
          for (auto& x : c) x = nd(rng);
          for (auto& x : k) x = nd(rng);
          flat.write(l, b, sl, c.data(), k.data());
          tiled.write(l, b, sl, c.data(), k.data());
        }
    bool same = true;
    for (int l = 0; l < 2; l++)
      for (int32_t b = 0; b < 3; b++)
        for (int64_t sl = 0; sl < 32; sl++) {
          flat.read(l, b, sl, c1.data(), k1.data());
          tiled.read(l, b, sl, c2.data(), k2.data());
          same = same && c1 == c2 && k1 == k2;
        }
    CHECK_MSG(same, "tiled and slot-major caches read back different values");
    CHECK(std::memcmp(flat.block_data(1, 2), tiled.block_data(1, 2), size_t(32) * 96 * 2) != 0);  // but lay them out differently
  }
  // The loaded model's cache, measured: capacity × n_layers × (kv_lora_rank + qk_rope_head_dim) × 4.
  for (const char* name : kModels) {
    for (DType dt : {DType::F32, DType::F16}) {
      auto m = load(name, MlaAttention::Auto, dt);
      const DeepseekConfig& d = m->config().deepseek;
      const int64_t capacity = m->free_cache_tokens();
      const int64_t per_token = m->config().num_hidden_layers * (d.kv_lora_rank + d.qk_rope_head_dim) * (dt == DType::F32 ? 4 : 2);
      CHECK_MSG(m->info().kv_bytes == capacity * per_token, name << ": " << m->info().kv_bytes << " bytes for " << capacity << " tokens");
      // What a dense cache of the expanded K/V would take instead, for the note.
      const int64_t expanded = m->config().num_hidden_layers * m->config().num_attention_heads *
                               (d.qk_nope_head_dim + d.qk_rope_head_dim + d.v_head_dim) * (dt == DType::F32 ? 4 : 2);
      check::note(std::string(name) + ": " + std::to_string(per_token) + " cache bytes per token (expanded K/V: " + std::to_string(expanded) + ")");
    }
  }
  // An f16 cache round-trips through fp16 and stays close to an f32 one. Compared on the attention
  // outputs of the layers before the first routed MoE block's output (layer 0 is dense): past it
  // the logits are not a continuous function of the cache, because a near-tie in the router
  // flips an expert (on these tokens a relative 1e-6 change of the attention output at token 11
  // moves its logits by 4.9 of 7).
  Json g = golden::load_golden("deepseek/deepseek-v3-tiny");
  auto toks = golden::ids(*g.find("sequences")->array()[0].find("tokens"));
  auto attn = [&](DType kv) {
    auto m = load("deepseek-v3-tiny", MlaAttention::Absorbed, kv);
    std::vector<float> got;
    m->set_dump_hook([&](const std::string& n, const float* d, int64_t rows, int64_t cols) {
      if (n == "blk.0.kqv_out" || n == "blk.1.kqv_out") got.insert(got.end(), d, d + rows * cols);
    });
    run(*m, toks, true);
    return got;
  };
  const std::vector<float> a = attn(DType::F16), b = attn(DType::F32);
  CHECK(!a.empty() && a.size() == b.size());
  const double d = nerr(a, b);
  check::note("deepseek-v3-tiny: f16 cache vs f32 cache, attention of layers 0-1: " + std::to_string(d));
  CHECK(d > 0 && d < 1e-2);
}

// Long contexts: absorbed attention splits each token's context between the threads (flash-decoding,
// slices merged by their log-sum-exp), and on a bf16 cache where AMX-BF16 runs it attends in bf16
// tiles. Prefill past the split point and decode steps, against one thread on an f32 cache (no
// split, the f32 op).
TEST(deepseek_long_context_split_and_bf16_cache) {
  auto make = [](int threads, DType kv) { return load("deepseek-v2-lite-tiny-r64", MlaAttention::Absorbed, kv, 0, threads, 1024); };
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tok(0, 4095);
  std::vector<int32_t> toks(700);
  for (auto& t : toks) t = tok(rng);
  CHECK(int64_t(toks.size()) > DeepseekModel::kSplitContext + 100);
  auto run_long = [&](Model& m) {
    const int64_t V = m.config().vocab_size;
    int seq = m.new_sequence();
    std::vector<float> all, logits;
    const size_t prefill = toks.size() - 4;
    m.forward({{seq, {toks.begin(), toks.begin() + int64_t(prefill)}, true}}, logits);
    all.insert(all.end(), logits.end() - 3 * V, logits.end());  // the last rows: past the split point
    for (size_t i = prefill; i < toks.size(); i++) {
      m.forward({{seq, {toks[i]}, false}}, logits);
      all.insert(all.end(), logits.begin(), logits.begin() + V);
    }
    m.free_sequence(seq);
    return all;
  };
  const int64_t V = 4096;
  const auto ref = run_long(*make(1, DType::F32));
  const double split = max_rel_diff(ref, run_long(*make(2, DType::F32)), V);
  const auto bf16_one = run_long(*make(1, DType::BF16)), bf16_two = run_long(*make(2, DType::BF16));
  const double bf16 = max_rel_diff(ref, bf16_two, V), bf16_split = max_rel_diff(bf16_one, bf16_two, V);
  check::note("deepseek-v2-lite-tiny-r64, 700 tokens: split vs one thread (f32 cache) " + std::to_string(split) + "; bf16 cache" +
              (cpu_has_amx_bf16() ? " (AMX-BF16 tiles)" : "") + " vs f32 " + std::to_string(bf16) + ", split vs not " + std::to_string(bf16_split));
  CHECK_MSG(split < 1e-5, "the context split changes the logits by " << split);
  CHECK_MSG(bf16 > 0 && bf16 < 2e-2, "a bf16 cache is off by " << bf16);
  CHECK_MSG(bf16_split < 1e-2, "the split on a bf16 cache changes the logits by " << bf16_split);
}

TEST(deepseek_cache_is_shared_by_forks_and_prefixes) {
  Json g = golden::load_golden("deepseek/deepseek-v3-tiny");
  auto toks = golden::ids(*g.find("sequences")->array()[1].find("tokens"));  // 18 + 13 tokens
  auto more = golden::ids(*g.find("sequences")->array()[0].find("tokens"));
  toks.insert(toks.end(), more.begin(), more.end());
  CHECK(toks.size() > 23);
  auto m = load("deepseek-v3-tiny", MlaAttention::Auto);
  const int64_t V = m->config().vocab_size;
  auto whole = run(*m, toks, false);
  // A prompt of 21 tokens ends mid-block; the forks copy that block before they write to it.
  int seq = m->new_sequence();
  std::vector<float> logits;
  m->forward({{seq, {toks.begin(), toks.begin() + 21}, false}}, logits);
  const int64_t free_before = m->free_cache_tokens();
  int f1 = m->fork_sequence(seq), f2 = m->fork_sequence(seq);
  CHECK(m->free_cache_tokens() == free_before);
  std::vector<float> l1, l2;
  m->forward({{f1, {toks[21]}, false}, {f2, {toks[21], toks[22]}, true}}, l1);
  // f1's row is token 21, f2's rows are tokens 21 and 22.
  for (int64_t i = 0; i < V; i++) {
    CHECK_NEAR(l1[size_t(i)], whole[size_t(21 * V + i)], 1e-4 * 30);
    CHECK_NEAR(l1[size_t(V + i)], whole[size_t(21 * V + i)], 1e-4 * 30);
    CHECK_NEAR(l1[size_t(2 * V + i)], whole[size_t(22 * V + i)], 1e-4 * 30);
  }
  CHECK(max_rel_diff(std::vector<float>(whole.begin() + 21 * V, whole.begin() + 22 * V), std::vector<float>(l1.begin(), l1.begin() + V), V) < 1e-5);
  // The parent's tokens are untouched by the forks' writes.
  m->forward({{seq, {toks[21]}, false}}, l2);
  CHECK(max_rel_diff(std::vector<float>(whole.begin() + 21 * V, whole.begin() + 22 * V), l2, V) < 1e-5);
  m->free_sequence(f1);
  m->free_sequence(f2);
  m->free_sequence(seq);
  // Two requests with the same prompt: one prefill, forked; the same greedy tokens.
  GenerateRequest r;
  r.prompt = toks;
  r.sampler.temperature = 0;
  r.max_tokens = 6;
  r.ignore_eos = true;
  auto res = m->generate({r, r}, nullptr);
  CHECK(res[0].tokens == res[1].tokens);
  CHECK(res[1].cached_tokens == int64_t(toks.size()));
}

// The bf16 cache in the tile layout (where AMX-BF16 runs) under forks: a prompt ending mid-block,
// two forks that copy that block before they write, and the parent after them. The parent and the
// one-token fork decode the next token bit for bit alike (absorbed, the same cached prefix); the
// two-token fork runs expanded, as the prefill did, and matches its rows.
TEST(deepseek_tiled_cache_forks_copy_on_write) {
  auto m = load("deepseek-v2-lite-tiny-r64", MlaAttention::Auto, DType::BF16);
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tok(0, 4095);
  std::vector<int32_t> toks(24);
  for (auto& t : toks) t = tok(rng);
  const int64_t V = m->config().vocab_size;
  const std::vector<float> whole = run(*m, toks, false);
  int seq = m->new_sequence();
  std::vector<float> logits, l1, l2;
  m->forward({{seq, {toks.begin(), toks.begin() + 21}, false}}, logits);
  int f1 = m->fork_sequence(seq), f2 = m->fork_sequence(seq);
  m->forward({{f1, {toks[21]}, false}, {f2, {toks[21], toks[22]}, true}}, l1);
  m->forward({{seq, {toks[21]}, false}}, l2);
  CHECK(std::equal(l2.begin(), l2.begin() + V, l1.begin()));  // parent = fork 1
  const std::vector<float> row21(whole.begin() + 21 * V, whole.begin() + 22 * V), row22(whole.begin() + 22 * V, whole.begin() + 23 * V);
  CHECK(max_rel_diff(row21, std::vector<float>(l1.begin() + V, l1.begin() + 2 * V), V) < 1e-5);  // fork 2, expanded
  CHECK(max_rel_diff(row22, std::vector<float>(l1.begin() + 2 * V, l1.begin() + 3 * V), V) < 1e-5);
  // Absorbed bf16 tiles against the expanded prefill: their rounding apart.
  CHECK(max_rel_diff(row21, std::vector<float>(l1.begin(), l1.begin() + V), V) < 2e-2);
  for (int s : {f1, f2, seq}) m->free_sequence(s);
}

// The named intermediates a reference can be diffed against, and what the gate's output means.
TEST(deepseek_dump_names_and_gate_output) {
  Json g = golden::load_golden("deepseek/deepseek-v3-tiny");
  auto toks = golden::ids(*g.find("sequences")->array()[0].find("tokens"));
  auto m = load("deepseek-v3-tiny", MlaAttention::Auto);
  std::map<std::string, std::pair<int64_t, int64_t>> seen;
  std::vector<float> weights;
  m->set_dump_hook([&](const std::string& n, const float* d, int64_t rows, int64_t cols) {
    seen[n] = {rows, cols};
    if (n == "blk.2.ffn_moe_weights") weights.assign(d, d + rows * cols);
  });
  run(*m, toks, false);
  const int64_t T = int64_t(toks.size());
  for (const char* n : {"inp_embd", "blk.0.attn_norm", "blk.0.q_a", "blk.0.q", "blk.0.kv_cmpr", "blk.0.q_rope", "blk.0.kv_rope", "blk.0.kqv_out",
                        "blk.0.attn_out", "blk.0.ffn_norm", "blk.0.ffn_out", "blk.0.out", "blk.1.ffn_moe_logits", "blk.1.ffn_moe_weights",
                        "blk.1.ffn_moe_out", "blk.1.ffn_shexp", "blk.1.ffn_out", "result_norm", "result_output"})
    CHECK_MSG(seen.count(n), "no intermediate named " << n);
  CHECK(seen["blk.0.kv_cmpr"] == std::make_pair(T, int64_t(32 + 16)));
  CHECK(seen["blk.1.ffn_moe_logits"] == std::make_pair(T, int64_t(16)));
  CHECK(seen["blk.1.ffn_moe_weights"] == std::make_pair(T, int64_t(4)));
  CHECK(!seen.count("blk.0.ffn_moe_logits"));  // first_k_dense_replace = 1
  // norm_topk_prob: each token's 4 weights sum to routed_scaling_factor.
  for (int64_t t = 0; t < T; t++) CHECK_NEAR(weights[size_t(4 * t)] + weights[size_t(4 * t + 1)] + weights[size_t(4 * t + 2)] + weights[size_t(4 * t + 3)], 2.5, 1e-5);
  // Decode reads the active weights only: 4 of 16 routed experts per MoE layer.
  ModelInfo info = m->info();
  const int64_t expert_bytes = 2 * 16 * 3 * 64 * 32 * 4;  // 2 MoE layers × 16 experts × 3 matrices, f32
  CHECK(info.weight_bytes - info.decode_bytes == expert_bytes * 3 / 4 + 129280 * 64 * 4);  // and the embedding table
}

TEST(deepseek_experts_per_token_override) {
  Json g = golden::load_golden("deepseek/deepseek-v3-tiny");
  auto toks = golden::ids(*g.find("sequences")->array()[0].find("tokens"));
  auto base = load("deepseek-v3-tiny", MlaAttention::Auto);
  auto same = load("deepseek-v3-tiny", MlaAttention::Auto, DType::F32, 4);  // the config's num_experts_per_tok
  auto fewer = load("deepseek-v3-tiny", MlaAttention::Auto, DType::F32, 2);
  auto a = run(*base, toks, false), b = run(*same, toks, false), c = run(*fewer, toks, false);
  CHECK(a == b);
  CHECK(max_rel_diff(a, c, 129280) > 1e-3);
  // 2 groups of 4 experts are all the gate may choose from.
  CHECK_THROWS(load("deepseek-v3-tiny", MlaAttention::Auto, DType::F32, 9), "experts per token = 9 is more than the 8 experts");
}

TEST(deepseek_gate_softmax_greedy_and_group_max) {
  DeepseekConfig c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.scoring = DeepseekConfig::Scoring::Softmax;
  c.routed_scaling_factor = 2.0;
  const float logits[8] = {0.1f, 2.0f, 0.3f, 1.9f, -1.0f, 1.5f, 0.0f, 1.8f};
  double z = 0;
  for (float x : logits) z += std::exp(double(x));
  auto p = [&](int e) { return std::exp(double(logits[e])) / z; };
  float w[2];
  int32_t idx[2];
  MoeGate::from_config(c, 2, nullptr).route(logits, 1, w, idx);
  CHECK(idx[0] == 1 && idx[1] == 3);
  CHECK_NEAR(w[0], 2 * p(1), 1e-6);
  CHECK_NEAR(w[1], 2 * p(3), 1e-6);
  // V2's group_limited_greedy: 4 groups of 2 ranked by their best expert; keep 2 groups.
  // Group maxima: {0,1}: 2.0, {2,3}: 1.9, {4,5}: 1.5, {6,7}: 1.8 → groups 0 and 1.
  c.group_score = DeepseekConfig::GroupScore::Max;
  c.n_group = 4;
  c.topk_group = 2;
  float w3[3];
  int32_t i3[3];
  MoeGate::from_config(c, 3, nullptr).route(logits, 1, w3, i3);
  CHECK(i3[0] == 1 && i3[1] == 3 && i3[2] == 2);  // expert 7 (1.8) is in a dropped group
  CHECK_NEAR(w3[2], 2 * p(2), 1e-6);
  c.topk_group = 3;  // now group {6,7} is in
  MoeGate::from_config(c, 3, nullptr).route(logits, 1, w3, i3);
  CHECK(i3[0] == 1 && i3[1] == 3 && i3[2] == 7);
}

TEST(deepseek_gate_sigmoid_bias_selects_but_does_not_weigh) {
  DeepseekConfig c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.scoring = DeepseekConfig::Scoring::Sigmoid;
  c.group_score = DeepseekConfig::GroupScore::TopTwoSum;
  c.score_correction_bias = true;
  c.n_group = 4;
  c.topk_group = 1;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  const float logits[8] = {3.0f, -3.0f, 1.0f, 1.0f, 0.0f, 0.0f, -2.0f, 2.5f};
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  float w[2];
  int32_t idx[2];
  // Without bias: group sums {0,1}: .953+.047=1.0, {2,3}: 1.462, {4,5}: 1.0, {6,7}: .119+.924=1.043
  // → group {2,3} (V2's group max would pick {0,1}: the top-two sum is what differs).
  const float zero[8] = {};
  MoeGate::from_config(c, 2, zero).route(logits, 1, w, idx);
  CHECK((idx[0] == 2 && idx[1] == 3) || (idx[0] == 3 && idx[1] == 2));
  CHECK_NEAR(w[0], 1.25, 1e-6);  // two equal scores, normalized, × 2.5
  // A bias on expert 1 lifts group {0,1} and chooses expert 1, but its weight is its own score.
  const float bias[8] = {0, 1.0f, 0, 0, 0, 0, 0, 0};
  MoeGate::from_config(c, 2, bias).route(logits, 1, w, idx);
  CHECK(idx[0] == 1 && idx[1] == 0);
  const double s1 = sig(-3.0), s0 = sig(3.0);
  CHECK_NEAR(w[0], 2.5 * s1 / (s0 + s1), 1e-6);
  CHECK_NEAR(w[1], 2.5 * s0 / (s0 + s1), 1e-6);
  // Without norm_topk_prob the weights are the scores × routed_scaling_factor.
  c.norm_topk_prob = false;
  MoeGate::from_config(c, 2, bias).route(logits, 1, w, idx);
  CHECK_NEAR(w[0], 2.5 * s1, 1e-6);
}

TEST(deepseek_config_mapping) {
  auto cfg = [](const std::string& name) { return config_from_hf_json(read_config(name), name); };
  ModelConfig lite = cfg("deepseek-v2-lite-tiny");
  CHECK(lite.arch == Arch::DeepseekV2);
  CHECK(lite.deepseek.q_lora_rank == 0);
  CHECK(lite.deepseek.scoring == DeepseekConfig::Scoring::Softmax);
  CHECK(lite.deepseek.group_score == DeepseekConfig::GroupScore::None);
  CHECK(!lite.deepseek.score_correction_bias);
  CHECK(lite.deepseek.v_head_dim == 24 && lite.head_dim == 32);
  CHECK(lite.rope_scaling == RopeScalingType::Yarn && lite.rope_factor == 40 && lite.rope_original_max_position == 4096);
  CHECK(lite.deepseek.yarn_mscale == 0.707 && lite.deepseek.yarn_mscale_all_dim == 0.707);
  CHECK(!lite.deepseek.is_moe_layer(0) && lite.deepseek.is_moe_layer(1) && lite.deepseek.is_moe_layer(2));
  ModelConfig v2 = cfg("deepseek-v2-tiny");
  CHECK(v2.deepseek.q_lora_rank == 48);
  CHECK(v2.deepseek.group_score == DeepseekConfig::GroupScore::Max && v2.deepseek.n_group == 4 && v2.deepseek.topk_group == 2);
  CHECK(v2.deepseek.routed_scaling_factor == 16.0);
  ModelConfig v3 = cfg("deepseek-v3-tiny");
  CHECK(v3.arch == Arch::DeepseekV3);
  CHECK(v3.deepseek.scoring == DeepseekConfig::Scoring::Sigmoid && v3.deepseek.score_correction_bias);
  CHECK(v3.deepseek.group_score == DeepseekConfig::GroupScore::TopTwoSum && v3.deepseek.norm_topk_prob);
  CHECK(v3.deepseek.rope_interleave && !v3.rope_neox);
  ModelConfig d2 = cfg("deepseek-v3-tiny-dense2");
  CHECK(!d2.deepseek.rope_interleave && d2.rope_neox && d2.rope_scaling == RopeScalingType::None);
  CHECK(!d2.deepseek.is_moe_layer(1) && d2.deepseek.is_moe_layer(2));
  // moe_layer_freq (1 in every release; transformers ignores it): DeepSeek's code makes layer l an
  // MoE layer when l ≥ first_k_dense_replace and l % moe_layer_freq == 0.
  ModelConfig f2 = config_from_hf_json(with(with(read_config("deepseek-v3-tiny-dense2"), "moe_layer_freq", "2"), "first_k_dense_replace", "1"), "c.json");
  CHECK(!f2.deepseek.is_moe_layer(0) && !f2.deepseek.is_moe_layer(1) && f2.deepseek.is_moe_layer(2) && !f2.deepseek.is_moe_layer(3));
  // q_lora_rank absent (not null) takes transformers' default.
  std::string no_q = read_config("deepseek-v3-tiny");
  no_q.erase(no_q.find("  \"q_lora_rank\": 48,\n"), std::string("  \"q_lora_rank\": 48,\n").size());
  CHECK(config_from_hf_json(no_q, "c.json").deepseek.q_lora_rank == 1536);
  // V2 with norm_topk_prob: DeepSeek-V2's code normalizes and then does not scale.
  ModelConfig v2n = config_from_hf_json(with(read_config("deepseek-v2-tiny"), "norm_topk_prob", "true"), "c.json");
  CHECK(v2n.deepseek.norm_topk_prob && v2n.deepseek.routed_scaling_factor == 1.0);
  // YaRN's softmax-scale correction (mscale_all_dim) and cos/sin factor (mscale / mscale_all_dim).
  auto ws = load_weights(tiny_deepseek("deepseek-v2-tiny"), nullptr);
  DeepseekModel dm(*ws, 0);
  const double m_all = 0.1 * 0.8 * std::log(40.0) + 1, m = 0.1 * 1.0 * std::log(40.0) + 1;
  CHECK_NEAR(dm.softmax_scale(), m_all * m_all / std::sqrt(32.0), 1e-6);
  CHECK_NEAR(dm.rope_attention_factor(), m / m_all, 1e-6);
  // Frequencies: the first pairs extrapolate (unchanged), the last interpolate (divided by factor).
  CHECK_NEAR(dm.inv_freq()[0], 1.0, 1e-7);
  CHECK_NEAR(dm.inv_freq()[7], std::pow(10000.0, -14.0 / 16) / 40, 1e-9);
}

TEST(deepseek_bad_configs_are_clear_errors) {
  const std::string v3 = read_config("deepseek-v3-tiny");
  auto err = [](const std::string& text) { return config_from_hf_json(text, "config.json"); };
  CHECK_THROWS(err(with(v3, "n_routed_experts", "18")), "n_routed_experts = 18 is not divisible by n_group = 4");
  CHECK_THROWS(err(with(v3, "topk_group", "5")), "topk_group = 5 is larger than n_group = 4");
  CHECK_THROWS(err(with(v3, "num_experts_per_tok", "9")), "num_experts_per_tok = 9 is more than the 8 experts");
  CHECK_THROWS(err(with(v3, "qk_rope_head_dim", "15")), "inconsistent head dims: qk_rope_head_dim = 15");
  CHECK_THROWS(err(with(v3, "head_dim", "24")), "inconsistent head dims: head_dim = 24");
  CHECK_THROWS(err(with(v3, "qk_head_dim", "24")), "inconsistent head dims: qk_head_dim = 24");
  CHECK_THROWS(err(with(v3, "num_key_value_heads", "2")), "num_key_value_heads (2) must equal num_attention_heads (4)");
  CHECK_THROWS(err(with(v3, "scoring_func", "\"softmax\"")), "scoring_func 'softmax' is not supported");
  CHECK_THROWS(err(with(v3, "topk_method", "\"greedy\"")), "topk_method 'greedy' is not supported");
  CHECK_THROWS(err(with(v3, "first_k_dense_replace", "7")), "first_k_dense_replace = 7 is not in [0, num_hidden_layers = 3]");
  CHECK_THROWS(err(with(v3, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}")), "unsupported rope scaling type 'linear'");
  const std::string v2 = read_config("deepseek-v2-tiny");
  CHECK_THROWS(err(with(v2, "scoring_func", "\"sigmoid\"")), "scoring_func 'sigmoid' is not supported");
  CHECK_THROWS(err(with(v2, "n_group", "3")), "n_routed_experts = 8 is not divisible by n_group = 3");
  CHECK_THROWS(err(with(v3, "kv_lora_rank", "0")), "kv_lora_rank = 0 is out of range");
  // A checkpoint whose tensors disagree with its config is refused by shape, never reinterpreted.
  const std::string dir = fixtures_dir() + "/generated-deepseek/bad-config-" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/config.json") << with(v3, "kv_lora_rank", "24");
  CHECK(::link((tiny_deepseek("deepseek-v3-tiny") + "/model.safetensors").c_str(), (dir + "/model.safetensors").c_str()) == 0);
  LoadOptions o;
  o.threads = 1;
  CHECK_THROWS(Model::load(dir, o), "tensor 'blk.0.attn_kv_a_mqa.weight' has shape [64, 48], expected [64, 40]");
  std::remove((dir + "/model.safetensors").c_str());
  std::remove((dir + "/config.json").c_str());
  ::rmdir(dir.c_str());
}

// ---------------------------------------------------------------- FP8 weights

namespace {

std::vector<float> fp8_logits(const std::string& name, DType fp8_as, bool step_by_step, ModelInfo* info = nullptr) {
  LoadOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  o.context = 64;
  o.fp8_as = fp8_as;
  auto m = Model::load(tiny_deepseek(name), o);
  if (info) *info = m->info();
  return run(*m, {1, 17, 300, 4000, 25, 9, 2048, 77, 3}, step_by_step);
}

double rel_max(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); i++) err = std::max(err, double(std::fabs(a[i] - b[i]))), ref = std::max(ref, double(std::fabs(b[i])));
  return err / ref;
}

}  // namespace

// DeepSeek-V3's FP8 checkpoint layout (make-tiny-deepseek.ts: F8_E4M3 linear weights with 128 ×
// 128 weight_scale_inv blocks, the rest BF16) runs on its codes as they are, dequantized inside
// the kernels: the same logits as the F32 copy of the very numbers they stand for, in prefill
// and in decode. Converted at load to bf16, q8_0 or q4_K on request, close to them.
TEST(deepseek_fp8_weights_are_used_as_stored) {
  ModelInfo info;
  const std::vector<float> want = fp8_logits("deepseek-v3-tiny-128-fp8-f32", DType::FP8_B128, false);
  const std::vector<float> got = fp8_logits("deepseek-v3-tiny-128-fp8", DType::FP8_B128, false, &info);
  const std::vector<float> dec = fp8_logits("deepseek-v3-tiny-128-fp8", DType::FP8_B128, true);
  CHECK(info.dtype_mix.count("fp8_b128") && info.dtype_mix.at("fp8_b128") > 0);
  CHECK_MSG(rel_max(got, want) < 1e-5, "fp8 prefill vs its f32 copy: " << rel_max(got, want));
  CHECK_MSG(rel_max(dec, want) < 1e-5, "fp8 decode vs its f32 copy: " << rel_max(dec, want));
  for (auto [dt, tol] : {std::pair{DType::BF16, 2e-2}, std::pair{DType::Q8_0, 6e-2}, std::pair{DType::Q4_K, 0.2}}) {
    ModelInfo ci;
    const std::vector<float> c = fp8_logits("deepseek-v3-tiny-128-fp8", dt, false, &ci);
    const double e = rel_max(c, want);
    check::note(std::string("fp8 as ") + dtype_name(dt) + ": " + std::to_string(e) + " of the max logit");
    CHECK_MSG(e < tol && e > 0, dtype_name(dt) << ": " << e);
    CHECK(ci.dtype_mix.count(dtype_name(dt)) && !ci.dtype_mix.count("fp8_b128"));  // (q4_K: rows of 128 take q8_0, as llama.cpp does)
  }
  // A block-quantized kv_b: decode's absorbed W_UK copies hold its values in bf16, prefill runs
  // expanded on the q8_0 matrix itself. They differ mostly by the q8_0 activations each form's
  // products quantize (3.2% with f32 copies, 3.1% with bf16 ones when this was written).
  const std::vector<float> q8_prefill = fp8_logits("deepseek-v3-tiny-128-fp8", DType::Q8_0, false);
  const std::vector<float> q8_decode = fp8_logits("deepseek-v3-tiny-128-fp8", DType::Q8_0, true);
  const double qd = rel_max(q8_decode, q8_prefill);
  check::note("q8_0 kv_b: absorbed decode (bf16 W_UK copies) vs expanded prefill " + std::to_string(qd));
  CHECK_MSG(qd > 0 && qd < 5e-2, "q8_0 kv_b, absorbed vs expanded: " << qd);
}

// A missing or misshapen weight_scale_inv, a block size other than 128 × 128, rows that are not
// whole 128-blocks, a conversion to a dtype FP8 does not convert to: clear errors.
TEST(deepseek_fp8_bad_files_are_clear_errors) {
  const TempDir tmp("aha-fp8");
  const std::string& dir = tmp.path();
  std::ifstream cin(tiny_deepseek("deepseek-v3-tiny-128-fp8") + "/config.json");
  std::stringstream cs;
  cs << cin.rdbuf();
  const std::string config = cs.str();
  auto write = [&](const std::string& cfg, std::vector<SafetensorsEntry> e) {
    std::ofstream(dir + "/config.json") << cfg;
    write_safetensors(dir + "/model.safetensors", std::move(e), {{"format", "pt"}});
  };
  auto codes = [](int64_t rows, int64_t cols) { return SafetensorsEntry{"model.layers.0.self_attn.o_proj.weight", "F8_E4M3", {rows, cols}, std::vector<uint8_t>(size_t(rows * cols), 0x38)}; };
  auto scales = [](int64_t r, int64_t c) {
    std::vector<uint8_t> b(size_t(r * c) * 4);
    const float one = 1.0f;
    for (size_t i = 0; i < size_t(r * c); i++) std::memcpy(b.data() + 4 * i, &one, 4);
    return SafetensorsEntry{"model.layers.0.self_attn.o_proj.weight_scale_inv", "F32", {r, c}, b};
  };
  auto load_err = [&](DType as = DType::FP8_B128) {
    LoadOptions o;
    o.threads = 1;
    o.fp8_as = as;
    try {
      Model::load(dir, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  write(config, {codes(128, 128)});
  CHECK_MSG(load_err().find("has no model.layers.0.self_attn.o_proj.weight_scale_inv beside it") != std::string::npos, load_err());
  write(config, {codes(256, 128), scales(1, 1)});
  CHECK_MSG(load_err().find("expected [2, 1] (one scale per 128 × 128 block)") != std::string::npos, load_err());
  write(config, {codes(128, 96), scales(1, 1)});
  CHECK_MSG(load_err().find("whole 128-element scale blocks") != std::string::npos, load_err());
  write(config, {codes(128, 128), scales(1, 1)});
  CHECK_MSG(load_err(DType::Q4_0).find("FP8 weights convert to bf16, q8_0 or q4_K") != std::string::npos, load_err(DType::Q4_0));
  CHECK_MSG(load_err(DType::Q4_K).find("has no model.layers.0") == std::string::npos, load_err(DType::Q4_K));  // converts; fails later, elsewhere
  std::string bad = config;
  const size_t at = bad.find("\"weight_block_size\"");
  CHECK(at != std::string::npos);
  bad.replace(bad.find("128", at), 3, "64");
  write(bad, {codes(128, 128), scales(1, 1)});
  CHECK_MSG(load_err().find("weight_block_size must be [128, 128]") != std::string::npos, load_err());
}

// ---------------------------------------------------------------- MTP

// DeepSeek-V3's multi-token-prediction module drafts a token, the main model checks it in the
// forward of its next step: the tokens are plain greedy decoding's whatever the drafts are worth,
// from an F32 and an FP8 checkpoint. The tiny random module's drafts are almost never kept, so
// the accept path is driven with drafts of known quality through the test hook: the right token
// every time (every draft kept, about two tokens per forward), or a wrong one every time.
TEST(deepseek_mtp_keeps_greedy_output) {
  for (const char* name : {"deepseek-v3-tiny-128", "deepseek-v3-tiny-128-fp8"}) {
    LoadOptions o;
    o.threads = 2;
    o.kv_dtype = DType::F32;
    o.context = 128;
    auto m = Model::load(tiny_deepseek(name), o);
    GenerateRequest r;
    r.prompt = {1, 17, 300, 4000, 25, 9};
    r.max_tokens = 60;
    r.ignore_eos = true;
    r.sampler.temperature = 0;
    const GenerateResult plain = m->generate({r}, nullptr)[0];
    std::vector<int32_t> streamed;
    const GenerateResult mtp = m->generate_mtp(r, [&](int32_t t) { streamed.push_back(t); return true; });
    CHECK_MSG(mtp.tokens == plain.tokens, name << ": MTP decoding gave other tokens than plain greedy decoding");
    CHECK(streamed == mtp.tokens && mtp.finish == FinishReason::Length);
    CHECK(mtp.drafted > 0 && mtp.accepted <= mtp.drafted);
    CHECK(mtp.drafted + mtp.accepted == int64_t(mtp.tokens.size()) - 1 || mtp.drafted + mtp.accepted == int64_t(mtp.tokens.size()));
    check::note(std::string(name) + ": the module's own drafts: " + std::to_string(mtp.accepted) + " of " + std::to_string(mtp.drafted) + " kept");
    const std::function<int32_t(size_t, int32_t)> right = [&](size_t i, int32_t) { return i < plain.tokens.size() ? plain.tokens[i] : 0; };
    const std::function<int32_t(size_t, int32_t)> wrong = [&](size_t i, int32_t) { return i < plain.tokens.size() ? (plain.tokens[i] + 1) % 4096 : 0; };
    const GenerateResult all = m->generate_mtp(r, nullptr, nullptr, &right), none = m->generate_mtp(r, nullptr, nullptr, &wrong);
    CHECK_MSG(all.tokens == plain.tokens && none.tokens == plain.tokens, name << ": kept or rejected drafts changed the output");
    CHECK_MSG(all.accepted == all.drafted && all.drafted <= 31, name << ": right drafts: " << all.accepted << " of " << all.drafted << " kept");
    CHECK(none.accepted == 0 && none.drafted == int64_t(plain.tokens.size()) - 1);
    r.sampler.temperature = 0.7f;
    CHECK_THROWS(m->generate_mtp(r, nullptr), "MTP drafting is greedy");
  }
  auto none = load("deepseek-v3-tiny", MlaAttention::Auto);
  GenerateRequest r;
  r.prompt = {1, 2, 3};
  r.sampler.temperature = 0;
  CHECK_THROWS(none->generate_mtp(r, nullptr), "needs a model with its multi-token-prediction module");
}
