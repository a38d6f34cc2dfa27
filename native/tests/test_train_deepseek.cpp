// The deepseek family in train mode, on the tiny models of make-tiny-deepseek.ts: the train
// forward's loss against the inference forward's logits (both MLA forms), whole-model LoRA
// gradients on every MLA, dense-layer and shared-expert projection against finite differences of
// the loss in double (through MoE routing weights, softmax and sigmoid gates, group-limited
// selection, YaRN), float against double, inference with an adapter against the train forward,
// checkpointing, and the errors for targets the family does not have. Against transformers + PEFT
// autograd: test_train_golden.cpp.
#include <sys/stat.h>

#include <cmath>
#include <random>

#include "aha/error.h"
#include "aha/model.h"
#include "aha/train.h"
#include "check.h"
#include "fixtures.h"
#include "lora_fixtures.h"
#include "train/lora_model.h"

using namespace aha;

namespace {

std::unique_ptr<Model> load_ds(const std::string& name, MlaAttention mode = MlaAttention::Auto) {
  LoadOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  o.context = 64;
  o.mla_attention = mode;
  return Model::load(tiny_deepseek(name), o);
}

std::vector<TrainSequence> ds_batch() {
  TrainSequence a, b;
  a.input_ids = {9707, 11, 1879, 0, 374, 264, 1273, 88};
  a.labels = {-100, -100, -100, 0, 374, 264, 1273, 88};
  b.input_ids = {40, 1079, 16, 17, 18, 5000};
  b.labels = b.input_ids;
  return {a, b};
}

// Mean cross-entropy of the batch from the inference forward's logits (adapter `adapter`, 0: none).
double inference_loss(Model& m, const std::vector<TrainSequence>& seqs, int adapter) {
  const int64_t V = m.config().vocab_size;
  double sum = 0;
  int64_t n = 0;
  for (auto& s : seqs) {
    int id = m.new_sequence(adapter);
    std::vector<float> logits;
    m.forward({{id, s.input_ids, true}}, logits);
    m.free_sequence(id);
    for (size_t t = 0; t + 1 < s.labels.size(); t++) {
      if (s.labels[t + 1] == -100) continue;
      const float* row = logits.data() + int64_t(t) * V;
      double mx = -INFINITY, z = 0;
      for (int64_t v = 0; v < V; v++) mx = std::max(mx, double(row[v]));
      for (int64_t v = 0; v < V; v++) z += std::exp(double(row[v]) - mx);
      sum += mx + std::log(z) - row[s.labels[t + 1]];
      n++;
    }
  }
  return sum / double(n);
}

const char* const kDsModels[] = {"deepseek-v2-lite-tiny", "deepseek-v2-tiny", "deepseek-v3-tiny", "deepseek-v3-tiny-dense2"};

}  // namespace

TEST(train_deepseek_loss_matches_inference_logits) {
  for (const char* name : kDsModels)
    for (MlaAttention mode : {MlaAttention::Expanded, MlaAttention::Absorbed}) {
      auto m = load_ds(name, mode);
      const double want = inference_loss(*m, ds_batch(), 0);
      const train::PackedBatch b = train::pack_sequences(ds_batch(), m->config());
      const train::LoraModel lm = train::LoraModel::of(*m);
      const double lf = train::lora_loss<float>(lm, nullptr, 0, b, nullptr, m->thread_pool());
      const double ld = train::lora_loss<double>(lm, nullptr, 0, b, nullptr, m->thread_pool());
      CHECK_MSG(std::fabs(lf - want) < 1e-5 * want, name << ": train-mode f32 loss " << lf << ", from the inference logits " << want);
      CHECK_MSG(std::fabs(ld - want) < 1e-5 * want, name << ": train-mode f64 loss " << ld << ", from the inference logits " << want);
    }
}

// Every adaptable module of each tiny model (all-linear), one spread entry of A and of B (of
// every module on the two main shapes, of every third on the others: the double loss over the
// 129280-token vocabulary is the slow part) against central differences of the double loss; the
// float gradients against the double ones, all of them.
TEST(train_deepseek_lora_grads_match_finite_differences) {
  for (const char* name : kDsModels) {
    auto m = load_ds(name);
    const bool rslora = std::string(name) == "deepseek-v3-tiny";
    // every linear module, and on two of the four the routed experts too
    const bool experts = std::string(name) == "deepseek-v3-tiny" || std::string(name) == "deepseek-v2-tiny";
    LoraAdapter ad = random_b_adapter(m->config(), rslora,
                                      experts ? std::vector<std::string>{"all-linear", "experts.gate_up_proj", "experts.down_proj"}
                                              : std::vector<std::string>{"all-linear"});
    const LoraLossAndGrads g64 = lora_loss_and_grads(*m, ad, ds_batch(), GradPrecision::F64);
    const LoraLossAndGrads g32 = lora_loss_and_grads(*m, ad, ds_batch(), GradPrecision::F32);
    const train::PackedBatch b = train::pack_sequences(ds_batch(), m->config());
    const train::LoraModel lm = train::LoraModel::of(*m);
    LoraSet<double> w;
    w.n_layers = ad.weights().n_layers;
    w.rank = ad.weights().rank;
    for (auto& p : ad.weights().mods) w.mods.push_back({p.in, p.out, {p.A.begin(), p.A.end()}, {p.B.begin(), p.B.end()}, p.experts});
    std::vector<double> num, ana, all32, all64;
    const bool every = std::string(name) == "deepseek-v2-lite-tiny" || std::string(name) == "deepseek-v3-tiny";
    size_t k = 0, kinds = 0;
    for (size_t i = 0; i < w.mods.size(); i++) {
      if (w.mods[i].A.empty()) continue;
      const bool fd = every || kinds % 3 == 0;
      kinds++;
      for (bool isb : {false, true}) {
        auto& v = isb ? w.mods[i].B : w.mods[i].A;
        const auto& gv = isb ? g64.grads.mods[i].B : g64.grads.mods[i].A;
        const auto& gf = isb ? g32.grads.mods[i].B : g32.grads.mods[i].A;
        all64.insert(all64.end(), gv.begin(), gv.end());
        all32.insert(all32.end(), gf.begin(), gf.end());
        if (fd) {
          const size_t e = (k++ * 7919) % v.size();
          const double x0 = v[e], h = 1e-5;
          v[e] = x0 + h;
          const double lp = train::lora_loss<double>(lm, &w, ad.scale(), b, nullptr, m->thread_pool());
          v[e] = x0 - h;
          const double lmn = train::lora_loss<double>(lm, &w, ad.scale(), b, nullptr, m->thread_pool());
          v[e] = x0;
          num.push_back((lp - lmn) / (2 * h));
          ana.push_back(gv[e]);
        }
      }
    }
    // Layers: attention has q_proj (or q_a/q_b), kv_a, kv_b, o_proj; dense layers gate/up/down,
    // MoE layers the shared experts' three (when the model has shared experts).
    const DeepseekConfig& d = m->config().deepseek;
    size_t want = 0;
    for (int64_t l = 0; l < m->config().num_hidden_layers; l++)
      want += (d.q_lora_rank > 0 ? 5 : 4) + (d.is_moe_layer(l) ? (d.n_shared_experts > 0 ? 3 : 0) + (experts ? 2 : 0) : 3);
    CHECK_MSG(kinds == want, name << ": " << kinds << " adapted modules, expected " << want);
    const double e_fd = nerr(ana, num), e_32 = nerr(all32, all64);
    check::note(std::string(name) + ": loss " + std::to_string(g64.loss) + ", " + std::to_string(kinds) + " modules, FD error " + std::to_string(e_fd) +
                " over " + std::to_string(num.size()) + " entries, f32 vs f64 " + std::to_string(e_32));
    CHECK_MSG(e_fd < 1e-6, name << ": LoRA gradients vs finite differences, normalized error " << e_fd);
    CHECK_MSG(e_32 < 1e-4, name << ": f32 vs f64 gradients, normalized error " << e_32);
    CHECK_MSG(std::fabs(g32.loss - g64.loss) < 1e-5 * g64.loss, name << ": f32 loss " << g32.loss << " vs f64 " << g64.loss);
  }
}

// An adapter loaded into the engine changes generation's logits exactly as the train forward says:
// the inference loss with the adapter (absorbed decode falls back to expanded where kv_b_proj is
// adapted; expanded prefill) equals the train-mode loss with it, and differs from the base's.
TEST(train_deepseek_adapter_in_inference) {
  for (MlaAttention mode : {MlaAttention::Auto, MlaAttention::Absorbed, MlaAttention::Expanded})
    for (auto targets : {std::vector<std::string>{"all-linear", "experts.gate_up_proj", "experts.down_proj"},
                         std::vector<std::string>{"q_a_proj", "o_proj", "shared_experts.down_proj", "experts.down_proj"}}) {
      auto m = load_ds("deepseek-v3-tiny", mode);
      LoraAdapter ad = random_b_adapter(m->config(), false, targets);
      const int id = m->add_adapter(ad, "t");
      const double base = inference_loss(*m, ds_batch(), 0), with = inference_loss(*m, ds_batch(), id);
      const LoraLossAndGrads g = lora_loss_and_grads(*m, ad, ds_batch(), GradPrecision::F64);
      CHECK_MSG(std::fabs(with - g.loss) < 1e-5 * g.loss, "inference with the adapter " << with << ", train forward " << g.loss);
      CHECK_MSG(std::fabs(with - base) > 1e-4, "the adapter changes nothing: " << with << " vs " << base);
      // Decode one token at a time with the adapter: the same logits as the prefill.
      const std::vector<int32_t> toks = ds_batch()[1].input_ids;
      int s1 = m->new_sequence(id), s2 = m->new_sequence(id);
      std::vector<float> all, step, one;
      m->forward({{s1, toks, true}}, all);
      for (int32_t t : toks) {
        m->forward({{s2, {t}, false}}, one);
        step.insert(step.end(), one.begin(), one.end());
      }
      double err = 0, ref = 0;
      for (size_t i = 0; i < all.size(); i++) err = std::max(err, double(std::fabs(all[i] - step[i]))), ref = std::max(ref, double(std::fabs(all[i])));
      CHECK_MSG(err < 1e-4 * ref, "decode with the adapter vs prefill: max error " << err << " of " << ref);
    }
}

TEST(train_deepseek_checkpointing_and_targets) {
  auto m = load_ds("deepseek-v2-tiny");
  LoraAdapter ad = random_b_adapter(m->config(), false, std::vector<std::string>{"all-linear"});
  for (GradPrecision p : {GradPrecision::F32, GradPrecision::F64}) {
    const LoraLossAndGrads plain = lora_loss_and_grads(*m, ad, ds_batch(), p, false);
    const LoraLossAndGrads ckpt = lora_loss_and_grads(*m, ad, ds_batch(), p, true);
    CHECK(plain.loss == ckpt.loss);
    for (size_t i = 0; i < plain.grads.mods.size(); i++) CHECK(plain.grads.mods[i].A == ckpt.grads.mods[i].A && plain.grads.mods[i].B == ckpt.grads.mods[i].B);
  }
  // PEFT's suffix rule: gate_proj is the dense layers' and the shared experts'; the qualified
  // names pick one kind.
  LoraConfig lc;
  lc.target_modules = {"gate_proj"};
  LoraSet<float> both(m->config(), lc);
  lc.target_modules = {"shared_experts.gate_proj"};
  LoraSet<float> shared(m->config(), lc);
  lc.target_modules = {"mlp.gate_proj"};
  LoraSet<float> dense(m->config(), lc);
  CHECK(both.find(0, LoraTarget::GateProj) && both.find(1, LoraTarget::SharedGate));
  CHECK(!shared.find(0, LoraTarget::GateProj) && shared.find(1, LoraTarget::SharedGate));
  CHECK(dense.find(0, LoraTarget::GateProj) && !dense.find(1, LoraTarget::SharedGate));
  // Names the family does not have, or no model has: chosen for a new adapter, an error; in a
  // PEFT file that also names modules the model has, passed over as PEFT does.
  lc.target_modules = {"q_a_proj", "k_proj"};
  CHECK_THROWS(LoraAdapter::init(m->config(), lc, 1), "'k_proj' is not a module of this");
  CHECK(LoraSet<float>(m->config(), lc).find(1, LoraTarget::QAProj));
  lc.target_modules = {"k_proj"};
  CHECK_THROWS(LoraSet<float>(m->config(), lc), "none of the LoRA target modules is a module of this");
  lc.target_modules = {"experts.gate_proj"};
  CHECK_THROWS(LoraSet<float>(m->config(), lc), "unknown LoRA target module 'experts.gate_proj'");
  auto v2lite = load_ds("deepseek-v2-lite-tiny");
  lc.target_modules = {"q_a_proj"};
  CHECK_THROWS(LoraAdapter::init(v2lite->config(), lc, 1), "'q_a_proj' is not a module of this");
  // all-linear is written out as the modules it stands for (PEFT reads the keyword its own way).
  lc.target_modules = {"all-linear"};
  const std::vector<std::string> want = {"o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa",
                                         "kv_b_proj", "shared_experts.gate_proj", "shared_experts.up_proj", "shared_experts.down_proj"};
  CHECK(LoraAdapter::init(m->config(), lc, 1).config().target_modules == want);
}
