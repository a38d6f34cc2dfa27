// Tiny-model tests through the public Model API: formats agree, cached decode equals the
// full forward, batches equal single runs, forks share blocks correctly, quantized
// weights stay within their dtype's error, bad files fail clearly, generation behaves.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "aha/error.h"
#include "aha/kernels.h"
#include "aha/model.h"
#include "check.h"
#include "fixtures.h"

using namespace aha;
namespace fs = std::filesystem;

namespace {

// Ids valid in every tiny model's vocabulary (the llama one has 129280).
const std::vector<int32_t> kTokens = {9707, 11, 1246, 525, 498, 30, 198, 872, 100, 2000, 50000, 127999, 77091, 198};

std::unique_ptr<Model> load(const std::string& path, DType kv = DType::F32, int threads = 2) {
  LoadOptions o;
  o.threads = threads;
  o.kv_dtype = kv;
  o.context = 256;
  return Model::load(path, o);
}

// Logits of every position for `toks` in a fresh sequence.
std::vector<float> all_logits(Model& m, const std::vector<int32_t>& toks) {
  int s = m.new_sequence();
  std::vector<float> out;
  m.forward({{s, toks, true}}, out);
  m.free_sequence(s);
  return out;
}

// max |a - b| / max |b|, over all values.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / (den + 1e-30);
}

// Root-mean-square error relative to the RMS of the reference.
double rms_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / (den + 1e-30));
}

std::string load_error(const std::string& path) {
  try {
    load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A copy of a model (file or folder) in dir, to break.
std::string copy_model(const std::string& src, const std::string& dir, const std::string& name) {
  std::string dst = dir + "/" + name;
  fs::copy(src, dst, fs::copy_options::recursive);
  return dst;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(model_hf_and_gguf_give_the_same_logits) {
  for (std::string m : {"qwen2-tiny", "qwen3-tiny", "llama-tiny"}) {
    auto hf = load(tiny(m));
    auto gg = load(tiny(m + "-f32.gguf"));
    auto a = all_logits(*hf, kTokens), b = all_logits(*gg, kTokens);
    CHECK(a.size() == b.size());
    CHECK_MSG(rel_err(b, a) < 1e-5, m << ": gguf vs hf " << rel_err(b, a));
  }
}

TEST(model_cached_decode_equals_full_forward) {
  for (std::string m : {"qwen2-tiny", "qwen3-tiny", "llama-tiny"}) {
    auto model = load(tiny(m));
    const int64_t V = model->config().vocab_size;
    auto full = all_logits(*model, kTokens);
    // Prefill a prefix, then one token at a time (crossing a 16-token block boundary would need
    // more tokens: the chunked step below appends 3 at once too).
    int s = model->new_sequence();
    std::vector<float> out, stepwise;
    model->forward({{s, {kTokens.begin(), kTokens.begin() + 5}, true}}, out);
    stepwise.insert(stepwise.end(), out.begin(), out.end());
    model->forward({{s, {kTokens.begin() + 5, kTokens.begin() + 8}, true}}, out);
    stepwise.insert(stepwise.end(), out.begin(), out.end());
    for (size_t i = 8; i < kTokens.size(); i++) {
      model->forward({{s, {kTokens[i]}, false}}, out);
      stepwise.insert(stepwise.end(), out.begin(), out.end());
    }
    CHECK(int64_t(stepwise.size()) == int64_t(kTokens.size()) * V);
    CHECK_MSG(rel_err(stepwise, full) < 1e-5, m << ": stepwise vs full " << rel_err(stepwise, full));
    model->free_sequence(s);
  }
}

TEST(model_batch_equals_each_alone) {
  auto model = load(tiny("qwen2-tiny"));
  const int64_t V = model->config().vocab_size;
  std::vector<std::vector<int32_t>> prompts = {kTokens, {1, 2, 3}, {kTokens.begin(), kTokens.begin() + 9}};
  std::vector<float> alone;
  for (auto& p : prompts) {
    int s = model->new_sequence();
    std::vector<float> out;
    model->forward({{s, p, false}}, out);
    alone.insert(alone.end(), out.begin(), out.end());
    model->free_sequence(s);
  }
  std::vector<Model::BatchItem> batch;
  for (auto& p : prompts) batch.push_back({model->new_sequence(), p, false});
  std::vector<float> together;
  model->forward(batch, together);
  CHECK(together.size() == size_t(3 * V));
  CHECK_MSG(rel_err(together, alone) < 1e-6, "batch vs alone " << rel_err(together, alone));
  // Decode one more token for all three in one batch vs separately.
  for (auto& it : batch) it.tokens = {42};
  model->forward(batch, together);
  for (size_t i = 0; i < prompts.size(); i++) {
    auto p = prompts[i];
    p.push_back(42);
    int s = model->new_sequence();
    std::vector<float> out;
    model->forward({{s, p, false}}, out);
    std::vector<float> row(together.begin() + int64_t(i) * V, together.begin() + int64_t(i + 1) * V);
    CHECK_MSG(rel_err(row, out) < 1e-5, "decode row " << i << " " << rel_err(row, out));
    model->free_sequence(s);
  }
}

TEST(model_forks_share_blocks_and_copy_on_write) {
  auto model = load(tiny("qwen3-tiny"));
  // A 20-token prompt: one full block of 16 and a partial block the forks must copy before writing.
  std::vector<int32_t> prompt(kTokens);
  prompt.insert(prompt.end(), {5, 6, 7, 8, 9, 10});
  int base = model->new_sequence();
  std::vector<float> out;
  model->forward({{base, prompt, false}}, out);
  const int64_t free_before = model->free_cache_tokens();
  int a = model->fork_sequence(base), b = model->fork_sequence(base);
  CHECK(model->free_cache_tokens() == free_before);  // forks take no new blocks
  std::vector<float> fa, fb;
  model->forward({{a, {100, 101}, true}, {b, {200}, true}}, fa);
  // Each fork now owns a private copy of the partial block; the full block stays shared.
  CHECK(model->free_cache_tokens() == free_before - 2 * 16);
  std::vector<int32_t> pa(prompt), pb(prompt);
  pa.insert(pa.end(), {100, 101});
  pb.push_back(200);
  auto ra = all_logits(*model, pa), rb = all_logits(*model, pb);
  const int64_t V = model->config().vocab_size;
  std::vector<float> want(ra.end() - 2 * V, ra.end());
  want.insert(want.end(), rb.end() - V, rb.end());
  CHECK_MSG(rel_err(fa, want) < 1e-5, "forks vs fresh " << rel_err(fa, want));
  // The base sequence is untouched by its forks' writes.
  model->forward({{base, {300}, false}}, out);
  auto pc = prompt;
  pc.push_back(300);
  auto rc = all_logits(*model, pc);
  std::vector<float> last(rc.end() - V, rc.end());
  CHECK_MSG(rel_err(out, last) < 1e-5, "base after forks " << rel_err(out, last));
}

TEST(model_kv_f16_close_to_f32) {
  auto m32 = load(tiny("qwen2-tiny"), DType::F32), m16 = load(tiny("qwen2-tiny"), DType::F16);
  auto a = all_logits(*m32, kTokens), b = all_logits(*m16, kTokens);
  CHECK_MSG(rms_err(b, a) < 2e-3, "f16 cache rms err " << rms_err(b, a));
}

TEST(model_half_precision_and_quantized_weights_stay_within_their_error) {
  // Relative RMS error of all logits against the f32 model, per weight dtype.
  struct Case {
    const char* ref;
    const char* model;
    double tol;
  };
  for (Case c : {Case{"qwen2-tiny", "qwen2-tiny-f16.gguf", 2e-3}, Case{"qwen2-tiny", "qwen2-tiny-bf16", 1.5e-2},
                 Case{"qwen2-tiny", "qwen2-tiny-f16", 2e-3}, Case{"qwen2-tiny", "qwen2-tiny-q8_0.gguf", 6e-2},
                 Case{"qwen2-tiny256-f32.gguf", "qwen2-tiny256-q4_K.gguf", 0.45}, Case{"qwen2-tiny256-f32.gguf", "qwen2-tiny256-q6_K.gguf", 0.15}}) {
    auto ref = load(tiny(c.ref)), m = load(tiny(c.model));
    double e = rms_err(all_logits(*m, kTokens), all_logits(*ref, kTokens));
    check::note(std::string(c.model) + ": rms err " + std::to_string(e));
    CHECK_MSG(e < c.tol, c.model << ": rms err " << e << " > " << c.tol);
  }
}

// The whole model on the fast kernels equals the scalar reference kernels. Float weights must
// agree to rounding; with quantized activations a 1e-7 difference upstream can flip one int8
// rounding of an activation (a step of 1/127 of its block's max), so those get one such step.
TEST(model_fast_kernels_equal_the_scalar_reference) {
  const Isa best = active_isa();
  struct Case {
    const char* name;
    double tol;
  };
  for (Case c : {Case{"qwen2-tiny-f16.gguf", 1e-5}, Case{"qwen2-tiny-bf16", 1e-5}, Case{"qwen3-tiny-f32.gguf", 1e-5},
                 Case{"qwen2-tiny-q8_0.gguf", 3e-2}, Case{"qwen2-tiny256-q4_K.gguf", 3e-2}, Case{"qwen2-tiny256-q6_K.gguf", 3e-2}}) {
    auto m = load(tiny(c.name));
    auto fast = all_logits(*m, kTokens);
    set_active_isa(Isa::Scalar);
    auto ref = all_logits(*m, kTokens);
    set_active_isa(best);
    check::note(std::string(c.name) + ": " + isa_name(best) + " vs scalar " + std::to_string(rel_err(fast, ref)));
    CHECK_MSG(rel_err(fast, ref) < c.tol, c.name << ": " << isa_name(best) << " vs scalar " << rel_err(fast, ref));
  }
}

TEST(model_threads_do_not_change_results) {
  auto m1 = load(tiny("qwen2-tiny"), DType::F32, 1), m2 = load(tiny("qwen2-tiny"), DType::F32, 2);
  auto a = all_logits(*m1, kTokens), b = all_logits(*m2, kTokens);
  CHECK_MSG(rel_err(a, b) < 1e-6, "1 vs 2 threads " << rel_err(a, b));
}

TEST(model_generation_is_seeded_and_prefix_shared) {
  auto model = load(tiny("qwen2-tiny"));
  GenerateRequest r;
  r.prompt = kTokens;
  r.max_tokens = 12;
  r.ignore_eos = true;
  r.sampler.temperature = 1.0;
  r.sampler.seed = 42;
  auto one = model->generate({r}, nullptr)[0].tokens;
  auto again = model->generate({r}, nullptr);
  CHECK(again[0].tokens == one);                       // same seed, same output
  CHECK(again[0].cached_tokens == int64_t(kTokens.size()) - 1);  // the prompt came from the prefix cache
  // A group of 3 with the same prompt (one prefill, forked) equals three separate runs.
  std::vector<GenerateRequest> group(3, r);
  group[1].sampler.seed = 7;
  group[2].sampler.seed = 99;
  auto res = model->generate(group, nullptr);
  for (size_t i = 0; i < 3; i++) {
    auto alone = load(tiny("qwen2-tiny"));
    CHECK_MSG(res[i].tokens == alone->generate({group[i]}, nullptr)[0].tokens, "group member " << i);
  }
  CHECK(res[0].tokens == one);
  CHECK(res[1].tokens != res[2].tokens);
  // Greedy equals the argmax of the logits at every step.
  GenerateRequest g = r;
  g.sampler.temperature = 0;
  g.max_tokens = 4;
  auto gt = model->generate({g}, nullptr)[0].tokens;
  std::vector<int32_t> seq = kTokens;
  for (int32_t t : gt) {
    int s = model->new_sequence();
    std::vector<float> out;
    model->forward({{s, seq, false}}, out);
    model->free_sequence(s);
    CHECK(int32_t(std::max_element(out.begin(), out.end()) - out.begin()) == t);
    seq.push_back(t);
  }
}

TEST(model_generation_stops_and_cancels) {
  auto model = load(tiny("qwen2-tiny"));
  GenerateRequest r;
  r.prompt = kTokens;
  r.max_tokens = 50;
  r.sampler.temperature = 0;
  r.ignore_eos = true;
  auto free_run = model->generate({r}, nullptr)[0].tokens;
  CHECK(free_run.size() == 50);
  r.stop_tokens = {free_run[3]};
  auto stopped = model->generate({r}, nullptr)[0];
  CHECK(stopped.finish == FinishReason::Stop);
  CHECK(stopped.tokens.size() <= 4 && stopped.tokens.back() == free_run[3]);
  r.stop_tokens.clear();
  std::atomic<bool> cancel{false};
  int seen = 0;
  auto c = model->generate({r}, [&](size_t, int32_t) {
    if (++seen == 5) cancel = true;
    return true;
  }, &cancel)[0];
  CHECK(c.finish == FinishReason::Cancelled && c.tokens.size() == 5);
  // A prompt longer than the context is refused clearly.
  GenerateRequest big;
  big.prompt.assign(300, 5);
  CHECK_THROWS(model->generate({big}, nullptr), "longer than the context (256 tokens)");
  // A token id outside the vocabulary is refused.
  int s = model->new_sequence();
  std::vector<float> out;
  CHECK_THROWS(model->forward({{s, {int32_t(model->config().vocab_size)}, false}}, out), "outside the vocabulary");
}

TEST(model_bad_files_fail_clearly) {
  const TempDir tmp("aha-models");
  // Truncated GGUF
  std::string g = copy_model(tiny("qwen2-tiny-f32.gguf"), tmp, "trunc.gguf");
  fs::resize_file(g, fs::file_size(g) / 2);
  std::string e = load_error(g);
  CHECK_MSG(e.find("trunc.gguf: ") != std::string::npos && e.find("outside the file") != std::string::npos, e);
  // Not a model at all
  std::string junk = tmp.path() + "/junk.gguf";
  write_file(junk, "hello world, not a gguf");
  CHECK(load_error(junk).find("wrong magic") != std::string::npos);
  CHECK(load_error("/nonexistent/model.gguf").find("/nonexistent/model.gguf: cannot open") == 0);
  // HF folder: truncated safetensors
  std::string d = copy_model(tiny("qwen2-tiny"), tmp, "trunc-hf");
  fs::resize_file(d + "/model.safetensors", fs::file_size(d + "/model.safetensors") - 100);
  e = load_error(d);
  CHECK_MSG(e.find("model.safetensors") != std::string::npos && e.find("outside the file") != std::string::npos, e);
  // Shape mismatch: config says a different hidden size than the weights have
  d = copy_model(tiny("qwen2-tiny"), tmp, "shape-hf");
  std::string cfg = read_file(d + "/config.json");
  size_t at = cfg.find("\"intermediate_size\"");
  CHECK(at != std::string::npos);
  size_t colon = cfg.find(':', at), end = cfg.find_first_of(",}", colon);
  write_file(d + "/config.json", cfg.substr(0, colon + 1) + " 96" + cfg.substr(end));
  e = load_error(d);
  CHECK_MSG(e.find("has shape") != std::string::npos && e.find("expected") != std::string::npos, e);
  // Missing tensor: one more layer than the file has
  d = copy_model(tiny("qwen2-tiny"), tmp, "missing-hf");
  cfg = read_file(d + "/config.json");
  at = cfg.find("\"num_hidden_layers\"");
  colon = cfg.find(':', at), end = cfg.find_first_of(",}", colon);
  write_file(d + "/config.json", cfg.substr(0, colon + 1) + " 3" + cfg.substr(end));
  e = load_error(d);
  CHECK_MSG(e.find("missing tensor 'blk.2.") != std::string::npos, e);
  // Unknown architecture
  d = copy_model(tiny("qwen2-tiny"), tmp, "arch-hf");
  cfg = read_file(d + "/config.json");
  at = cfg.find("Qwen2ForCausalLM");
  write_file(d + "/config.json", cfg.substr(0, at) + "GPTNeoXForCausalLM" + cfg.substr(at + 16));
  e = load_error(d);
  CHECK_MSG(e.find("unsupported architecture 'GPTNeoXForCausalLM'") != std::string::npos, e);
  // Malformed config.json
  write_file(d + "/config.json", "{\"architectures\": [\"Qwen2ForCausalLM\",");
  e = load_error(d);
  CHECK_MSG(e.find("config.json: invalid JSON") != std::string::npos, e);
}
