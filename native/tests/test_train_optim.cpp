// The optimizer and the training step: AdamW, clip_grad_norm and the learning-rate schedules
// against torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and transformers' schedules
// (tests/fixtures/golden/optim.json, made by tests/oracle/optim_golden.py); the optimizer state
// saved and loaded continues exactly; LoraTrainer: accumulation equals one big batch, a NaN stops
// the step and leaves everything as it was, a checkpoint resumes bit for bit.
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "aha/error.h"
#include "aha/model.h"
#include "aha/train.h"
#include "check.h"
#include "core/json.h"
#include "fixtures.h"

using namespace aha;

namespace {

Json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) check::fail(__FILE__, __LINE__, "missing golden " + path + " (make it with tests/oracle/optim_golden.py)");
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str(), path);
}

// The golden's four tensors as a LoraSet: q_proj (A [2, 3], B [4, 2]) and k_proj (A [2, 5], B [3, 2]).
LoraSet<float> golden_set() {
  LoraSet<float> s;
  s.n_layers = 1;
  s.rank = 2;
  s.mods.resize(kLoraTargets);
  s.mods[0] = {3, 4, std::vector<float>(6), std::vector<float>(8)};
  s.mods[1] = {5, 3, std::vector<float>(10), std::vector<float>(6)};
  return s;
}

std::vector<std::vector<float>*> tensors(LoraSet<float>& s) { return {&s.mods[0].A, &s.mods[0].B, &s.mods[1].A, &s.mods[1].B}; }

void fill(LoraSet<float>& s, const Json& lists) {
  auto ts = tensors(s);
  for (size_t i = 0; i < ts.size(); i++) {
    auto& a = lists.array()[i].array();
    CHECK(a.size() == ts[i]->size());
    for (size_t k = 0; k < a.size(); k++) (*ts[i])[k] = float(a[k].number());
  }
}

double max_err(LoraSet<float>& s, const Json& lists) {
  double e = 0;
  auto ts = tensors(s);
  for (size_t i = 0; i < ts.size(); i++) {
    auto& a = lists.array()[i].array();
    for (size_t k = 0; k < a.size(); k++) e = std::max(e, std::fabs(double((*ts[i])[k]) - a[k].number()) / (1e-3 + std::fabs(a[k].number())));
  }
  return e;
}

}  // namespace

TEST(train_adamw_clip_and_schedule_match_torch) {
  Json g = load_json(fixtures_dir() + "/golden/optim.json");
  const Json& a = *g.find("adamw");
  AdamWConfig c;
  c.beta1 = a.find("betas")->array()[0].number();
  c.beta2 = a.find("betas")->array()[1].number();
  c.eps = a.find("eps")->number();
  c.weight_decay = a.find("weight_decay")->number();
  LoraSet<float> params = golden_set();
  fill(params, *a.find("init"));
  AdamW opt(params, c);
  const int64_t warmup = a.find("warmup")->integer(), total = a.find("total")->integer();
  int64_t k = 0;
  double worst = 0;
  TempDir saved_dir("aha-optim");
  std::string saved;
  for (auto& st : a.find("steps")->array()) {
    LoraSet<float> grads = golden_set();
    fill(grads, *st.find("grads"));
    const double norm = clip_grad_norm(grads, a.find("max_norm")->number());
    CHECK_MSG(std::fabs(norm - st.find("norm")->number()) < 1e-6 * norm, "step " << k << ": norm " << norm);
    const double lr = lr_at(LrSchedule::Cosine, a.find("lr")->number(), k, warmup, total);
    CHECK_MSG(std::fabs(lr - st.find("lr")->number()) < 1e-12, "step " << k << ": lr " << lr << " vs " << st.find("lr")->number());
    opt.step(params, grads, lr);
    k++;
    CHECK(opt.steps() == k);
    LoraSet<float> m = opt.exp_avg(), v = opt.exp_avg_sq();
    const double e = std::max({max_err(params, *st.find("params")), max_err(m, *st.find("exp_avg")), max_err(v, *st.find("exp_avg_sq"))});
    worst = std::max(worst, e);
    CHECK_MSG(e < 1e-5, "step " << k << ": relative error against torch " << e);
    if (k == 3) {  // the state saved here continues below exactly as the live optimizer does
      saved = saved_dir.path();
      opt.save(saved);
    }
  }
  check::note("AdamW vs torch over " + std::to_string(k) + " steps: max relative error " + std::to_string(worst));
  // schedules
  const Json& s = *g.find("schedules");
  for (const char* name : {"constant", "linear", "cosine"}) {
    auto& want = s.find("multipliers")->find(name)->array();
    for (size_t i = 0; i < want.size(); i++)
      CHECK_MSG(std::fabs(lr_at(lr_schedule_from_name(name), 1.0, int64_t(i), s.find("warmup")->integer(), s.find("total")->integer()) - want[i].number()) < 1e-12,
                name << " at step " << i);
  }
  // the optimizer state through a file: the remaining steps give the same numbers bit for bit
  LoraSet<float> p1 = golden_set(), p2;
  fill(p1, *a.find("steps")->array()[2].find("params"));
  AdamW live(p1, c);
  {
    // rebuild the live optimizer's state at step 3 by replaying the golden's steps from init
    LoraSet<float> p = golden_set();
    fill(p, *a.find("init"));
    AdamW o(p, c);
    for (int64_t i = 0; i < 3; i++) {
      LoraSet<float> gr = golden_set();
      fill(gr, *a.find("steps")->array()[size_t(i)].find("grads"));
      clip_grad_norm(gr, 1.0);
      o.step(p, gr, lr_at(LrSchedule::Cosine, 0.05, i, warmup, total));
    }
    live = o;
    p1 = p;
  }
  AdamW loaded = AdamW<LoraSet<float>>::load(saved, p1);
  CHECK(loaded.steps() == 3 && loaded.config().weight_decay == c.weight_decay);
  p2 = p1;
  for (int64_t i = 3; i < total; i++) {
    LoraSet<float> gr = golden_set();
    fill(gr, *a.find("steps")->array()[size_t(i)].find("grads"));
    clip_grad_norm(gr, 1.0);
    const double lr = lr_at(LrSchedule::Cosine, 0.05, i, warmup, total);
    live.step(p1, gr, lr);
    loaded.step(p2, gr, lr);
  }
  for (size_t i = 0; i < 2; i++) CHECK(p1.mods[i].A == p2.mods[i].A && p1.mods[i].B == p2.mods[i].B);
  bool threw = false;
  try {
    lr_schedule_from_name("step");
  } catch (const Error& e) {
    threw = std::string(e.what()).find("unknown learning-rate schedule 'step'") != std::string::npos;
  }
  CHECK(threw);
}

namespace {

std::unique_ptr<Model> load_tiny(const std::string& name) {
  LoadOptions o;
  o.threads = 2;
  o.context = 64;
  return Model::load(tiny(name), o);
}

std::vector<TrainSequence> two_sequences() {
  TrainSequence a, b;
  a.input_ids = {9707, 11, 1879, 0, 374, 264, 1273};
  a.labels = {-100, -100, -100, 0, 374, 264, 1273};
  b.input_ids = {40, 1079, 16, 17, 18};
  b.labels = b.input_ids;
  return {a, b};
}

LoraTrainer::Options options() {
  LoraTrainer::Options o;
  o.adamw.weight_decay = 0.01;
  o.max_grad_norm = 1.0;
  return o;
}

LoraAdapter fresh(const ModelConfig& c) {
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  return LoraAdapter::init(c, lc, 11);
}

bool same_weights(const LoraAdapter& x, const LoraAdapter& y) {
  for (size_t i = 0; i < x.weights().mods.size(); i++)
    if (x.weights().mods[i].A != y.weights().mods[i].A || x.weights().mods[i].B != y.weights().mods[i].B) return false;
  return true;
}

}  // namespace

// Two micro-batches of one sequence each make the step one batch of both makes; the loss falls.
TEST(train_trainer_accumulation_equals_one_batch) {
  auto m = load_tiny("qwen2-tiny");
  auto seqs = two_sequences();
  LoraTrainer one(m->config(), fresh(m->config()), options()), acc(m->config(), fresh(m->config()), options());
  double first = 0, last = 0;
  for (int s = 0; s < 4; s++) {
    TrainStepResult a = one.step(*m, {seqs}, 1e-2);
    TrainStepResult b = acc.step(*m, {{seqs[0]}, {seqs[1]}}, 1e-2);
    CHECK(a.target_tokens == 8 && b.target_tokens == 8 && a.tokens == 12 && a.step == s + 1);
    CHECK_MSG(std::fabs(a.loss - b.loss) < 1e-5 * a.loss, "step " << s << ": loss " << a.loss << " vs " << b.loss << " accumulated");
    CHECK_MSG(std::fabs(a.grad_norm - b.grad_norm) < 1e-4 * a.grad_norm, "step " << s << ": grad norm " << a.grad_norm << " vs " << b.grad_norm);
    if (s == 0) first = a.loss;
    last = a.loss;
  }
  double diff = 0, norm = 0;
  for (size_t i = 0; i < one.adapter().weights().mods.size(); i++)
    for (bool isb : {false, true}) {
      auto& x = isb ? one.adapter().weights().mods[i].B : one.adapter().weights().mods[i].A;
      auto& y = isb ? acc.adapter().weights().mods[i].B : acc.adapter().weights().mods[i].A;
      for (size_t k = 0; k < x.size(); k++) diff = std::max(diff, double(std::fabs(x[k] - y[k]))), norm = std::max(norm, double(std::fabs(x[k])));
    }
  CHECK_MSG(diff < 1e-4 * norm, "weights after accumulation differ by " << diff);
  CHECK_MSG(last < first, "the loss did not fall: " << first << " → " << last);
}

// A checkpoint taken mid-run continues bit for bit; a blown-up learning rate ends in a clear
// error and leaves the adapter and the optimizer as the last good step left them.
TEST(train_trainer_checkpoint_resume_and_nan) {
  auto m = load_tiny("qwen3-tiny");
  auto seqs = two_sequences();
  LoraTrainer t(m->config(), fresh(m->config()), options());
  t.model_adapter = m->add_adapter(t.adapter(), "training");
  t.step(*m, {seqs}, 5e-3);
  t.step(*m, {seqs}, 5e-3);
  CHECK(m->adapters()[0].version == 2 && same_weights(m->adapter(t.model_adapter), t.adapter()));
  const TempDir tmp("aha-optim");
  const std::string& dir = tmp.path();
  t.save(dir);
  LoraTrainer r = LoraTrainer::load(dir, m->config(), options());
  CHECK(r.optimizer().steps() == 2 && same_weights(r.adapter(), t.adapter()));
  for (int s = 0; s < 3; s++) {
    TrainStepResult a = t.step(*m, {seqs}, 5e-3), b = r.step(*m, {seqs}, 5e-3);
    CHECK_MSG(a.loss == b.loss && a.grad_norm == b.grad_norm, "resumed step " << s << ": " << a.loss << " vs " << b.loss);
  }
  CHECK(same_weights(r.adapter(), t.adapter()));
  // blow up: a huge learning rate, until a step fails
  std::string msg;
  LoraAdapter good = t.adapter();
  int64_t good_steps = t.optimizer().steps();
  for (int s = 0; s < 6 && msg.empty(); s++) {
    try {
      good = t.adapter();
      good_steps = t.optimizer().steps();
      t.step(*m, {seqs}, 1e30);
    } catch (const Error& e) {
      msg = e.what();
    }
  }
  check::note("blow-up: " + msg);
  CHECK_MSG(msg.find("NaN") != std::string::npos || msg.find("infinite") != std::string::npos || msg.find("non-finite") != std::string::npos, msg);
  CHECK(msg.find("the adapter was not updated") != std::string::npos);
  CHECK(same_weights(good, t.adapter()) && t.optimizer().steps() == good_steps);
  CHECK(same_weights(m->adapter(t.model_adapter), t.adapter()));  // the model's copy followed only the good steps
}
