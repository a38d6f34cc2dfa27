// Full training of small dense models: the parameters as HF names them (f32 master weights),
// made fresh from a config or read from any model the engine loads, saved as an HF folder, and
// bound to a DenseModel so that the one train forward/backward (dense_lora.cpp) runs on them and
// gives every parameter's gradient.
#include <cmath>
#include <cstring>

#include "aha/error.h"
#include "aha/kernels.h"
#include "aha/train.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "formats/safetensors_writer.h"
#include "models/loader.h"
#include "train/dense_lora.h"

namespace aha {

namespace {

enum class Init { Normal, Zeros, Ones };

struct ParamSpec {
  std::string name;            // HF
  std::vector<int64_t> shape;  // row-major
  Init init;
};

bool is_dense(Arch a) { return a == Arch::Llama || a == Arch::Qwen2 || a == Arch::Qwen3; }

// Every parameter of a dense config, in the HF state dict's order. Biases: q/k/v when
// attention_bias (Qwen2 always), o_proj too except on Qwen2 (as transformers builds them).
std::vector<ParamSpec> param_specs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, hd = c.head_dim;
  const int64_t QD = c.num_attention_heads * hd, KD = c.num_key_value_heads * hd;
  const bool o_bias = c.attention_bias && c.arch != Arch::Qwen2;
  std::vector<ParamSpec> s;
  s.push_back({"model.embed_tokens.weight", {V, H}, Init::Normal});
  for (int64_t l = 0; l < c.num_hidden_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", {H}, Init::Ones});
    for (auto [proj, out] : {std::pair{"q_proj", QD}, std::pair{"k_proj", KD}, std::pair{"v_proj", KD}}) {
      s.push_back({p + "self_attn." + proj + ".weight", {out, H}, Init::Normal});
      if (c.attention_bias) s.push_back({p + "self_attn." + proj + ".bias", {out}, Init::Zeros});
    }
    s.push_back({p + "self_attn.o_proj.weight", {H, QD}, Init::Normal});
    if (o_bias) s.push_back({p + "self_attn.o_proj.bias", {H}, Init::Zeros});
    if (c.qk_norm) {
      s.push_back({p + "self_attn.q_norm.weight", {hd}, Init::Ones});
      s.push_back({p + "self_attn.k_norm.weight", {hd}, Init::Ones});
    }
    s.push_back({p + "post_attention_layernorm.weight", {H}, Init::Ones});
    s.push_back({p + "mlp.gate_proj.weight", {F, H}, Init::Normal});
    s.push_back({p + "mlp.up_proj.weight", {F, H}, Init::Normal});
    s.push_back({p + "mlp.down_proj.weight", {H, F}, Init::Normal});
  }
  s.push_back({"model.norm.weight", {H}, Init::Ones});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {V, H}, Init::Normal});
  return s;
}

// HF's Trainer decays neither biases nor norm weights.
bool decays(const std::string& name) { return name.find("bias") == std::string::npos && name.find("norm") == std::string::npos; }

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> ggml_order(const std::vector<int64_t>& shape) { return {shape.rbegin(), shape.rend()}; }

// splitmix64 + the polar Box–Muller method: portable normals (std's distributions are not).
class Normals {
 public:
  explicit Normals(uint64_t seed) : s_(seed) {}
  double operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    for (;;) {
      const double u = uniform() * 2 - 1, v = uniform() * 2 - 1, q = u * u + v * v;
      if (q >= 1 || q == 0) continue;
      const double m = std::sqrt(-2 * std::log(q) / q);
      spare_ = v * m;
      has_spare_ = true;
      return u * m;
    }
  }

 private:
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  uint64_t s_;
  bool has_spare_ = false;
  double spare_ = 0;
};

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// A float as Python's repr writes it (transformers' configs keep rope_theta, rms_norm_eps and the
// rope factors as floats): the shortest digits that read back, "10000.0", "0.02", "1e-06".
std::string py_float(double v) {
  char b[48];
  const double a = std::fabs(v);
  if (v == 0 || (a >= 1e-4 && a < 1e16)) {
    for (int d = 0; d <= 17; d++) {
      std::snprintf(b, sizeof b, "%.*f", d, v);
      if (std::strtod(b, nullptr) == v) break;
    }
    std::string s = b;
    return s.find('.') == std::string::npos ? s + ".0" : s;
  }
  for (int d = 0; d <= 16; d++) {
    std::snprintf(b, sizeof b, "%.*e", d, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

void check_dense(const ModelConfig& c, const std::string& what) {
  if (!is_dense(c.arch)) fail_file(what, std::string("full training supports the dense family (llama, qwen2, qwen3), not ") + arch_name(c.arch));
}

// A WeightStore whose tensors are `p`'s values (read in place; `p` must outlive it unchanged in
// size), and the DenseModel bound to it.
struct BoundModel {
  WeightStore ws;
  std::unique_ptr<DenseModel> model;
};

std::unique_ptr<BoundModel> bind(const DenseParams<float>& p) {
  auto b = std::make_unique<BoundModel>();
  b->ws.path = "(the model being trained)";
  b->ws.format = "memory";
  b->ws.config = p.config;
  b->ws.rope_freqs = p.rope_freqs;
  for (auto& t : p.tensors) {
    Tensor x;
    x.name = canonical_name_from_hf(t.name);
    x.dtype = DType::F32;
    x.ne = ggml_order(t.shape);
    x.data = t.values.data();
    x.row_bytes = size_t(x.ne[0]) * 4;
    b->ws.tensors[x.name] = std::move(x);
  }
  b->model = std::make_unique<DenseModel>(b->ws);
  return b;
}

template <class F>
DenseParams<F> zeros_like(const DenseParams<float>& p) {
  DenseParams<F> z;
  z.config = p.config;
  z.initializer_range = p.initializer_range;
  z.rope_freqs = p.rope_freqs;
  for (auto& t : p.tensors) z.tensors.push_back({t.name, t.shape, std::vector<F>(t.values.size(), F(0)), t.decay});
  return z;
}

template <class F>
train::WeightGrads<F> grad_map(DenseParams<F>& g) {
  train::WeightGrads<F> m;
  for (auto& t : g.tensors) m[canonical_name_from_hf(t.name)] = t.values.data();
  return m;
}

}  // namespace

template <class F>
ModelTensor<F>* DenseParams<F>::find(const std::string& name) {
  for (auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

template <class F>
const ModelTensor<F>* DenseParams<F>::find(const std::string& name) const {
  return const_cast<DenseParams<F>*>(this)->find(name);
}

template <class F>
int64_t DenseParams<F>::parameters() const {
  int64_t n = 0;
  for (auto& t : tensors) n += int64_t(t.values.size());
  return n;
}

template struct DenseParams<float>;
template struct DenseParams<double>;

DenseParams<float> dense_params_init(const ModelConfig& c, double initializer_range, uint64_t seed) {
  check_dense(c, "the config");
  check_config(c, "the config");
  if (!(initializer_range > 0) || !std::isfinite(initializer_range))
    throw Error("initializer_range must be a positive number, got " + py_float(initializer_range));
  DenseParams<float> p;
  p.config = c;
  p.config.rope_neox = true;
  p.initializer_range = initializer_range;
  for (auto& s : param_specs(p.config)) {
    std::vector<float> v(size_t(numel(s.shape)), s.init == Init::Ones ? 1.0f : 0.0f);
    if (s.init == Init::Normal) {
      Normals normal(seed ^ fnv1a64(s.name));  // one stream per tensor: adding a layer leaves the others as they were
      for (float& x : v) x = float(normal() * initializer_range);
    }
    p.tensors.push_back({s.name, s.shape, std::move(v), decays(s.name)});
  }
  return p;
}

DenseParams<float> dense_params_init(const std::string& config_file, uint64_t seed) {
  const std::string text = read_text_file(config_file);
  ModelConfig c = config_from_hf_json(text, config_file);
  check_dense(c, config_file);
  return dense_params_init(c, Json::parse(text, config_file).get_number("initializer_range", 0.02), seed);
}

DenseParams<float> dense_params_load(const std::string& path) {
  auto ws = load_weights(path, nullptr);
  check_dense(ws->config, path);
  DenseParams<float> p;
  p.config = ws->config;
  // As DenseModel binds it: without output.weight the embedding table is the lm head.
  p.config.tie_word_embeddings = !ws->find("output.weight");
  p.rope_freqs = ws->rope_freqs;
  if (ws->format == "safetensors")
    p.initializer_range = Json::parse(read_text_file(path + "/config.json"), path + "/config.json").get_number("initializer_range", 0.02);
  for (auto& s : param_specs(p.config)) {
    const Tensor& t = ws->get(canonical_name_from_hf(s.name), ggml_order(s.shape));
    std::vector<float> v(size_t(t.numel()));
    for (int64_t r = 0; r < t.rows(); r++) dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + size_t(r) * t.row_bytes, v.data() + r * t.ne[0], t.ne[0]);
    p.tensors.push_back({s.name, s.shape, std::move(v), decays(s.name)});
  }
  if (!p.config.rope_neox) {
    // GGUF llama: q/k rows permuted for interleaved rope; HF's order computes the same with rope on halves.
    for (int64_t l = 0; l < p.config.num_hidden_layers; l++)
      for (auto [proj, heads] : {std::pair{"q_proj", p.config.num_attention_heads}, std::pair{"k_proj", p.config.num_key_value_heads}})
        for (const char* kind : {"weight", "bias"})
          if (ModelTensor<float>* t = p.find("model.layers." + std::to_string(l) + ".self_attn." + proj + "." + kind))
            train::permute_head_rows(t->values, heads, p.config.head_dim, t->shape.size() > 1 ? t->shape[1] : 1, false);
    p.config.rope_neox = true;
  }
  return p;
}

std::string dense_hf_config_json(const ModelConfig& c, double initializer_range) {
  check_dense(c, "the config");
  const char* arch = c.arch == Arch::Llama ? "LlamaForCausalLM" : c.arch == Arch::Qwen2 ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM";
  const char* type = arch_name(c.arch);
  std::string rope = "null";
  if (c.rope_scaling == RopeScalingType::Llama3)
    rope = "{\n    \"factor\": " + py_float(c.rope_factor) + ",\n    \"high_freq_factor\": " + py_float(c.rope_high_freq_factor) +
           ",\n    \"low_freq_factor\": " + py_float(c.rope_low_freq_factor) + ",\n    \"original_max_position_embeddings\": " +
           std::to_string(c.rope_original_max_position) + ",\n    \"rope_type\": \"llama3\"\n  }";
  else if (c.rope_scaling == RopeScalingType::Linear)
    rope = "{\n    \"factor\": " + py_float(c.rope_factor) + ",\n    \"rope_type\": \"linear\"\n  }";
  else if (c.rope_scaling != RopeScalingType::None)
    throw Error("the config's rope scaling cannot be written for a dense model");
  std::string eos;
  if (c.eos_token_ids.size() == 1) eos = std::to_string(c.eos_token_ids[0]);
  else {
    eos = "[";
    for (size_t i = 0; i < c.eos_token_ids.size(); i++) eos += (i ? ", " : "") + std::to_string(c.eos_token_ids[i]);
    eos += "]";
  }
  // Keys sorted, as transformers writes them.
  std::string j = "{\n";
  auto add = [&](const std::string& k, const std::string& v) { j += "  \"" + k + "\": " + v + ",\n"; };
  add("architectures", std::string("[\n    \"") + arch + "\"\n  ]");
  if (c.arch != Arch::Qwen2) add("attention_bias", c.attention_bias ? "true" : "false");
  add("attention_dropout", "0.0");
  if (c.bos_token_id >= 0) add("bos_token_id", std::to_string(c.bos_token_id));
  if (!c.eos_token_ids.empty()) add("eos_token_id", eos);
  add("head_dim", std::to_string(c.head_dim));
  add("hidden_act", "\"silu\"");
  add("hidden_size", std::to_string(c.hidden_size));
  add("initializer_range", py_float(initializer_range));
  add("intermediate_size", std::to_string(c.intermediate_size));
  add("max_position_embeddings", std::to_string(c.max_position_embeddings));
  if (c.arch == Arch::Llama) add("mlp_bias", "false");
  add("model_type", std::string("\"") + type + "\"");
  add("num_attention_heads", std::to_string(c.num_attention_heads));
  add("num_hidden_layers", std::to_string(c.num_hidden_layers));
  add("num_key_value_heads", std::to_string(c.num_key_value_heads));
  add("rms_norm_eps", py_float(c.rms_norm_eps));
  add("rope_scaling", rope);
  add("rope_theta", py_float(c.rope_theta));
  add("tie_word_embeddings", c.tie_word_embeddings ? "true" : "false");
  add("torch_dtype", "\"float32\"");
  add("use_cache", "true");
  if (c.arch != Arch::Llama) add("use_sliding_window", "false");
  j += "  \"vocab_size\": " + std::to_string(c.vocab_size) + "\n}\n";
  return j;
}

void save_dense_model(const std::string& dir, const DenseParams<float>& p) {
  if (!p.rope_freqs.empty())
    throw Error("this model's llama3 rope scaling comes from a GGUF's rope_freqs.weight, which an HF config.json cannot state; start from the HF folder instead");
  if (!is_directory(dir)) fail_file(dir, "not a folder (create it first)");
  std::vector<SafetensorsEntry> entries;
  for (auto& t : p.tensors) {
    SafetensorsEntry e;
    e.name = t.name;
    e.dtype = "F32";
    e.shape = t.shape;
    e.bytes.resize(t.values.size() * 4);
    std::memcpy(e.bytes.data(), t.values.data(), e.bytes.size());
    entries.push_back(std::move(e));
  }
  write_safetensors(dir + "/model.safetensors", std::move(entries), {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", dense_hf_config_json(p.config, p.initializer_range));
}

FullLossAndGrads full_loss_and_grads(const DenseParams<float>& params, const std::vector<TrainSequence>& batch, GradPrecision precision,
                                     ThreadPool& pool) {
  auto bound = bind(params);
  train::PackedBatch b = train::pack_sequences(batch, params.config);
  FullLossAndGrads out;
  out.target_tokens = b.n_targets;
  if (precision == GradPrecision::F64) {
    out.grads = zeros_like<double>(params);
    out.loss = train::dense_full_loss<double>(*bound->model, b, grad_map(out.grads), pool);
  } else {
    DenseParams<float> g = zeros_like<float>(params);
    out.loss = train::dense_full_loss<float>(*bound->model, b, grad_map(g), pool);
    out.grads = zeros_like<double>(params);
    for (size_t k = 0; k < g.tensors.size(); k++) out.grads.tensors[k].values.assign(g.tensors[k].values.begin(), g.tensors[k].values.end());
  }
  return out;
}

}  // namespace aha
