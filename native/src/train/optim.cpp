// AdamW, global-norm clipping and the learning-rate schedules, as torch.optim.AdamW,
// torch.nn.utils.clip_grad_norm_ and transformers' schedules compute them (checked against
// their numbers in native/tests/test_train_optim.cpp).
#include <cmath>
#include <cstring>
#include <map>
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

template <class Set>
Set zeros_like(const Set& s) {
  Set z = s;
  for (auto& t : tensor_refs(z)) std::fill(t.values->begin(), t.values->end(), 0.0f);
  return z;
}

std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

}  // namespace

template <class Set>
AdamW<Set>::AdamW(const Set& params, const AdamWConfig& c) : c_(c), m_(zeros_like(params)), v_(zeros_like(params)) {
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1)) throw Error("AdamW betas must be in [0, 1)");
  if (!(c.eps > 0)) throw Error("AdamW eps must be positive");
  if (!(c.weight_decay >= 0)) throw Error("AdamW weight decay must be ≥ 0");
}

template <class Set>
void AdamW<Set>::step(Set& params, const Set& grads, double lr) {
  auto P = tensor_refs(params);
  auto G = tensor_refs(grads);
  auto M = tensor_refs(m_);
  auto V = tensor_refs(v_);
  if (G.size() != P.size() || M.size() != P.size()) throw Error("AdamW: the gradients are not shaped like the parameters");
  t_++;
  const double bc1 = 1 - std::pow(c_.beta1, double(t_)), bc2_sqrt = std::sqrt(1 - std::pow(c_.beta2, double(t_)));
  const double step_size = lr / bc1;
  for (size_t k = 0; k < P.size(); k++) {
    std::vector<float>& x = *P[k].values;
    const std::vector<float>& g = *G[k].values;
    std::vector<float>& m = *M[k].values;
    std::vector<float>& v = *V[k].values;
    if (g.size() != x.size()) throw Error("AdamW: the gradient of '" + P[k].name + "' does not have its parameter's shape");
    const double decay = P[k].decay ? 1 - lr * c_.weight_decay : 1.0;
    for (size_t i = 0; i < x.size(); i++) {
      const double gi = g[i];
      const double mi = double(m[i]) + (1 - c_.beta1) * (gi - double(m[i]));  // torch: exp_avg.lerp_(grad, 1 − β1)
      const double vi = c_.beta2 * double(v[i]) + (1 - c_.beta2) * gi * gi;
      m[i] = float(mi);
      v[i] = float(vi);
      const double denom = std::sqrt(double(v[i])) / bc2_sqrt + c_.eps;
      x[i] = float(double(x[i]) * decay - step_size * double(m[i]) / denom);
    }
  }
}

template <class Set>
void AdamW<Set>::save(const std::string& dir) const {
  std::vector<SafetensorsEntry> entries;
  auto M = tensor_refs(m_);
  auto V = tensor_refs(v_);
  for (size_t k = 0; k < M.size(); k++)
    for (auto [suffix, src] : {std::pair{".exp_avg", M[k].values}, std::pair{".exp_avg_sq", V[k].values}}) {
      SafetensorsEntry e;
      e.name = M[k].name + suffix;
      e.dtype = "F32";
      e.shape = M[k].shape;
      e.bytes.resize(src->size() * 4);
      std::memcpy(e.bytes.data(), src->data(), e.bytes.size());
      entries.push_back(std::move(e));
    }
  write_safetensors(dir + "/optimizer.safetensors", std::move(entries), {{"format", "pt"}});
  write_file_atomic(dir + "/optimizer.json", "{\n  \"optimizer\": \"adamw\",\n  \"step\": " + std::to_string(t_) + ",\n  \"beta1\": " +
                                                 number(c_.beta1) + ",\n  \"beta2\": " + number(c_.beta2) + ",\n  \"eps\": " + number(c_.eps) +
                                                 ",\n  \"weight_decay\": " + number(c_.weight_decay) + "\n}\n");
}

template <class Set>
AdamW<Set> AdamW<Set>::load(const std::string& dir, const Set& params) {
  const std::string jpath = dir + "/optimizer.json", spath = dir + "/optimizer.safetensors";
  if (!is_regular_file(jpath)) fail_file(dir, "no optimizer.json (not a training checkpoint)");
  Json j = Json::parse(read_text_file(jpath), jpath);
  AdamWConfig c;
  c.beta1 = j.get_number("beta1", c.beta1);
  c.beta2 = j.get_number("beta2", c.beta2);
  c.eps = j.get_number("eps", c.eps);
  c.weight_decay = j.get_number("weight_decay", c.weight_decay);
  AdamW o(params, c);
  o.t_ = j.get_int("step", -1);
  if (o.t_ < 0) fail_file(jpath, "no step count");
  std::map<std::string, std::vector<float>*> moments;
  auto M = tensor_refs(o.m_);
  auto V = tensor_refs(o.v_);
  for (size_t k = 0; k < M.size(); k++) {
    moments[M[k].name + ".exp_avg"] = M[k].values;
    moments[V[k].name + ".exp_avg_sq"] = V[k].values;
  }
  MappedFile f(spath);
  std::set<std::string> seen;
  for (auto& t : parse_safetensors(f.data(), f.size(), spath)) {
    auto it = moments.find(t.name);
    if (it == moments.end()) fail_file(spath, "tensor '" + t.name + "' is not a moment of the parameters being trained");
    std::vector<float>& dst = *it->second;
    if (t.dtype != DType::F32 || t.bytes != dst.size() * 4)
      fail_file(spath, "tensor '" + t.name + "' does not fit the parameters (f32, " + std::to_string(dst.size()) + " values)");
    std::memcpy(dst.data(), t.data, t.bytes);
    seen.insert(t.name);
  }
  if (seen.size() != moments.size())
    fail_file(spath, "holds " + std::to_string(seen.size()) + " moments, the parameters need " + std::to_string(moments.size()));
  return o;
}

template <class Set>
double clip_grad_norm(Set& grads, double max_norm) {
  double sq = 0;
  for (auto& t : tensor_refs(grads))
    for (float x : *t.values) sq += double(x) * double(x);
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = std::min(1.0, max_norm / (norm + 1e-6));
    if (coef < 1)
      for (auto& t : tensor_refs(grads))
        for (float& x : *t.values) x = float(double(x) * coef);
  }
  return norm;
}

template class AdamW<LoraSet<float>>;
template class AdamW<DenseParams<float>>;
template double clip_grad_norm<LoraSet<float>>(LoraSet<float>&, double);
template double clip_grad_norm<DenseParams<float>>(DenseParams<float>&, double);

LrSchedule lr_schedule_from_name(const std::string& name) {
  if (name == "constant") return LrSchedule::Constant;
  if (name == "linear") return LrSchedule::Linear;
  if (name == "cosine") return LrSchedule::Cosine;
  throw Error("unknown learning-rate schedule '" + name + "' (constant, linear, cosine)");
}

double lr_at(LrSchedule kind, double lr, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return lr * double(step) / double(std::max<int64_t>(1, warmup));
  switch (kind) {
    case LrSchedule::Constant: return lr;
    case LrSchedule::Linear: return lr * std::max(0.0, double(total - step) / double(std::max<int64_t>(1, total - warmup)));
    case LrSchedule::Cosine: {
      const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
      return lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
    }
  }
  return lr;
}

}  // namespace aha
