// AdamW, global-norm clipping and the learning-rate schedules, as torch.optim.AdamW,
// torch.nn.utils.clip_grad_norm_ and transformers' schedules compute them (checked against
// their numbers in native/tests/test_train_optim.cpp).
#include <cmath>
#include <cstring>
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

template <class Fn>
void each_tensor(LoraSet<float>& s, Fn fn) {  // fn(layer, target, is_b, tensor)
  for (int64_t l = 0; l < s.n_layers; l++)
    for (int i = 0; i < kLoraTargets; i++)
      if (LoraPair<float>* p = s.find(l, LoraTarget(i))) {
        fn(l, LoraTarget(i), false, p->A);
        fn(l, LoraTarget(i), true, p->B);
      }
}

LoraSet<float> zeros_like(const LoraSet<float>& s) {
  LoraSet<float> z = s;
  each_tensor(z, [](int64_t, LoraTarget, bool, std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); });
  return z;
}

std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

}  // namespace

AdamW::AdamW(const LoraSet<float>& params, const AdamWConfig& c) : c_(c), m_(zeros_like(params)), v_(zeros_like(params)) {
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1)) throw Error("AdamW betas must be in [0, 1)");
  if (!(c.eps > 0)) throw Error("AdamW eps must be positive");
  if (!(c.weight_decay >= 0)) throw Error("AdamW weight decay must be ≥ 0");
}

void AdamW::step(LoraSet<float>& params, const LoraSet<float>& grads, double lr) {
  t_++;
  const double bc1 = 1 - std::pow(c_.beta1, double(t_)), bc2_sqrt = std::sqrt(1 - std::pow(c_.beta2, double(t_)));
  const double step_size = lr / bc1, decay = 1 - lr * c_.weight_decay;
  for (size_t k = 0; k < params.mods.size(); k++) {
    LoraPair<float>& p = params.mods[k];
    if (p.A.empty()) continue;
    for (bool b : {false, true}) {
      std::vector<float>& x = b ? p.B : p.A;
      const std::vector<float>& g = b ? grads.mods[k].B : grads.mods[k].A;
      std::vector<float>& m = b ? m_.mods[k].B : m_.mods[k].A;
      std::vector<float>& v = b ? v_.mods[k].B : v_.mods[k].A;
      if (g.size() != x.size()) throw Error("AdamW: a gradient does not have its parameter's shape");
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
}

void AdamW::save(const std::string& dir) const {
  std::vector<SafetensorsEntry> entries;
  for (int64_t l = 0; l < m_.n_layers; l++)
    for (int i = 0; i < kLoraTargets; i++) {
      const LoraPair<float>* m = m_.find(l, LoraTarget(i));
      if (!m) continue;
      const LoraPair<float>* v = v_.find(l, LoraTarget(i));
      for (bool b : {false, true})
        for (auto [suffix, src] : {std::pair{".exp_avg", &(b ? m->B : m->A)}, std::pair{".exp_avg_sq", &(b ? v->B : v->A)}}) {
          SafetensorsEntry e;
          e.name = lora_peft_name(l, LoraTarget(i), b) + suffix;
          e.dtype = "F32";
          e.shape = b ? std::vector<int64_t>{m->out, m_.rank} : std::vector<int64_t>{m_.rank, m->in};
          e.bytes.resize(src->size() * 4);
          std::memcpy(e.bytes.data(), src->data(), e.bytes.size());
          entries.push_back(std::move(e));
        }
    }
  write_safetensors(dir + "/optimizer.safetensors", std::move(entries), {{"format", "pt"}});
  write_file_atomic(dir + "/optimizer.json", "{\n  \"optimizer\": \"adamw\",\n  \"step\": " + std::to_string(t_) + ",\n  \"beta1\": " +
                                                 number(c_.beta1) + ",\n  \"beta2\": " + number(c_.beta2) + ",\n  \"eps\": " + number(c_.eps) +
                                                 ",\n  \"weight_decay\": " + number(c_.weight_decay) + "\n}\n");
}

AdamW AdamW::load(const std::string& dir, const LoraSet<float>& params) {
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
  MappedFile f(spath);
  std::set<std::string> seen;
  for (auto& t : parse_safetensors(f.data(), f.size(), spath)) {
    bool found = false;
    for (int64_t l = 0; l < params.n_layers && !found; l++)
      for (int i = 0; i < kLoraTargets && !found; i++) {
        if (!params.find(l, LoraTarget(i))) continue;
        for (bool b : {false, true})
          for (bool sq : {false, true}) {
            if (t.name != lora_peft_name(l, LoraTarget(i), b) + (sq ? ".exp_avg_sq" : ".exp_avg")) continue;
            LoraPair<float>* p = (sq ? o.v_ : o.m_).find(l, LoraTarget(i));
            std::vector<float>& dst = b ? p->B : p->A;
            if (t.dtype != DType::F32 || t.bytes != dst.size() * 4) fail_file(spath, "tensor '" + t.name + "' does not fit the adapter (f32, " + std::to_string(dst.size()) + " values)");
            std::memcpy(dst.data(), t.data, t.bytes);
            found = true;
          }
      }
    if (!found) fail_file(spath, "tensor '" + t.name + "' is not a moment of the adapter's parameters");
    seen.insert(t.name);
  }
  const size_t want = [&] {
    size_t n = 0;
    for (auto& p : params.mods) n += p.A.empty() ? 0 : 4;
    return n;
  }();
  if (seen.size() != want) fail_file(spath, "holds " + std::to_string(seen.size()) + " moments, the adapter needs " + std::to_string(want));
  return o;
}

double clip_grad_norm(LoraSet<float>& grads, double max_norm) {
  double sq = 0;
  each_tensor(grads, [&](int64_t, LoraTarget, bool, std::vector<float>& v) {
    for (float x : v) sq += double(x) * double(x);
  });
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = std::min(1.0, max_norm / (norm + 1e-6));
    if (coef < 1)
      each_tensor(grads, [&](int64_t, LoraTarget, bool, std::vector<float>& v) {
        for (float& x : v) x = float(double(x) * coef);
      });
  }
  return norm;
}

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
