#include "models/loader.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "aha/error.h"
#include "aha/kernels.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "models/deepseek.h"

namespace aha {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::DeepseekV2: return "deepseek_v2";
    case Arch::DeepseekV3: return "deepseek_v3";
  }
  return "?";
}

int64_t Tensor::rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < ne.size(); i++) r *= ne[i];
  return r;
}

int64_t Tensor::numel() const { return ne.empty() ? 0 : ne[0] * rows(); }

static std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); i++) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

const Tensor* WeightStore::find(const std::string& n) const {
  auto it = tensors.find(n);
  return it == tensors.end() ? nullptr : &it->second;
}

const Tensor& WeightStore::get(const std::string& n, std::vector<int64_t> expected) const {
  const Tensor* t = find(n);
  if (!t) fail_file(path, "missing tensor '" + n + "'");
  std::vector<int64_t> have = t->ne;
  while (have.size() > expected.size() && have.back() == 1) have.pop_back();
  if (have != expected) fail_file(path, "tensor '" + n + "' has shape " + shape_str(t->ne) + ", expected " + shape_str(expected));
  return *t;
}

const Tensor& WeightStore::get_f32(const std::string& n, std::vector<int64_t> expected) {
  const Tensor& t = get(n, expected);
  if (t.dtype == DType::F32) return t;
  auto buf = std::make_unique<std::vector<uint8_t>>(size_t(t.numel()) * 4);
  float* out = reinterpret_cast<float*>(buf->data());
  for (int64_t r = 0; r < t.rows(); r++)
    dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + size_t(r) * t.row_bytes, out + r * t.ne[0], t.ne[0]);
  Tensor& m = tensors[n];
  m.dtype = DType::F32;
  m.data = out;
  m.row_bytes = size_t(t.ne[0]) * 4;
  owned.push_back(std::move(buf));
  return m;
}

void check_config(const ModelConfig& c, const std::string& file) {
  auto bad = [&](const std::string& what) { fail_file(file, what); };
  auto range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) bad(std::string(name) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  range("vocab_size", c.vocab_size, 1, int64_t(1) << 24);
  range("hidden_size", c.hidden_size, 1, 1 << 17);
  range("intermediate_size", c.intermediate_size, 1, 1 << 20);
  range("num_hidden_layers", c.num_hidden_layers, 1, 4096);
  range("num_attention_heads", c.num_attention_heads, 1, 4096);
  range("num_key_value_heads", c.num_key_value_heads, 1, c.num_attention_heads);
  range("head_dim", c.head_dim, 2, 1024);
  if (c.head_dim % 2) bad("head_dim must be even for rotary embeddings");
  if (c.num_attention_heads % c.num_key_value_heads) bad("num_attention_heads is not a multiple of num_key_value_heads");
  range("max_position_embeddings", c.max_position_embeddings, 1, int64_t(1) << 24);
  if (!(c.rms_norm_eps > 0 && c.rms_norm_eps < 1)) bad("rms_norm_eps out of range");
  if (!(c.rope_theta > 0)) bad("rope_theta must be positive");
}

ModelConfig config_from_hf_json(const std::string& text, const std::string& file) {
  Json j = Json::parse(text, file);
  if (!j.is_object()) fail_file(file, "not a JSON object");
  ModelConfig c;
  try {
    std::string archs;
    if (const Json* a = j.find("architectures"); a && a->is_array() && !a->array().empty() && a->array()[0].is_string())
      archs = a->array()[0].string();
    if (archs == "DeepseekV2ForCausalLM" || archs == "DeepseekV3ForCausalLM") return deepseek_config_from_hf(j, file);
    if (archs == "LlamaForCausalLM") c.arch = Arch::Llama;
    else if (archs == "Qwen2ForCausalLM") c.arch = Arch::Qwen2;
    else if (archs == "Qwen3ForCausalLM") c.arch = Arch::Qwen3;
    else fail_file(file, "unsupported architecture '" + (archs.empty() ? j.get_string("model_type", "?") : archs) +
                             "' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, DeepseekV2ForCausalLM, "
                             "DeepseekV3ForCausalLM)");
    c.vocab_size = j.get_int("vocab_size", 0);
    c.hidden_size = j.get_int("hidden_size", 0);
    c.intermediate_size = j.get_int("intermediate_size", 0);
    c.num_hidden_layers = j.get_int("num_hidden_layers", 0);
    c.num_attention_heads = j.get_int("num_attention_heads", 0);
    c.num_key_value_heads = j.get_int("num_key_value_heads", c.num_attention_heads);
    c.head_dim = j.get_int("head_dim", c.num_attention_heads ? c.hidden_size / c.num_attention_heads : 0);
    c.max_position_embeddings = j.get_int("max_position_embeddings", 4096);
    c.rms_norm_eps = j.get_number("rms_norm_eps", 1e-6);
    c.tie_word_embeddings = j.get_bool("tie_word_embeddings", false);
    c.qk_norm = c.arch == Arch::Qwen3;
    c.attention_bias = c.arch == Arch::Qwen2 || j.get_bool("attention_bias", false);
    c.rope_neox = true;
    // transformers ≥ 5 keeps rope settings in rope_parameters; older configs use rope_theta + rope_scaling.
    const Json* rp = j.find("rope_parameters");
    if (!rp || !rp->is_object()) rp = j.find("rope_scaling");
    c.rope_theta = j.get_number("rope_theta", rp && rp->is_object() ? rp->get_number("rope_theta", 10000.0) : 10000.0);
    if (rp && rp->is_object()) {
      std::string type = rp->get_string("rope_type", rp->get_string("type", "default"));
      if (type == "llama3") {
        c.rope_scaling = RopeScalingType::Llama3;
        c.rope_factor = rp->get_number("factor", 8.0);
        c.rope_low_freq_factor = rp->get_number("low_freq_factor", 1.0);
        c.rope_high_freq_factor = rp->get_number("high_freq_factor", 4.0);
        c.rope_original_max_position = rp->get_int("original_max_position_embeddings", 8192);
      } else if (type == "linear") {
        c.rope_scaling = RopeScalingType::Linear;
        c.rope_factor = rp->get_number("factor", 1.0);
      } else if (type != "default") {
        fail_file(file, "unsupported rope scaling type '" + type + "'");
      }
    }
    c.bos_token_id = j.get_int("bos_token_id", -1);
    if (const Json* e = j.find("eos_token_id")) {
      if (e->is_array()) for (auto& x : e->array()) c.eos_token_ids.push_back(x.integer());
      else if (e->is_number()) c.eos_token_ids.push_back(e->integer());
    }
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind(file, 0) == 0) throw;
    fail_file(file, m);
  }
  check_config(c, file);
  return c;
}

std::string canonical_name_from_hf(const std::string& hf) {
  static const std::map<std::string, std::string> top = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  if (auto it = top.find(hf); it != top.end()) return it->second;
  static const std::map<std::string, std::string> layer = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.bias", "attn_output.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      // DeepSeek-V2/V3 (llama.cpp's deepseek2 names)
      {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
      {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
      {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
      {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
      {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
      {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
      {"mlp.gate.weight", "ffn_gate_inp.weight"},
      {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
      {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
      {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
      {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
      // DeepSeek-V3's multi-token-prediction module (layer num_hidden_layers; llama.cpp's nextn names)
      {"enorm.weight", "nextn.enorm.weight"},
      {"hnorm.weight", "nextn.hnorm.weight"},
      {"eh_proj.weight", "nextn.eh_proj.weight"},
      {"shared_head.norm.weight", "nextn.shared_head_norm.weight"},
      {"shared_head.head.weight", "nextn.shared_head_head.weight"},
      {"embed_tokens.weight", "nextn.embed_tokens.weight"},
  };
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) != 0) return "";
  size_t dot = hf.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  std::string idx = hf.substr(prefix.size(), dot - prefix.size());
  if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) return "";
  const std::string rest = hf.substr(dot + 1);
  // Routed expert E of an MoE layer: "blk.N.ffn_gate_exps.E.weight" (expert E's slice of GGUF's stacked tensor).
  static const std::regex expert(R"(mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight)");
  if (std::smatch m; std::regex_match(rest, m, expert)) return "blk." + idx + ".ffn_" + m[2].str() + "_exps." + m[1].str() + ".weight";
  auto it = layer.find(rest);
  return it == layer.end() ? "" : "blk." + idx + "." + it->second;
}

static void dense_config_from_gguf(const GgufFile& g, const std::string& a, ModelConfig& c) {
  const std::string& file = g.path();
  auto key = [&](const char* k) { return a + "." + k; };
  auto need_int = [&](const char* k) {
    if (!g.find(key(k))) fail_file(file, "missing metadata '" + key(k) + "'");
    return g.get_int(key(k), 0);
  };
  c.hidden_size = need_int("embedding_length");
  c.intermediate_size = need_int("feed_forward_length");
  c.num_hidden_layers = need_int("block_count");
  c.num_attention_heads = need_int("attention.head_count");
  c.num_key_value_heads = g.get_int(key("attention.head_count_kv"), c.num_attention_heads);
  c.head_dim = g.get_int(key("attention.key_length"), c.num_attention_heads ? c.hidden_size / c.num_attention_heads : 0);
  c.max_position_embeddings = g.get_int(key("context_length"), 4096);
  c.rms_norm_eps = g.get_float(key("attention.layer_norm_rms_epsilon"), 1e-6);
  c.rope_theta = g.get_float(key("rope.freq_base"), 10000.0);
  std::string st = g.get_string(key("rope.scaling.type"), "none");
  if (st == "linear") {
    c.rope_scaling = RopeScalingType::Linear;
    c.rope_factor = g.get_float(key("rope.scaling.factor"), 1.0);
  } else if (st != "none") {
    fail_file(file, "unsupported rope scaling type '" + st + "'");
  }
  c.rope_neox = c.arch != Arch::Llama;  // llama.cpp permutes llama's Q/K rows for interleaved rope
  c.qk_norm = c.arch == Arch::Qwen3;
  c.attention_bias = false;  // taken from the presence of bias tensors
}

static ModelConfig config_from_gguf(const GgufFile& g) {
  const std::string& file = g.path();
  std::string a = g.get_string("general.architecture", "");
  ModelConfig c;
  auto key = [&](const char* k) { return a + "." + k; };
  if (a == "deepseek2") {
    c = deepseek_config_from_gguf(g);
  } else {
    if (a == "llama") c.arch = Arch::Llama;
    else if (a == "qwen2") c.arch = Arch::Qwen2;
    else if (a == "qwen3") c.arch = Arch::Qwen3;
    else fail_file(file, "unsupported architecture '" + a + "' (supported: llama, qwen2, qwen3, deepseek2)");
    dense_config_from_gguf(g, a, c);
  }
  c.bos_token_id = g.get_int("tokenizer.ggml.bos_token_id", -1);
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int64_t id = g.get_int(k, -1);
    if (id >= 0 && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) c.eos_token_ids.push_back(id);
  }
  if (const GgufValue* v = g.find(key("vocab_size"))) c.vocab_size = v->as_int();
  else if (const GgufValue* t = g.find("tokenizer.ggml.tokens")) c.vocab_size = int64_t(t->count);
  for (auto& t : g.tensors())
    if (t.name == "token_embd.weight" && t.ne.size() >= 2) c.vocab_size = t.ne[1];
  c.tie_word_embeddings = true;
  for (auto& t : g.tensors())
    if (t.name == "output.weight") c.tie_word_embeddings = false;
  check_config(c, file);
  return c;
}

static void add_tensor(WeightStore& ws, const std::string& name, DType dt, const std::vector<int64_t>& ne, const uint8_t* data) {
  Tensor t;
  t.name = name;
  t.dtype = dt;
  t.ne = ne;
  t.data = data;
  t.row_bytes = row_bytes(dt, ne[0]);
  ws.tensors[name] = std::move(t);
}

std::vector<uint8_t> convert_fp8_weight(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols, DType& as, const std::string& what) {
  if (cols % 128) fail_file(what, "FP8 rows of " + std::to_string(cols) + " elements: the engine needs whole 128-element scale blocks");
  const int64_t sc = cols / 128;
  if (as == DType::FP8_B128) {
    std::vector<uint8_t> out(size_t(rows * sc) * 132);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t b = 0; b < sc; b++) {
        uint8_t* dst = out.data() + size_t(r * sc + b) * 132;
        std::memcpy(dst, &scale_inv[(r / 128) * sc + b], 4);
        std::memcpy(dst + 4, codes + r * cols + b * 128, 128);
      }
    return out;
  }
  if (as != DType::F32 && as != DType::BF16 && as != DType::Q8_0 && as != DType::Q4_K)
    fail_file(what, std::string("FP8 weights convert to bf16, q8_0 or q4_K (or stay fp8), not ") + dtype_name(as));
  // As llama.cpp's quantizer: a row too short for q4_K's 256-element super-blocks takes q8_0.
  if (as == DType::Q4_K && cols % 256) as = DType::Q8_0;
  if (cols % traits(as).block) fail_file(what, "rows of " + std::to_string(cols) + " elements are not whole " + dtype_name(as) + " blocks");
  const size_t rb = row_bytes(as, cols);
  std::vector<uint8_t> out(rb * size_t(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < cols; c++) row[size_t(c)] = e4m3_to_f32(codes[r * cols + c]) * scale_inv[(r / 128) * sc + c / 128];
    if (as == DType::F32) std::memcpy(out.data() + size_t(r) * rb, row.data(), rb);
    else quantize_row(as, row.data(), out.data() + size_t(r) * rb, cols);
  }
  return out;
}

namespace {

// DeepSeek-V3's FP8 checkpoints: config.json's quantization_config must say e4m3 with 128 × 128
// blocks, the only layout the engine reads.
void check_fp8_config(const std::string& cfg_path) {
  const Json j = Json::parse(read_text_file(cfg_path), cfg_path);
  const Json* q = j.find("quantization_config");
  if (!q || !q->is_object()) return;
  const std::string method = q->get_string("quant_method", "");
  if (method != "fp8") fail_file(cfg_path, "quantization_config: quant_method '" + method + "' is not supported (only DeepSeek's fp8)");
  if (std::string fmt = q->get_string("fmt", "e4m3"); fmt != "e4m3") fail_file(cfg_path, "quantization_config: fp8 format '" + fmt + "' is not supported (only e4m3)");
  if (const Json* b = q->find("weight_block_size")) {
    if (!b->is_array() || b->array().size() != 2 || !b->array()[0].is_number() || !b->array()[1].is_number() || b->array()[0].integer() != 128 ||
        b->array()[1].integer() != 128)
      fail_file(cfg_path, "quantization_config: weight_block_size must be [128, 128]");
  }
}

}  // namespace

std::unique_ptr<WeightStore> load_weights(const std::string& path, const std::function<void(const LoadProgress&)>& progress, DType fp8_as) {
  auto ws = std::make_unique<WeightStore>();
  ws->path = path;
  auto report = [&](double f, const char* stage) {
    if (progress) progress({f, stage});
  };
  report(0.0, "reading header");
  if (is_directory(path)) {
    ws->format = "safetensors";
    std::string cfg = path + "/config.json";
    ws->config = config_from_hf_json(read_text_file(cfg), cfg);
    check_fp8_config(cfg);
    SafetensorsModel st(path);
    ws->files = st.files();
    std::map<std::string, const SafeTensor*> by_name;
    for (auto& t : st.tensors()) by_name[t.name] = &t;
    for (auto& t : st.tensors()) {
      std::string n = canonical_name_from_hf(t.name);
      if (n.empty()) continue;  // rotary inv_freq buffers, FP8 scales (read with their weight) and the like
      if (t.dtype != DType::F8_E4M3) {
        add_tensor(*ws, n, t.dtype, t.ne, t.data);
        continue;
      }
      // An FP8 weight: its codes and the f32 scale of each 128 × 128 block, as the rows the kernels read.
      const std::string where = t.file + ": tensor '" + t.name + "'";
      auto it = by_name.find(t.name + "_scale_inv");
      if (it == by_name.end()) fail_file(where, "is FP8 (F8_E4M3) but has no " + t.name + "_scale_inv beside it");
      const SafeTensor& s = *it->second;
      if (t.ne.size() != 2) fail_file(where, "an FP8 tensor must be a 2-D weight");
      const int64_t rows = t.ne[1], cols = t.ne[0], sr = (rows + 127) / 128, sc = (cols + 127) / 128;
      if (s.ne.size() != 2 || s.ne[1] != sr || s.ne[0] != sc)
        fail_file(where, "its weight_scale_inv has shape [" + std::to_string(s.ne.size() > 1 ? s.ne[1] : 1) + ", " + std::to_string(s.ne[0]) +
                             "], expected [" + std::to_string(sr) + ", " + std::to_string(sc) + "] (one scale per 128 × 128 block)");
      std::vector<float> scale(size_t(sr * sc));
      if (s.dtype != DType::F32 && s.dtype != DType::BF16) fail_file(where, "its weight_scale_inv must be F32 or BF16");
      dequantize_row(s.dtype, s.data, scale.data(), sr * sc);
      for (float x : scale)
        if (!std::isfinite(x)) fail_file(where, "its weight_scale_inv holds a NaN or infinity");
      DType as = fp8_as;
      auto buf = std::make_unique<std::vector<uint8_t>>(convert_fp8_weight(t.data, scale.data(), rows, cols, as, where));
      add_tensor(*ws, n, as, t.ne, buf->data());
      ws->owned.push_back(std::move(buf));
    }
    size_t slash = path.find_last_of('/', path.size() > 1 ? path.size() - 2 : 0);
    ws->name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (!ws->find("output.weight")) ws->config.tie_word_embeddings = true;
  } else {
    ws->format = "gguf";
    GgufFile g(path);
    ws->config = config_from_gguf(g);
    ws->files.push_back(g.shared_file());
    for (auto& t : g.tensors()) {
      if (t.name == "rope_freqs.weight") {
        if (t.dtype != DType::F32) fail_file(path, "rope_freqs.weight must be f32");
        const float* f = reinterpret_cast<const float*>(t.data);
        ws->rope_freqs.assign(f, f + t.ne[0]);
        if (int64_t(ws->rope_freqs.size()) != ws->config.head_dim / 2)
          fail_file(path, "rope_freqs.weight has " + std::to_string(t.ne[0]) + " entries, expected head_dim/2 = " + std::to_string(ws->config.head_dim / 2));
        continue;
      }
      // deepseek2's routed experts come stacked, {in, out, n_experts}: one view per expert, named
      // as the HF loader names them ("blk.N.ffn_gate_exps.E.weight").
      if (t.ne.size() == 3 && t.name.ends_with("_exps.weight")) {
        const std::string stem = t.name.substr(0, t.name.size() - 7);  // without ".weight"
        const size_t expert_bytes = row_bytes(t.dtype, t.ne[0]) * size_t(t.ne[1]);
        for (int64_t e = 0; e < t.ne[2]; e++)
          add_tensor(*ws, stem + "." + std::to_string(e) + ".weight", t.dtype, {t.ne[0], t.ne[1]},
                     static_cast<const uint8_t*>(t.data) + size_t(e) * expert_bytes);
        continue;
      }
      add_tensor(*ws, t.name, t.dtype, t.ne, t.data);
    }
    ws->name = g.get_string("general.name", path.substr(path.find_last_of('/') + 1));
  }
  if (ws->find("blk.0.attn_q.bias")) ws->config.attention_bias = true;
  // Touch the weights once so the first token does not pay for page faults, and report progress.
  size_t total = 0, done = 0;
  for (auto& f : ws->files) total += f->size();
  for (auto& f : ws->files) {
    const size_t step = size_t(64) << 20;
    for (size_t off = 0; off < f->size(); off += step) {
      f->prefetch(off, step);
      volatile uint8_t sink = 0;
      for (size_t p = off; p < std::min(f->size(), off + step); p += 4096) sink = sink + f->data()[p];
      done += std::min(step, f->size() - off);
      report(0.05 + 0.9 * double(done) / double(total ? total : 1), "mapping weights");
    }
  }
  return ws;
}

size_t WeightStore::pack_for_cpu(ThreadPool& pool) {
  if (const char* e = std::getenv("AHA_PACK"); e && !std::strcmp(e, "0")) return 0;
  auto packable = [&](const std::string& name, const Tensor& t) {
    if (t.packed || t.ne.size() != 2 || !packed_weight_kernel(t.dtype, active_isa())) return false;
    return name != "token_embd.weight" || config.tie_word_embeddings;  // an untied table is only read by rows
  };
  // The packed copies live in RAM, where the file's pages could be dropped and read again: a
  // model larger than memory (a big MoE whose experts page in from disk as the router picks
  // them) must stay mapped. Past half the machine's memory, routed experts stay in the file's
  // layout; past it even without them, nothing is packed.
  const double ram = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  double all = 0, experts = 0;
  for (auto& [name, t] : tensors)
    if (packable(name, t)) (name.find("_exps.") != std::string::npos ? experts : all) += double(t.row_bytes) * double(t.rows());
  if (ram > 0 && all > 0.5 * ram) return 0;
  const bool skip_experts = ram > 0 && all + experts > 0.5 * ram;
  size_t total = 0;
  for (auto& [name, t] : tensors) {
    if (!packable(name, t) || (skip_experts && name.find("_exps.") != std::string::npos)) continue;
    const int64_t k = t.ne[0], rows = t.ne[1];
    const size_t bytes = packed_bytes(t.dtype, k, rows);
    // 2 MiB aligned so the kernel can back it with huge pages (one TLB entry per 2 MiB streamed).
    const size_t align = bytes >= (size_t(8) << 20) ? size_t(2) << 20 : 64;
    void* buf = std::aligned_alloc(align, (bytes + align - 1) / align * align);
    if (!buf) throw Error(t.name + ": out of memory packing " + std::to_string(bytes) + " bytes");
    packed.emplace_back(buf, std::free);
    if (align > 64) ::madvise(buf, bytes, MADV_HUGEPAGE);
    const int64_t groups = (rows + 15) / 16;
    pool.parallel_for(groups, [&](int64_t g0, int64_t g1, int) {
      pack_rows(t.dtype, t.data, k, rows, 16 * g0, std::min(rows, 16 * g1), buf);
    });
    t.packed = buf;
    for (auto& f : files)
      if (f->release(t.data, t.row_bytes * size_t(rows))) break;
    total += bytes;
  }
  return total;
}

std::vector<float> rope_inv_freq(const ModelConfig& c, const std::vector<float>& gguf_rope_freqs) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) {
    // As transformers computes it: in float32, theta ** (2i / head_dim).
    inv[size_t(i)] = 1.0f / std::pow(float(c.rope_theta), float(2 * i) / float(c.head_dim));
  }
  if (!gguf_rope_freqs.empty()) {
    for (int64_t i = 0; i < half; i++) inv[size_t(i)] /= gguf_rope_freqs[size_t(i)];
    return inv;
  }
  if (c.rope_scaling == RopeScalingType::Linear) {
    for (auto& f : inv) f = float(f / c.rope_factor);
  } else if (c.rope_scaling == RopeScalingType::Llama3) {
    const double old_ctx = double(c.rope_original_max_position);
    const double low_wavelen = old_ctx / c.rope_low_freq_factor, high_wavelen = old_ctx / c.rope_high_freq_factor;
    for (auto& f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = float(f / c.rope_factor);
      } else if (wavelen >= high_wavelen) {
        double smooth = (old_ctx / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
        f = float((1 - smooth) * f / c.rope_factor + smooth * f);
      }
    }
  }
  return inv;
}

}  // namespace aha
