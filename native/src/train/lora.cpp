// LoRA adapters in PEFT's layout: adapter_config.json + adapter_model.safetensors with tensors
// base_model.model.model.layers.<l>.<self_attn|mlp>.<module>.lora_A.weight [r, in] and
// .lora_B.weight [out, r]; PEFT's initialization and scale.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>
#include <set>

#include "aha/error.h"
#include "aha/kernels.h"
#include "aha/train.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"

namespace aha {

namespace {

constexpr const char* kNames[kLoraTargets] = {"q_proj",   "k_proj",   "v_proj",   "o_proj",  "gate_proj", "up_proj", "down_proj",
                                              "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "gate_proj", "up_proj", "down_proj",
                                              "experts.gate_up_proj", "experts.down_proj"};
// What target_modules entries match (PEFT's suffix rule).
constexpr const char* kPaths[kLoraTargets] = {
    "self_attn.q_proj",   "self_attn.k_proj",   "self_attn.v_proj",           "self_attn.o_proj",           "mlp.gate_proj",
    "mlp.up_proj",        "mlp.down_proj",      "self_attn.q_a_proj",         "self_attn.q_b_proj",         "self_attn.kv_a_proj_with_mqa",
    "self_attn.kv_b_proj", "mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj", "mlp.shared_experts.down_proj",
    "mlp.experts.gate_up_proj", "mlp.experts.down_proj"};
// Where PEFT keeps the pair in the state dict: the routed experts' two parameters are nested
// ParamWrappers on the experts module, gate_up_proj the inner one (base_layer).
constexpr const char* kPeftPaths[kLoraTargets] = {
    "self_attn.q_proj",   "self_attn.k_proj",   "self_attn.v_proj",           "self_attn.o_proj",           "mlp.gate_proj",
    "mlp.up_proj",        "mlp.down_proj",      "self_attn.q_a_proj",         "self_attn.q_b_proj",         "self_attn.kv_a_proj_with_mqa",
    "self_attn.kv_b_proj", "mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj", "mlp.shared_experts.down_proj",
    "mlp.experts.base_layer", "mlp.experts"};

bool is_expert_target(LoraTarget t) { return t == LoraTarget::ExpertsGateUp || t == LoraTarget::ExpertsDown; }
// experts.gate_up_proj, mlp.experts.down_proj, ... (not shared_experts.down_proj).
bool is_expert_entry(const std::string& n) {
  const size_t p = n.rfind("experts.");
  if (p == std::string::npos || (p > 0 && n[p - 1] != '.')) return false;
  const std::string tail = n.substr(p + 8);
  return tail == "gate_up_proj" || tail == "down_proj";
}

bool is_deepseek(const ModelConfig& c) { return c.arch == Arch::DeepseekV2 || c.arch == Arch::DeepseekV3; }

// The names a user may write, each once (gate_proj stands for the shared experts' too).
std::string supported_names() {
  std::string s;
  for (int i = 0; i < kLoraTargets; i++) {
    if (i >= int(LoraTarget::SharedGate)) break;
    s += (s.empty() ? "" : ", ") + std::string(kNames[i]);
  }
  return s + ", shared_experts.gate_proj, shared_experts.up_proj, shared_experts.down_proj, experts.gate_up_proj, experts.down_proj, all-linear";
}

std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.17g", v);
  std::string s = b;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

}  // namespace

const char* lora_target_name(LoraTarget t) { return kNames[int(t)]; }
const char* lora_target_path(LoraTarget t) { return kPaths[int(t)]; }

bool lora_entry_matches(const std::string& entry, LoraTarget t) {
  const std::string path = kPaths[int(t)];
  // The routed experts are parameters, not Linear modules: only their own names reach them
  // (not "all-linear", not a bare down_proj), as PEFT's target_parameters.
  if (is_expert_target(t) != is_expert_entry(entry)) return false;
  if (entry == "all-linear" || entry == path) return true;
  return path.size() > entry.size() && path.compare(path.size() - entry.size(), entry.size(), entry) == 0 && path[path.size() - entry.size() - 1] == '.';
}

bool lora_target_exists(const ModelConfig& c, int64_t layer, LoraTarget t) {
  if (layer < 0 || layer >= c.num_hidden_layers) return false;
  if (!is_deepseek(c)) return int(t) < int(LoraTarget::QAProj);
  const DeepseekConfig& d = c.deepseek;
  const bool moe = d.is_moe_layer(layer);
  switch (t) {
    case LoraTarget::QProj: return d.q_lora_rank == 0;
    case LoraTarget::QAProj:
    case LoraTarget::QBProj: return d.q_lora_rank > 0;
    case LoraTarget::KvAProj:
    case LoraTarget::KvBProj:
    case LoraTarget::OProj: return true;
    case LoraTarget::GateProj:
    case LoraTarget::UpProj:
    case LoraTarget::DownProj: return !moe;
    case LoraTarget::SharedGate:
    case LoraTarget::SharedUp:
    case LoraTarget::SharedDown: return moe && d.n_shared_experts > 0;
    case LoraTarget::ExpertsGateUp:
    case LoraTarget::ExpertsDown: return moe;
    case LoraTarget::KProj:
    case LoraTarget::VProj: return false;
  }
  return false;
}

std::pair<int64_t, int64_t> lora_module_shape(const ModelConfig& c, int64_t layer, LoraTarget t) {
  if (!lora_target_exists(c, layer, t)) throw Error(std::string("layer ") + std::to_string(layer) + " has no " + kPaths[int(t)]);
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  if (!is_deepseek(c)) {
    const int64_t QD = c.num_attention_heads * c.head_dim, KD = c.num_key_value_heads * c.head_dim;
    switch (t) {
      case LoraTarget::QProj: return {H, QD};
      case LoraTarget::KProj:
      case LoraTarget::VProj: return {H, KD};
      case LoraTarget::OProj: return {QD, H};
      case LoraTarget::GateProj:
      case LoraTarget::UpProj: return {H, F};
      case LoraTarget::DownProj: return {F, H};
      default: break;
    }
  }
  const DeepseekConfig& d = c.deepseek;
  const int64_t nh = c.num_attention_heads, QD = nh * (d.qk_nope_head_dim + d.qk_rope_head_dim), S = d.moe_intermediate_size * d.n_shared_experts;
  switch (t) {
    case LoraTarget::QProj: return {H, QD};
    case LoraTarget::QAProj: return {H, d.q_lora_rank};
    case LoraTarget::QBProj: return {d.q_lora_rank, QD};
    case LoraTarget::KvAProj: return {H, d.kv_lora_rank + d.qk_rope_head_dim};
    case LoraTarget::KvBProj: return {d.kv_lora_rank, nh * (d.qk_nope_head_dim + d.v_head_dim)};
    case LoraTarget::OProj: return {nh * d.v_head_dim, H};
    case LoraTarget::GateProj:
    case LoraTarget::UpProj: return {H, F};
    case LoraTarget::DownProj: return {F, H};
    case LoraTarget::SharedGate:
    case LoraTarget::SharedUp: return {H, S};
    case LoraTarget::SharedDown: return {S, H};
    case LoraTarget::ExpertsGateUp: return {H, 2 * d.moe_intermediate_size};
    case LoraTarget::ExpertsDown: return {d.moe_intermediate_size, H};
    default: break;
  }
  return {0, 0};
}

LoraTarget lora_target_from_name(const std::string& name) {
  for (int i = 0; i < kLoraTargets; i++)
    if (name == kNames[i]) return LoraTarget(i);
  throw Error("unknown LoRA target module '" + name + "' (the models have: " + supported_names() + ")");
}

double LoraConfig::scale() const { return use_rslora ? alpha / std::sqrt(double(rank)) : alpha / double(rank); }

bool LoraConfig::targets(LoraTarget t) const {
  for (auto& n : target_modules)
    if (lora_entry_matches(n, t)) return true;
  return false;
}

void LoraConfig::validate() const {
  if (rank < 1) throw Error("LoRA rank must be at least 1, got " + std::to_string(rank));
  if (!(alpha > 0) || !std::isfinite(alpha)) throw Error("LoRA alpha must be a positive number, got " + number(alpha));
  if (!(dropout >= 0 && dropout < 1)) throw Error("LoRA dropout must be in [0, 1), got " + number(dropout));
  if (target_modules.empty()) throw Error("no LoRA target modules (choose from " + supported_names() + ")");
  if (dropout > 0)
    for (auto& n : target_modules)
      if (is_expert_entry(n))
        throw Error("LoRA dropout cannot apply to the routed experts (" + n + "): their adapter is folded into the weight, as PEFT's ParamWrapper does, which has no dropout either");
  std::set<std::string> seen;
  for (auto& n : target_modules) {
    bool known = false;
    for (int i = 0; i < kLoraTargets; i++) known = known || lora_entry_matches(n, LoraTarget(i));
    if (!known) throw Error("unknown LoRA target module '" + n + "' (the models have: " + supported_names() + ")");
    if (!seen.insert(n).second) throw Error("LoRA target module '" + n + "' is listed twice");
  }
}

LoraConfig lora_config_from_json(const std::string& text, const std::string& file) {
  Json j = Json::parse(text, file);
  if (!j.is_object()) fail_file(file, "not a JSON object");
  LoraConfig c;
  try {
    std::string type = j.get_string("peft_type", "LORA");
    if (type != "LORA") fail_file(file, "peft_type is '" + type + "'; only LORA adapters are supported");
    c.rank = j.get_int("r", 8);
    c.alpha = j.get_number("lora_alpha", 8);
    c.dropout = j.get_number("lora_dropout", 0);
    c.use_rslora = j.get_bool("use_rslora", false);
    c.base_model = j.find("base_model_name_or_path") && j.find("base_model_name_or_path")->is_string() ? j.get_string("base_model_name_or_path", "") : "";
    if (j.get_bool("use_dora", false)) fail_file(file, "DoRA adapters (use_dora) are not supported");
    if (j.get_bool("lora_bias", false)) fail_file(file, "adapters with a bias on lora_B (lora_bias) are not supported");
    if (j.get_bool("fan_in_fan_out", false)) fail_file(file, "fan_in_fan_out adapters are not supported");
    if (std::string b = j.get_string("bias", "none"); b != "none") fail_file(file, "bias '" + b + "' is not supported (only \"none\")");
    for (const char* k : {"rank_pattern", "alpha_pattern"})
      if (const Json* p = j.find(k); p && p->is_object() && !p->object().empty()) fail_file(file, std::string(k) + " is not supported");
    for (const char* k : {"layers_to_transform", "modules_to_save"})
      if (const Json* p = j.find(k); p && !p->is_null()) fail_file(file, std::string(k) + " is not supported");
    const Json* t = j.find("target_modules");
    if (!t) fail_file(file, "no target_modules");
    c.target_modules.clear();
    if (t->is_string() && t->string() == "all-linear") {
      c.target_modules.push_back("all-linear");  // every linear layer the model has (but the lm head), as PEFT
    } else if (t->is_array()) {
      for (auto& x : t->array()) {
        if (!x.is_string()) fail_file(file, "target_modules must be a list of module names");
        c.target_modules.push_back(x.string());
      }
    } else {
      fail_file(file, "target_modules must be a list of module names or \"all-linear\" (regular expressions are not supported)");
    }
    if (const Json* tp = j.find("target_parameters"); tp && !tp->is_null()) {
      if (!tp->is_array()) fail_file(file, "target_parameters must be a list of parameter names");
      for (auto& x : tp->array()) {
        if (!x.is_string() || !is_expert_entry(x.string()))
          fail_file(file, "target_parameters: only the routed experts' experts.gate_up_proj and experts.down_proj are supported");
        c.target_modules.push_back(x.string());
      }
    }
    c.validate();
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind(file, 0) == 0) throw;
    fail_file(file, m);
  }
  return c;
}

std::string lora_config_to_json(const LoraConfig& c) {
  std::string t, tp;
  for (auto& n : c.target_modules) (is_expert_entry(n) ? tp : t) += ((is_expert_entry(n) ? tp : t).empty() ? "" : ", ") + json_quote(n);
  tp = tp.empty() ? "null" : "[" + tp + "]";
  t = c.target_modules.size() == 1 && c.target_modules[0] == "all-linear" ? t : "[" + t + "]";  // PEFT reads only the string form as the keyword
  return "{\n"
         "  \"alpha_pattern\": {},\n"
         "  \"base_model_name_or_path\": " + (c.base_model.empty() ? std::string("null") : json_quote(c.base_model)) + ",\n"
         "  \"bias\": \"none\",\n"
         "  \"fan_in_fan_out\": false,\n"
         "  \"inference_mode\": true,\n"
         "  \"init_lora_weights\": true,\n"
         "  \"layers_to_transform\": null,\n"
         "  \"lora_alpha\": " + number(c.alpha) + ",\n"
         "  \"lora_dropout\": " + number(c.dropout) + ",\n"
         "  \"modules_to_save\": null,\n"
         "  \"peft_type\": \"LORA\",\n"
         "  \"r\": " + std::to_string(c.rank) + ",\n"
         "  \"rank_pattern\": {},\n"
         "  \"target_modules\": " + t + ",\n"
         "  \"target_parameters\": " + tp + ",\n"
         "  \"task_type\": \"CAUSAL_LM\",\n"
         "  \"use_dora\": false,\n"
         "  \"use_rslora\": " + (c.use_rslora ? "true" : "false") + "\n"
         "}\n";
}

namespace {

// The modules an entry of target_modules names in this model (layer, target), by PEFT's rule.
bool entry_found(const ModelConfig& mc, const std::string& entry) {
  for (int64_t l = 0; l < mc.num_hidden_layers; l++)
    for (int i = 0; i < kLoraTargets; i++)
      if (lora_target_exists(mc, l, LoraTarget(i)) && lora_entry_matches(entry, LoraTarget(i))) return true;
  return false;
}

std::string model_modules(const ModelConfig& mc) {
  std::string have;
  for (int i = 0; i < kLoraTargets; i++)
    for (int64_t l = 0; l < mc.num_hidden_layers; l++)
      if (lora_target_exists(mc, l, LoraTarget(i))) {
        have += (have.empty() ? "" : ", ") + std::string(kPaths[i]);
        break;
      }
  return have;
}

}  // namespace

// As PEFT: entries that name nothing in this model are passed over (an adapter may list q_proj
// and q_a_proj for models with either), but one must name something. LoraAdapter::init, where a
// user chooses the targets, is strict.
template <class F>
LoraSet<F>::LoraSet(const ModelConfig& mc, const LoraConfig& lc) : n_layers(mc.num_hidden_layers), rank(lc.rank) {
  lc.validate();
  bool any = false;
  for (auto& n : lc.target_modules) any = any || entry_found(mc, n);
  if (!any) throw Error("none of the LoRA target modules is a module of this " + std::string(arch_name(mc.arch)) + " model (it has " + model_modules(mc) + ")");
  mods.resize(size_t(n_layers * kLoraTargets));
  for (int64_t l = 0; l < n_layers; l++)
    for (int i = 0; i < kLoraTargets; i++) {
      if (!lc.targets(LoraTarget(i)) || !lora_target_exists(mc, l, LoraTarget(i))) continue;
      auto [in, out] = lora_module_shape(mc, l, LoraTarget(i));
      LoraPair<F>& p = mods[size_t(l * kLoraTargets + i)];
      p.in = in;
      p.out = out;
      p.experts = is_expert_target(LoraTarget(i)) ? mc.deepseek.n_routed_experts : 1;
      p.A.assign(size_t(rank * p.experts * in), F(0));
      p.B.assign(size_t(out * rank * p.experts), F(0));
    }
}

template <class F>
LoraPair<F>* LoraSet<F>::find(int64_t layer, LoraTarget t) {
  if (layer < 0 || layer >= n_layers) return nullptr;
  LoraPair<F>& p = mods[size_t(layer * kLoraTargets + int(t))];
  return p.A.empty() ? nullptr : &p;
}

template <class F>
const LoraPair<F>* LoraSet<F>::find(int64_t layer, LoraTarget t) const {
  return const_cast<LoraSet<F>*>(this)->find(layer, t);
}

template struct LoraSet<float>;
template struct LoraSet<double>;

template <class F>
void lora_expert_b(const LoraPair<F>& p, int64_t rank, int64_t e, F* out) {
  const int64_t E = p.experts;
  for (int64_t o = 0; o < p.out; o++)
    for (int64_t k = 0; k < rank; k++) out[o * rank + k] = p.B[size_t(o * rank * E + k * E + e)];
}

template <class F>
void lora_expert_b_add(LoraPair<F>& p, int64_t rank, int64_t e, const F* g) {
  const int64_t E = p.experts;
  for (int64_t o = 0; o < p.out; o++)
    for (int64_t k = 0; k < rank; k++) p.B[size_t(o * rank * E + k * E + e)] += g[o * rank + k];
}

template void lora_expert_b<float>(const LoraPair<float>&, int64_t, int64_t, float*);
template void lora_expert_b<double>(const LoraPair<double>&, int64_t, int64_t, double*);
template void lora_expert_b_add<float>(LoraPair<float>&, int64_t, int64_t, const float*);
template void lora_expert_b_add<double>(LoraPair<double>&, int64_t, int64_t, const double*);

std::string lora_peft_name(int64_t layer, LoraTarget t, bool b) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + kPeftPaths[int(t)] + (b ? ".lora_B.weight" : ".lora_A.weight");
}

LoraAdapter LoraAdapter::init(const ModelConfig& mc, const LoraConfig& lc, uint64_t seed) {
  LoraAdapter a;
  a.config_ = lc;
  lc.validate();
  for (auto& n : lc.target_modules)
    if (!entry_found(mc, n))
      throw Error("LoRA target module '" + n + "' is not a module of this " + arch_name(mc.arch) + " model (it has " + model_modules(mc) + ")");
  // "all-linear" is written out as the modules it stands for here: PEFT resolves the keyword by
  // its own rules, which for transformers' DeepSeek include the router and the routed experts.
  // The deepseek family names each MLP kind by its parent, since PEFT 0.21 rewrites a bare
  // gate_proj/up_proj/down_proj of a DeepSeek into the fused routed experts.
  if (std::find(lc.target_modules.begin(), lc.target_modules.end(), "all-linear") != lc.target_modules.end()) {
    const bool ds = is_deepseek(mc);
    std::vector<std::string> names;
    for (int i = 0; i < kLoraTargets; i++) {
      bool exists = false;
      for (int64_t l = 0; l < mc.num_hidden_layers; l++) exists = exists || lora_target_exists(mc, l, LoraTarget(i));
      if (!exists || is_expert_target(LoraTarget(i))) continue;  // routed experts only by their own names
      const std::string path = kPaths[i];
      names.push_back(!ds || path.rfind("self_attn.", 0) == 0 ? kNames[i] : path.rfind("mlp.shared_experts.", 0) == 0 ? path.substr(4) : path);
    }
    for (auto& n : lc.target_modules)
      if (n != "all-linear" && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    a.config_.target_modules = names;
  }
  a.weights_ = LoraSet<float>(mc, lc);
  // splitmix64: the same numbers on every platform (std's distributions are not portable).
  uint64_t s = seed;
  auto next = [&s] {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (auto& p : a.weights_.mods) {
    if (p.A.empty()) continue;
    // kaiming_uniform_(a=√5): gain √(2/(1+5)), bound = gain·√(3/fan_in) = 1/√in.
    const double bound = 1.0 / std::sqrt(double(p.in));
    for (auto& x : p.A) x = float((double(next() >> 11) * 0x1.0p-53 * 2 - 1) * bound);
  }
  return a;
}

LoraAdapter LoraAdapter::load(const std::string& dir, const ModelConfig& mc) {
  const std::string cfg_path = dir + "/adapter_config.json", st_path = dir + "/adapter_model.safetensors";
  if (!is_regular_file(cfg_path)) fail_file(dir, "not a PEFT adapter folder (no adapter_config.json)");
  if (!is_regular_file(st_path))
    fail_file(dir, is_regular_file(dir + "/adapter_model.bin") ? "adapter_model.bin (pickle) is not read; save the adapter with safe_serialization"
                                                               : "no adapter_model.safetensors");
  LoraAdapter a;
  a.config_ = lora_config_from_json(read_text_file(cfg_path), cfg_path);
  a.weights_ = LoraSet<float>(mc, a.config_);
  MappedFile f(st_path);
  static const std::regex key(R"(base_model\.model\.model\.layers\.(\d+)\.([\w.]+)\.lora_([AB])\.weight)");
  std::set<std::string> seen;
  for (auto& t : parse_safetensors(f.data(), f.size(), st_path)) {
    std::smatch m;
    if (!std::regex_match(t.name, m, key)) fail_file(st_path, "tensor '" + t.name + "' is not a LoRA weight of a decoder layer");
    const int64_t layer = std::stoll(m[1].str());
    int tg = 0;
    while (tg < kLoraTargets && m[2].str() != kPeftPaths[tg]) tg++;
    if (tg == kLoraTargets) fail_file(st_path, "tensor '" + t.name + "': '" + m[2].str() + "' is not a module the engine adapts (" + supported_names() + ")");
    if (layer >= mc.num_hidden_layers) fail_file(st_path, "tensor '" + t.name + "': the model has " + std::to_string(mc.num_hidden_layers) + " layers");
    if (!lora_target_exists(mc, layer, LoraTarget(tg))) fail_file(st_path, "tensor '" + t.name + "': layer " + std::to_string(layer) + " of this model has no " + kPaths[tg]);
    LoraPair<float>* p = a.weights_.find(layer, LoraTarget(tg));
    if (!p) fail_file(st_path, "tensor '" + t.name + "': " + kPaths[tg] + " is not in target_modules");
    const bool is_b = m[3].str() == "B";
    // ggml order: ne = {cols, rows}
    const int64_t rows = a.config_.rank * p->experts;
    const std::vector<int64_t> want = is_b ? std::vector<int64_t>{rows, p->out} : std::vector<int64_t>{p->in, rows};
    if (t.ne != want)
      fail_file(st_path, "tensor '" + t.name + "' has shape [" + std::to_string(t.ne.size() > 1 ? t.ne[1] : 1) + ", " + std::to_string(t.ne[0]) +
                             "], expected [" + std::to_string(want[1]) + ", " + std::to_string(want[0]) + "] (r = " + std::to_string(a.config_.rank) +
                             (p->experts > 1 ? ", " + std::to_string(p->experts) + " experts" : "") + ")");
    std::vector<float>& dst = is_b ? p->B : p->A;
    dequantize_row(t.dtype, t.data, dst.data(), int64_t(dst.size()));
    for (float x : dst)
      if (!std::isfinite(x)) fail_file(st_path, "tensor '" + t.name + "' holds a NaN or infinity");
    seen.insert(t.name);
  }
  for (int64_t l = 0; l < mc.num_hidden_layers; l++)
    for (int i = 0; i < kLoraTargets; i++)
      if (a.weights_.find(l, LoraTarget(i)))
        for (bool b : {false, true})
          if (!seen.count(lora_peft_name(l, LoraTarget(i), b))) fail_file(st_path, "missing tensor '" + lora_peft_name(l, LoraTarget(i), b) + "'");
  return a;
}

namespace {

template <class F, class G>
SafetensorsEntry entry(const std::string& name, const std::vector<F>& v, std::vector<int64_t> shape) {
  SafetensorsEntry e;
  e.name = name;
  e.dtype = sizeof(G) == 8 ? "F64" : "F32";
  e.shape = std::move(shape);
  e.bytes.resize(v.size() * sizeof(G));
  for (size_t i = 0; i < v.size(); i++) {
    G g = G(v[i]);
    std::memcpy(e.bytes.data() + i * sizeof(G), &g, sizeof(G));
  }
  return e;
}

template <class F, class G>
std::vector<SafetensorsEntry> entries(const LoraSet<F>& s) {
  std::vector<SafetensorsEntry> out;
  for (int64_t l = 0; l < s.n_layers; l++)
    for (int i = 0; i < kLoraTargets; i++)
      if (const LoraPair<F>* p = s.find(l, LoraTarget(i))) {
        out.push_back(entry<F, G>(lora_peft_name(l, LoraTarget(i), false), p->A, {s.rank * p->experts, p->in}));
        out.push_back(entry<F, G>(lora_peft_name(l, LoraTarget(i), true), p->B, {p->out, s.rank * p->experts}));
      }
  return out;
}

}  // namespace

void LoraAdapter::save(const std::string& dir) const {
  if (!is_directory(dir)) fail_file(dir, "not a folder (create it first)");
  write_safetensors(dir + "/adapter_model.safetensors", entries<float, float>(weights_), {{"format", "pt"}});
  write_file_atomic(dir + "/adapter_config.json", lora_config_to_json(config_));
}

void save_lora_grads(const std::string& path, const LoraLossAndGrads& g, GradPrecision dtype) {
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"loss", number(g.loss)}, {"target_tokens", std::to_string(g.target_tokens)}};
  write_safetensors(path, dtype == GradPrecision::F64 ? entries<double, double>(g.grads) : entries<double, float>(g.grads), meta);
}

}  // namespace aha
