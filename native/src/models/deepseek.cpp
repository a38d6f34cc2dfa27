// DeepSeek-V2/V3 forward: embed → N × (MLA block, dense FFN or MoE block) → norm → lm head.
// Every intermediate has a name ("blk.3.kv_cmpr", "blk.3.ffn_moe_weights") and goes to the dump
// hook when one is set. Behaviour comes from the config alone; tensor shapes are only checked.
//
// Where transformers (5.x) and DeepSeek's own code differ, this follows the modeling_deepseek.py
// shipped with the released checkpoints (what they were trained and evaluated with); for every
// released config the two agree, and each difference is named where it matters.
#include "models/deepseek.h"

#include <functional>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "aha/error.h"
#include "aha/kernels.h"
#include "backends/cpu/ops.h"
#include "train/ops.h"

namespace aha {

// ---------------------------------------------------------------- config

static int64_t int_or(const Json& j, const char* key, int64_t fallback) {
  const Json* v = j.find(key);
  return !v || v->is_null() ? fallback : v->integer();
}

// What every DeepSeek config must satisfy, however it was read (HF config.json or GGUF metadata).
static void check_deepseek(const ModelConfig& c, const std::function<void(const std::string&)>& bad) {
  const DeepseekConfig& d = c.deepseek;
  // Head dims: MLA's shapes must agree with each other.
  if (d.kv_lora_rank < 1 || d.kv_lora_rank > 65536) bad("kv_lora_rank = " + std::to_string(d.kv_lora_rank) + " is out of range");
  if (d.q_lora_rank < 0 || d.q_lora_rank > 65536) bad("q_lora_rank = " + std::to_string(d.q_lora_rank) + " is out of range");
  if (d.qk_nope_head_dim < 1 || d.qk_nope_head_dim > 1024) bad("qk_nope_head_dim = " + std::to_string(d.qk_nope_head_dim) + " is out of range");
  if (d.qk_rope_head_dim < 2 || d.qk_rope_head_dim > 1024 || d.qk_rope_head_dim % 2)
    bad("inconsistent head dims: qk_rope_head_dim = " + std::to_string(d.qk_rope_head_dim) + " must be even and at least 2");
  if (d.v_head_dim < 1 || d.v_head_dim > 1024) bad("v_head_dim = " + std::to_string(d.v_head_dim) + " is out of range");
  if (c.num_key_value_heads != c.num_attention_heads)
    bad("inconsistent head dims: MLA expands the latent into one K/V per query head, so num_key_value_heads (" +
        std::to_string(c.num_key_value_heads) + ") must equal num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");

  // MoE.
  if (d.n_routed_experts < 0 || d.n_routed_experts > 4096) bad("n_routed_experts = " + std::to_string(d.n_routed_experts) + " is out of range");
  if (d.first_k_dense_replace < 0 || d.first_k_dense_replace > c.num_hidden_layers)
    bad("first_k_dense_replace = " + std::to_string(d.first_k_dense_replace) + " is not in [0, num_hidden_layers = " + std::to_string(c.num_hidden_layers) + "]");
  if (d.moe_layer_freq < 1) bad("moe_layer_freq must be at least 1");
  if (d.n_routed_experts > 0) {
    if (d.num_experts_per_tok < 1) bad("num_experts_per_tok is missing or < 1");
    if (d.n_shared_experts < 0) bad("n_shared_experts must not be negative");
    if (d.moe_intermediate_size < 1) bad("moe_intermediate_size must be positive");
    if (d.n_group < 1) bad("n_group must be at least 1");
    if (d.topk_group < 1) bad("topk_group must be at least 1");
    if (d.n_routed_experts % d.n_group)
      bad("n_routed_experts = " + std::to_string(d.n_routed_experts) + " is not divisible by n_group = " + std::to_string(d.n_group));
    if (d.topk_group > d.n_group)
      bad("topk_group = " + std::to_string(d.topk_group) + " is larger than n_group = " + std::to_string(d.n_group));
    if (d.group_score == DeepseekConfig::GroupScore::TopTwoSum && d.n_group > 1 && d.n_routed_experts / d.n_group < 2)
      bad("noaux_tc ranks groups by their two best experts, but n_routed_experts / n_group = " + std::to_string(d.n_routed_experts / d.n_group));
    const int64_t reachable = d.group_score == DeepseekConfig::GroupScore::None ? d.n_routed_experts : d.topk_group * (d.n_routed_experts / d.n_group);
    if (d.num_experts_per_tok > reachable)
      bad("num_experts_per_tok = " + std::to_string(d.num_experts_per_tok) + " is more than the " + std::to_string(reachable) +
          " experts in the topk_group groups it may choose from");
    if (!(d.routed_scaling_factor > 0)) bad("routed_scaling_factor must be positive");
  }
}

ModelConfig deepseek_config_from_hf(const Json& j, const std::string& file) {
  ModelConfig c;
  DeepseekConfig& d = c.deepseek;
  std::string archs = j.find("architectures")->array()[0].string();
  const bool v3 = archs == "DeepseekV3ForCausalLM";
  c.arch = v3 ? Arch::DeepseekV3 : Arch::DeepseekV2;
  auto bad = [&](const std::string& what) { fail_file(file, archs + ": " + what); };
  try {
    // Absent keys take transformers' DeepseekV2Config / DeepseekV3Config defaults.
    c.vocab_size = j.get_int("vocab_size", v3 ? 129280 : 102400);
    c.hidden_size = j.get_int("hidden_size", v3 ? 7168 : 4096);
    c.intermediate_size = j.get_int("intermediate_size", v3 ? 18432 : 11008);
    c.num_hidden_layers = j.get_int("num_hidden_layers", v3 ? 61 : 32);
    c.num_attention_heads = j.get_int("num_attention_heads", v3 ? 128 : 32);
    c.num_key_value_heads = int_or(j, "num_key_value_heads", c.num_attention_heads);
    c.max_position_embeddings = j.get_int("max_position_embeddings", v3 ? 4096 : 2048);
    c.rms_norm_eps = j.get_number("rms_norm_eps", 1e-6);
    c.tie_word_embeddings = j.get_bool("tie_word_embeddings", false);
    c.bos_token_id = int_or(j, "bos_token_id", v3 ? 0 : 1);
    if (const Json* e = j.find("eos_token_id")) {
      if (e->is_array()) for (auto& x : e->array()) c.eos_token_ids.push_back(x.integer());
      else if (e->is_number()) c.eos_token_ids.push_back(e->integer());
    }
    // q_lora_rank: null means no query compression (V2-Lite); absent means transformers' default.
    d.q_lora_rank = j.find("q_lora_rank") ? int_or(j, "q_lora_rank", 0) : 1536;
    d.kv_lora_rank = j.get_int("kv_lora_rank", 512);
    d.qk_nope_head_dim = j.get_int("qk_nope_head_dim", 128);
    d.qk_rope_head_dim = j.get_int("qk_rope_head_dim", 64);
    d.v_head_dim = int_or(j, "v_head_dim", 128);
    d.n_routed_experts = int_or(j, "n_routed_experts", v3 ? 256 : 64);
    d.n_shared_experts = int_or(j, "n_shared_experts", v3 ? 1 : 2);
    d.num_experts_per_tok = int_or(j, "num_experts_per_tok", v3 ? 8 : 0);
    d.moe_intermediate_size = j.get_int("moe_intermediate_size", v3 ? 2048 : 1407);
    d.first_k_dense_replace = int_or(j, "first_k_dense_replace", v3 ? 3 : 0);
    // transformers ignores moe_layer_freq; DeepSeek's code makes layer l MoE when l % freq == 0
    // (1 in every released config).
    d.moe_layer_freq = int_or(j, "moe_layer_freq", 1);
    d.n_group = int_or(j, "n_group", v3 ? 8 : 1);
    d.topk_group = int_or(j, "topk_group", v3 ? 4 : 1);
    d.norm_topk_prob = j.get_bool("norm_topk_prob", v3);
    d.routed_scaling_factor = j.get_number("routed_scaling_factor", v3 ? 2.5 : 1.0);
    d.rope_interleave = v3 ? j.get_bool("rope_interleave", true) : true;
    d.num_nextn_predict_layers = int_or(j, "num_nextn_predict_layers", 0);

    // Routing. V2: softmax scores, "greedy" or "group_limited_greedy" (groups ranked by their best
    // expert). V3: sigmoid scores plus e_score_correction_bias for the choice, groups ranked by
    // their two best ("noaux_tc"). DeepSeek's code refuses every other combination, and so do we.
    std::string scoring = j.get_string("scoring_func", v3 ? "sigmoid" : "softmax");
    std::string method = j.get_string("topk_method", v3 ? "noaux_tc" : "greedy");
    if (!v3) {
      if (scoring != "softmax") bad("scoring_func '" + scoring + "' is not supported (DeepSeek-V2 routes with softmax)");
      d.scoring = DeepseekConfig::Scoring::Softmax;
      if (method == "greedy") d.group_score = DeepseekConfig::GroupScore::None;
      else if (method == "group_limited_greedy") d.group_score = DeepseekConfig::GroupScore::Max;
      else bad("topk_method '" + method + "' is not supported (greedy, group_limited_greedy)");
      // DeepSeek-V2's modeling_deepseek.py applies routed_scaling_factor only to weights it does
      // not normalize (transformers ignores norm_topk_prob for V2; no released V2 config sets it).
      if (d.norm_topk_prob) d.routed_scaling_factor = 1.0;
    } else {
      if (scoring != "sigmoid") bad("scoring_func '" + scoring + "' is not supported (DeepSeek-V3 routes with sigmoid)");
      if (method != "noaux_tc") bad("topk_method '" + method + "' is not supported (noaux_tc)");
      d.scoring = DeepseekConfig::Scoring::Sigmoid;
      d.group_score = DeepseekConfig::GroupScore::TopTwoSum;
      d.score_correction_bias = true;
    }

    // RoPE on the qk_rope_head_dim part: default or YaRN.
    const Json* rp = j.find("rope_parameters");
    if (!rp || !rp->is_object()) rp = j.find("rope_scaling");
    c.rope_theta = j.get_number("rope_theta", rp && rp->is_object() ? rp->get_number("rope_theta", 10000.0) : 10000.0);
    if (rp && rp->is_object()) {
      std::string type = rp->get_string("rope_type", rp->get_string("type", "default"));
      if (type == "yarn") {
        c.rope_scaling = RopeScalingType::Yarn;
        if (!rp->find("factor")) bad("rope_scaling of type yarn has no factor");
        c.rope_factor = rp->get_number("factor", 1.0);
        c.rope_original_max_position = int_or(*rp, "original_max_position_embeddings", j.get_int("original_max_position_embeddings", 4096));
        auto num_or = [&](const char* k, double fallback) {
          const Json* v = rp->find(k);
          return !v || v->is_null() ? fallback : v->number();
        };
        d.yarn_beta_fast = num_or("beta_fast", 32);
        d.yarn_beta_slow = num_or("beta_slow", 1);
        // DeepSeek's defaults (mscale 1, mscale_all_dim 0); transformers agrees unless a config
        // gives mscale without mscale_all_dim, which no released one does.
        d.yarn_mscale = num_or("mscale", 1);
        d.yarn_mscale_all_dim = num_or("mscale_all_dim", 0);
        if (rp->find("attention_factor")) bad("rope_scaling.attention_factor is not supported (DeepSeek derives it from mscale)");
      } else if (type != "default") {
        bad("unsupported rope scaling type '" + type + "' (default, yarn)");
      }
    }
    c.rope_neox = !d.rope_interleave;
    c.head_dim = d.qk_nope_head_dim + d.qk_rope_head_dim;
    c.attention_bias = j.get_bool("attention_bias", false);
    if (c.attention_bias) bad("attention_bias is not supported (no released DeepSeek model has it)");
    if (j.get_string("hidden_act", "silu") != "silu") bad("hidden_act '" + j.get_string("hidden_act", "") + "' is not supported (silu)");

    if (const Json* hd = j.find("head_dim"); hd && !hd->is_null() && hd->integer() != d.qk_rope_head_dim && hd->integer() != c.head_dim)
      bad("inconsistent head dims: head_dim = " + std::to_string(hd->integer()) + ", but qk_rope_head_dim = " + std::to_string(d.qk_rope_head_dim) +
          " and qk_nope_head_dim + qk_rope_head_dim = " + std::to_string(c.head_dim));
    if (const Json* qk = j.find("qk_head_dim"); qk && !qk->is_null() && qk->integer() != c.head_dim)
      bad("inconsistent head dims: qk_head_dim = " + std::to_string(qk->integer()) + ", but qk_nope_head_dim + qk_rope_head_dim = " +
          std::to_string(c.head_dim));
    check_deepseek(c, bad);
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind(file, 0) == 0) throw;
    fail_file(file, m);
  }
  check_config(c, file);
  return c;
}

// llama.cpp's deepseek2 metadata (convert_hf_to_gguf.py's DeepseekV2Model). It has no V2/V3 flag:
// the gating function tells them apart (sigmoid: V3's noaux_tc routing, with e_score_correction_bias
// as exp_probs_b when the file has it; softmax: V2's, group-limited when there are groups). Older
// files give the per-head dims as key_length / value_length; newer ones, which store MLA as MQA
// over the latent, as key_length_mla / value_length_mla (key_length is then kv_lora_rank +
// qk_rope). YaRN's mscale is stored only as yarn_log_multiplier = 0.1 · mscale_all_dim, and
// llama.cpp leaves the rope itself unscaled, which is transformers' behaviour when mscale ==
// mscale_all_dim (every released config): so both are taken from it.
ModelConfig deepseek_config_from_gguf(const GgufFile& g) {
  const std::string& file = g.path();
  ModelConfig c;
  DeepseekConfig& d = c.deepseek;
  auto key = [](const char* k) { return std::string("deepseek2.") + k; };
  auto bad = [&](const std::string& what) { fail_file(file, "deepseek2: " + what); };
  auto need = [&](const char* k) {
    if (!g.find(key(k))) bad("missing metadata '" + key(k) + "'");
    return g.get_int(key(k), 0);
  };
  c.hidden_size = need("embedding_length");
  c.intermediate_size = need("feed_forward_length");
  c.num_hidden_layers = need("block_count");
  c.num_attention_heads = need("attention.head_count");
  c.num_key_value_heads = c.num_attention_heads;  // MLA: one K/V per query head, whatever head_count_kv says
  c.max_position_embeddings = g.get_int(key("context_length"), 4096);
  c.rms_norm_eps = g.get_float(key("attention.layer_norm_rms_epsilon"), 1e-6);
  c.rope_theta = g.get_float(key("rope.freq_base"), 10000.0);
  d.q_lora_rank = g.get_int(key("attention.q_lora_rank"), 0);
  d.kv_lora_rank = need("attention.kv_lora_rank");
  d.qk_rope_head_dim = need("rope.dimension_count");
  if (g.find(key("attention.key_length_mla"))) {
    d.qk_nope_head_dim = need("attention.key_length_mla") - d.qk_rope_head_dim;
    d.v_head_dim = need("attention.value_length_mla");
  } else {
    d.qk_nope_head_dim = need("attention.key_length") - d.qk_rope_head_dim;
    d.v_head_dim = need("attention.value_length");
  }
  d.n_routed_experts = g.get_int(key("expert_count"), 0);
  d.n_shared_experts = g.get_int(key("expert_shared_count"), 0);
  d.num_experts_per_tok = g.get_int(key("expert_used_count"), 0);
  d.moe_intermediate_size = g.get_int(key("expert_feed_forward_length"), 0);
  d.first_k_dense_replace = g.get_int(key("leading_dense_block_count"), 0);
  d.n_group = std::max<int64_t>(1, g.get_int(key("expert_group_count"), 1));
  d.topk_group = std::max<int64_t>(1, g.get_int(key("expert_group_used_count"), d.n_group));
  d.norm_topk_prob = g.get_bool(key("expert_weights_norm"), false);
  d.routed_scaling_factor = g.get_float(key("expert_weights_scale"), 1.0);
  const int64_t gating = g.get_int(key("expert_gating_func"), 1);  // llama.cpp: 1 softmax, 2 sigmoid
  if (gating == 2) {
    c.arch = Arch::DeepseekV3;
    d.scoring = DeepseekConfig::Scoring::Sigmoid;
    d.group_score = DeepseekConfig::GroupScore::TopTwoSum;
    for (auto& t : g.tensors())
      if (t.name.ends_with(".exp_probs_b.bias")) d.score_correction_bias = true;
  } else if (gating == 1) {
    c.arch = Arch::DeepseekV2;
    d.scoring = DeepseekConfig::Scoring::Softmax;
    d.group_score = d.n_group > 1 ? DeepseekConfig::GroupScore::Max : DeepseekConfig::GroupScore::None;
    if (d.norm_topk_prob) d.routed_scaling_factor = 1.0;  // as deepseek_config_from_hf: V2 scales only unnormalized weights
  } else {
    bad("expert_gating_func = " + std::to_string(gating) + " is not supported (1 softmax, 2 sigmoid)");
  }
  d.rope_interleave = true;  // llama.cpp runs deepseek2 with ggml's NORM rope: DeepSeek's pairs
  c.rope_neox = false;
  c.head_dim = d.qk_nope_head_dim + d.qk_rope_head_dim;
  const std::string st = g.get_string(key("rope.scaling.type"), "none");
  if (st == "yarn") {
    c.rope_scaling = RopeScalingType::Yarn;
    c.rope_factor = g.get_float(key("rope.scaling.factor"), 1.0);
    c.rope_original_max_position = g.get_int(key("rope.scaling.original_context_length"), 4096);
    d.yarn_beta_fast = g.get_float(key("rope.scaling.yarn_beta_fast"), 32);
    d.yarn_beta_slow = g.get_float(key("rope.scaling.yarn_beta_slow"), 1);
    d.yarn_mscale_all_dim = g.get_float(key("rope.scaling.yarn_log_multiplier"), 0) / 0.1;
    d.yarn_mscale = d.yarn_mscale_all_dim;
  } else if (st != "none") {
    bad("unsupported rope scaling type '" + st + "' (none, yarn)");
  }
  d.num_nextn_predict_layers = g.get_int(key("nextn_predict_layers"), 0);
  check_deepseek(c, bad);
  return c;
}

// ---------------------------------------------------------------- the gate

MoeGate MoeGate::from_config(const DeepseekConfig& c, int64_t top_k, const float* bias) {
  MoeGate g;
  g.scoring = c.scoring;
  g.group_score = c.group_score;
  g.n_experts = c.n_routed_experts;
  g.n_group = c.n_group;
  g.topk_group = c.topk_group;
  g.top_k = top_k;
  g.norm_topk_prob = c.norm_topk_prob;
  g.routed_scaling_factor = c.routed_scaling_factor;
  g.bias = c.score_correction_bias ? bias : nullptr;
  return g;
}

void MoeGate::route(const float* logits, int64_t T, float* weights, int32_t* indices) const {
  const int64_t E = n_experts, per_group = E / n_group;
  std::vector<float> score(static_cast<size_t>(E)), choice(static_cast<size_t>(E)), gscore(static_cast<size_t>(n_group));
  std::vector<int32_t> order(size_t(std::max(E, n_group)));
  for (int64_t t = 0; t < T; t++) {
    const float* lg = logits + t * E;
    // Scores in float32, as transformers and DeepSeek compute them.
    if (scoring == DeepseekConfig::Scoring::Softmax) {
      float mx = *std::max_element(lg, lg + E);
      double sum = 0;
      for (int64_t e = 0; e < E; e++) sum += (score[size_t(e)] = std::exp(lg[e] - mx));
      for (int64_t e = 0; e < E; e++) score[size_t(e)] = float(score[size_t(e)] / sum);
    } else {
      for (int64_t e = 0; e < E; e++) score[size_t(e)] = 1.0f / (1.0f + std::exp(-lg[e]));
    }
    for (int64_t e = 0; e < E; e++) choice[size_t(e)] = score[size_t(e)] + (bias ? bias[e] : 0.0f);
    // Group-limited: keep the topk_group best groups, rank the experts of the others below all.
    if (group_score != DeepseekConfig::GroupScore::None && n_group > 1) {
      for (int64_t g = 0; g < n_group; g++) {
        const float* s = choice.data() + g * per_group;
        float best = -INFINITY, second = -INFINITY;
        for (int64_t i = 0; i < per_group; i++) {
          if (s[i] > best) second = best, best = s[i];
          else if (s[i] > second) second = s[i];
        }
        gscore[size_t(g)] = group_score == DeepseekConfig::GroupScore::Max ? best : best + second;
      }
      std::iota(order.begin(), order.begin() + n_group, 0);
      std::stable_sort(order.begin(), order.begin() + n_group, [&](int32_t a, int32_t b) { return gscore[size_t(a)] > gscore[size_t(b)]; });
      for (int64_t r = topk_group; r < n_group; r++)
        for (int64_t i = 0; i < per_group; i++) choice[size_t(order[size_t(r)] * per_group + i)] = -INFINITY;
    }
    std::iota(order.begin(), order.begin() + E, 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.begin() + E, [&](int32_t a, int32_t b) {
      return choice[size_t(a)] > choice[size_t(b)] || (choice[size_t(a)] == choice[size_t(b)] && a < b);
    });
    // Weights are the unbiased scores of the chosen experts.
    float* w = weights + t * top_k;
    int32_t* idx = indices + t * top_k;
    double sum = 0;
    for (int64_t k = 0; k < top_k; k++) {
      idx[k] = order[size_t(k)];
      w[k] = score[size_t(idx[k])];
      sum += w[k];
    }
    // DeepSeek-V3's code normalizes only when top_k > 1; transformers always does (the same
    // weights for every released config, whose top_k is 6 or 8).
    const float denom = norm_topk_prob && top_k > 1 ? float(sum + 1e-20) : 1.0f;
    for (int64_t k = 0; k < top_k; k++) w[k] = float(double(w[k] / denom) * routed_scaling_factor);
  }
}

// ---------------------------------------------------------------- rope

// YaRN as DeepSeek's DeepseekV3YarnRotaryEmbedding (and transformers' yarn) computes it, in float32.
// DeepSeek-V3's inference/model.py differs in two ways we do not follow: it applies YaRN only when
// run past original_max_position_embeddings, and it leaves out the mscale / mscale_all_dim factor
// on cos and sin (1 for the released V3 configs, whose mscale equals mscale_all_dim).
static std::vector<float> yarn_inv_freq(const ModelConfig& c) {
  const DeepseekConfig& d = c.deepseek;
  const int64_t dim = d.qk_rope_head_dim, half = dim / 2;
  const float base = float(c.rope_theta);
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) inv[size_t(i)] = 1.0f / std::pow(base, float(2 * i) / float(dim));
  if (c.rope_scaling != RopeScalingType::Yarn) return inv;
  const double orig = double(c.rope_original_max_position);
  auto correction_dim = [&](double rotations) { return double(dim) * std::log(orig / (rotations * 2 * M_PI)) / (2 * std::log(double(c.rope_theta))); };
  double low = std::max(std::floor(correction_dim(d.yarn_beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(d.yarn_beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  const float factor = float(c.rope_factor);
  for (int64_t i = 0; i < half; i++) {
    float pos_freq = std::pow(base, float(2 * i) / float(dim));
    float extra = 1.0f / pos_freq, inter = 1.0f / (factor * pos_freq);
    float ramp = std::clamp((float(i) - float(low)) / (float(high) - float(low)), 0.0f, 1.0f);
    float extra_factor = 1.0f - ramp;
    inv[size_t(i)] = inter * (1.0f - extra_factor) + extra * extra_factor;
  }
  return inv;
}

static double yarn_get_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// ---------------------------------------------------------------- binding

DeepseekModel::DeepseekModel(WeightStore& ws, int experts_per_token) : c_(ws.config) {
  const DeepseekConfig& d = c_.deepseek;
  const int64_t H = c_.hidden_size, V = c_.vocab_size, nh = c_.num_attention_heads;
  const int64_t qk = d.qk_nope_head_dim + d.qk_rope_head_dim, nope = d.qk_nope_head_dim, r = d.kv_lora_rank;
  const int64_t top_k = experts_per_token > 0 ? experts_per_token : d.num_experts_per_tok;
  top_k_ = top_k;
  if (d.n_routed_experts > 0) {
    const int64_t reachable = d.group_score == DeepseekConfig::GroupScore::None ? d.n_routed_experts : d.topk_group * (d.n_routed_experts / d.n_group);
    if (top_k > reachable)
      throw Error("experts per token = " + std::to_string(top_k) + " is more than the " + std::to_string(reachable) + " experts the gate may choose from");
  }
  tok_embd_ = &ws.get("token_embd.weight", {H, V});
  output_norm_ = &ws.get_f32("output_norm.weight", {H});
  output_ = ws.find("output.weight") ? &ws.get("output.weight", {H, V}) : tok_embd_;
  std::vector<const Tensor*> mats = {output_};
  // DeepSeek-V3's MTP module, when the checkpoint carries it: layer num_hidden_layers, bound like
  // any layer (never run by the main forward), plus its own norms, projection and head.
  const int64_t N = c_.num_hidden_layers;
  const std::string mtp_prefix = "blk." + std::to_string(N) + ".nextn.";
  const bool mtp = d.num_nextn_predict_layers > 0 && ws.find(mtp_prefix + "eh_proj.weight");
  for (int64_t l = 0; l < N + (mtp ? 1 : 0); l++) {
    auto n = [&](const std::string& s) { return "blk." + std::to_string(l) + "." + s; };
    DeepseekLayer L;
    L.attn_norm = &ws.get_f32(n("attn_norm.weight"), {H});
    if (d.q_lora_rank > 0) {
      L.wq_a = &ws.get(n("attn_q_a.weight"), {H, d.q_lora_rank});
      L.q_a_norm = &ws.get_f32(n("attn_q_a_norm.weight"), {d.q_lora_rank});
      L.wq_b = &ws.get(n("attn_q_b.weight"), {d.q_lora_rank, nh * qk});
      mats.insert(mats.end(), {L.wq_a, L.wq_b});
    } else {
      L.wq = &ws.get(n("attn_q.weight"), {H, nh * qk});
      mats.push_back(L.wq);
    }
    L.wkv_a = &ws.get(n("attn_kv_a_mqa.weight"), {H, r + d.qk_rope_head_dim});
    L.kv_a_norm = &ws.get_f32(n("attn_kv_a_norm.weight"), {r});
    L.wo = &ws.get(n("attn_output.weight"), {nh * d.v_head_dim, H});
    mats.insert(mats.end(), {L.wkv_a, L.wo});
    if (!ws.find(n("attn_kv_b.weight")) && ws.find(n("attn_k_b.weight"))) {
      // Newer llama.cpp files store only the absorbed form's factors: attn_k_b {nope, r, heads}
      // (W_UK transposed per head) and attn_v_b {r, v, heads}. Per-head views; no expanded path.
      const Tensor& kb = ws.get(n("attn_k_b.weight"), {nope, r, nh});
      const Tensor& vb = ws.get(n("attn_v_b.weight"), {r, d.v_head_dim, nh});
      for (int64_t h = 0; h < nh; h++) {
        Tensor k = kb, v = vb;
        k.name += "[" + std::to_string(h) + "]";
        k.ne = {nope, r};
        k.data = static_cast<const uint8_t*>(kb.data) + size_t(h * r) * kb.row_bytes;
        v.name += "[" + std::to_string(h) + "]";
        v.ne = {r, d.v_head_dim};
        v.data = static_cast<const uint8_t*>(vb.data) + size_t(h * d.v_head_dim) * vb.row_bytes;
        L.wk_b.push_back(k);
        L.wv_b.push_back(v);
      }
      mats.insert(mats.end(), {&kb, &vb});
      L.wkv_b = nullptr;
      expanded_ok_ = false;
    } else {
      L.wkv_b = &ws.get(n("attn_kv_b.weight"), {r, nh * (nope + d.v_head_dim)});
      mats.push_back(L.wkv_b);
      // The absorbed form's per-head factors of kv_b_proj: W_UK_h (rows h*(nope+v) .. +nope)
      // transposed into a copy, W_UV_h (the next v rows) used in place. The copy keeps the
      // weight's own dtype when that is f32/f16/bf16 (moving elements is exact); a GGUF block
      // quant's dequantized values go to bf16 (rounding them costs far less than the quantization
      // already did, and decode reads half the bytes of f32: an f32 copy of a q4_K kv_b is 7x the
      // matrix); FP8's to f32.
      const DType kv_b_dt = L.wkv_b->dtype;
      const bool raw16 = kv_b_dt == DType::F16 || kv_b_dt == DType::BF16;
      const bool block_quant = !raw16 && kv_b_dt != DType::F32 && kv_b_dt != DType::FP8_B128 && kv_b_dt != DType::F8_E4M3;
      const DType kb_dt = raw16 || kv_b_dt == DType::F32 ? kv_b_dt : block_quant ? DType::BF16 : DType::F32;
      const size_t el = kb_dt == DType::F32 ? 4 : 2;
      std::vector<float> row(static_cast<size_t>(r));
      for (int64_t h = 0; h < nh; h++) {
        std::vector<uint8_t> t(size_t(nope * r) * el);  // [kv_lora_rank][qk_nope_head_dim]
        for (int64_t i = 0; i < nope; i++) {
          const uint8_t* src = static_cast<const uint8_t*>(L.wkv_b->data) + size_t(h * (nope + d.v_head_dim) + i) * L.wkv_b->row_bytes;
          if (raw16) {
            for (int64_t j = 0; j < r; j++) std::memcpy(t.data() + size_t(j * nope + i) * 2, src + size_t(j) * 2, 2);
          } else {
            dequantize_row(kv_b_dt, src, row.data(), r);
            for (int64_t j = 0; j < r; j++) {
              if (el == 4) {
                std::memcpy(t.data() + size_t(j * nope + i) * 4, &row[size_t(j)], 4);
              } else {
                const uint16_t b = f32_to_bf16(row[size_t(j)]);
                std::memcpy(t.data() + size_t(j * nope + i) * 2, &b, 2);
              }
            }
          }
        }
        Tensor kb;
        kb.name = n("attn_k_b.weight") + "[" + std::to_string(h) + "]";
        kb.dtype = kb_dt;
        kb.ne = {nope, r};
        kb.data = t.data();
        kb.row_bytes = size_t(nope) * el;
        owned_.push_back(std::move(t));  // the vector's buffer stays where it is
        L.wk_b.push_back(kb);
        Tensor vb;
        vb.name = n("attn_v_b.weight") + "[" + std::to_string(h) + "]";
        vb.dtype = L.wkv_b->dtype;
        vb.ne = {r, d.v_head_dim};
        vb.row_bytes = L.wkv_b->row_bytes;
        vb.data = static_cast<const uint8_t*>(L.wkv_b->data) + size_t(h * (nope + d.v_head_dim) + nope) * L.wkv_b->row_bytes;
        L.wv_b.push_back(vb);
      }
    }
    L.ffn_norm = &ws.get_f32(n("ffn_norm.weight"), {H});
    if (!d.is_moe_layer(l)) {
      L.w_gate = &ws.get(n("ffn_gate.weight"), {H, c_.intermediate_size});
      L.w_up = &ws.get(n("ffn_up.weight"), {H, c_.intermediate_size});
      L.w_down = &ws.get(n("ffn_down.weight"), {c_.intermediate_size, H});
      mats.insert(mats.end(), {L.w_gate, L.w_up, L.w_down});
    } else {
      const int64_t E = d.n_routed_experts, F = d.moe_intermediate_size;
      // The router in f32, as both references compute it (its weights are tiny next to the experts').
      L.gate_inp = &ws.get_f32(n("ffn_gate_inp.weight"), {H, E});
      if (d.score_correction_bias) L.exp_probs_b = &ws.get_f32(n("exp_probs_b.bias"), {E});
      for (int64_t e = 0; e < E; e++) {
        const std::string s = std::to_string(e);
        L.exp_gate.push_back(&ws.get(n("ffn_gate_exps." + s + ".weight"), {H, F}));
        L.exp_up.push_back(&ws.get(n("ffn_up_exps." + s + ".weight"), {H, F}));
        L.exp_down.push_back(&ws.get(n("ffn_down_exps." + s + ".weight"), {F, H}));
        mats.insert(mats.end(), {L.exp_gate.back(), L.exp_up.back(), L.exp_down.back()});
      }
      if (d.n_shared_experts > 0) {
        const int64_t S = F * d.n_shared_experts;
        L.sh_gate = &ws.get(n("ffn_gate_shexp.weight"), {H, S});
        L.sh_up = &ws.get(n("ffn_up_shexp.weight"), {H, S});
        L.sh_down = &ws.get(n("ffn_down_shexp.weight"), {S, H});
        mats.insert(mats.end(), {L.sh_gate, L.sh_up, L.sh_down});
      }
      L.gate = MoeGate::from_config(d, top_k, L.exp_probs_b ? static_cast<const float*>(L.exp_probs_b->data) : nullptr);
    }
    layers_.push_back(std::move(L));
  }
  if (mtp) {
    mtp_.enorm = &ws.get_f32(mtp_prefix + "enorm.weight", {H});
    mtp_.hnorm = &ws.get_f32(mtp_prefix + "hnorm.weight", {H});
    mtp_.eh_proj = &ws.get(mtp_prefix + "eh_proj.weight", {2 * H, H});
    mtp_.head_norm = &ws.get_f32(mtp_prefix + "shared_head_norm.weight", {H});
    mtp_.head = ws.find(mtp_prefix + "shared_head_head.weight") ? &ws.get(mtp_prefix + "shared_head_head.weight", {H, V}) : output_;
    mtp_.embed = ws.find(mtp_prefix + "embed_tokens.weight") ? &ws.get(mtp_prefix + "embed_tokens.weight", {H, V}) : tok_embd_;
    mats.insert(mats.end(), {mtp_.eh_proj, mtp_.head});
  }
  for (const Tensor* t : mats)
    if (!weight_kernel(t->dtype)) fail_file(ws.path, "tensor '" + t->name + "': dtype " + dtype_name(t->dtype) + " has no matmul kernel");
  inv_freq_ = yarn_inv_freq(c_);
  double scale = 1.0 / std::sqrt(double(d.qk_nope_head_dim + d.qk_rope_head_dim));
  if (c_.rope_scaling == RopeScalingType::Yarn) {
    rope_mscale_ = float(yarn_get_mscale(c_.rope_factor, d.yarn_mscale) / yarn_get_mscale(c_.rope_factor, d.yarn_mscale_all_dim));
    if (d.yarn_mscale_all_dim != 0) {
      const double m = yarn_get_mscale(c_.rope_factor, d.yarn_mscale_all_dim);
      scale *= m * m;
    }
  }
  softmax_scale_ = float(scale);
}

// ---------------------------------------------------------------- forward

static void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

static void emit(const DumpHook* dump, const std::string& name, const float* d, int64_t rows, int64_t cols) {
  if (dump && *dump) (*dump)(name, d, rows, cols);
}


void DeepseekModel::forward(const ForwardBatch& b, MlaCache& cache, ThreadPool& pool, DeepseekWorkspace& w, float* logits, MlaAttention mode,
                            const DumpHook* dump) const {
  const int64_t T = int64_t(b.tokens.size()), H = c_.hidden_size, V = c_.vocab_size;
  if (mode == MlaAttention::Expanded && !expanded_ok_)
    throw Error("the expanded MLA form needs attn_kv_b, and this model stores only attn_k_b / attn_v_b (the absorbed form's factors): use the absorbed or auto form");
  grow(w.x, size_t(T * H));
  grow(w.xn, size_t(T * H));
  for (int64_t t = 0; t < T; t++) {
    int32_t id = b.tokens[size_t(t)];
    if (id < 0 || id >= V) throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
  }
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      dequantize_row(tok_embd_->dtype, static_cast<const uint8_t*>(tok_embd_->data) + size_t(b.tokens[size_t(t)]) * tok_embd_->row_bytes,
                     w.x.data() + t * H, H);
  });
  emit(dump, "inp_embd", w.x.data(), T, H);
  for (int64_t l = 0; l < c_.num_hidden_layers; l++) {
    attention_block(l, b, cache, pool, w, mode, dump);
    if (c_.deepseek.is_moe_layer(l)) moe_block(l, b, pool, w, dump);
    else dense_ffn_block(l, b, pool, w, dump);
    emit(dump, "blk." + std::to_string(l) + ".out", w.x.data(), T, H);
  }
  const int64_t R = int64_t(b.logit_rows.size());
  const CpuOps& ops = cpu_ops();
  if (b.hidden) {  // every token's final normed hidden state (what the MTP module reads)
    b.hidden->resize(size_t(T * H));
    for (int64_t t = 0; t < T; t++)
      ops.rmsnorm(b.hidden->data() + t * H, w.x.data() + t * H, static_cast<const float*>(output_norm_->data), H, float(c_.rms_norm_eps));
  }
  for (int64_t i = 0; i < R; i++)
    ops.rmsnorm(w.xn.data() + i * H, w.x.data() + b.logit_rows[size_t(i)] * H, static_cast<const float*>(output_norm_->data), H,
                float(c_.rms_norm_eps));
  emit(dump, "result_norm", w.xn.data(), R, H);
  matmul(*output_, w.xn.data(), R, logits, pool, w.mm);
  emit(dump, "result_output", logits, R, V);
}

void DeepseekModel::mtp_forward(const ForwardBatch& b, const float* h_prev, MlaCache& cache, ThreadPool& pool, DeepseekWorkspace& w, float* logits) const {
  if (!has_mtp()) throw Error("this model has no MTP module (num_nextn_predict_layers is 0, or the checkpoint lacks its weights)");
  const int64_t T = int64_t(b.tokens.size()), H = c_.hidden_size, V = c_.vocab_size, N = c_.num_hidden_layers;
  const CpuOps& ops = cpu_ops();
  grow(w.x, size_t(T * H));
  grow(w.xn, size_t(T * H));
  // x = eh_proj([enorm(embedding of the token), hnorm(the main model's hidden of the token before)])
  std::vector<float> cat(size_t(T * 2 * H));
  for (int64_t t = 0; t < T; t++) {
    const int32_t id = b.tokens[size_t(t)];
    if (id < 0 || id >= V) throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    float* row = cat.data() + t * 2 * H;
    dequantize_row(mtp_.embed->dtype, static_cast<const uint8_t*>(mtp_.embed->data) + size_t(id) * mtp_.embed->row_bytes, row, H);
    ops.rmsnorm(row, row, static_cast<const float*>(mtp_.enorm->data), H, float(c_.rms_norm_eps));
    ops.rmsnorm(row + H, h_prev + t * H, static_cast<const float*>(mtp_.hnorm->data), H, float(c_.rms_norm_eps));
  }
  matmul(*mtp_.eh_proj, cat.data(), T, w.x.data(), pool, w.mm);
  attention_block(N, b, cache, pool, w, MlaAttention::Auto, nullptr);
  if (c_.deepseek.is_moe_layer(N)) moe_block(N, b, pool, w, nullptr);
  else dense_ffn_block(N, b, pool, w, nullptr);
  const int64_t R = int64_t(b.logit_rows.size());
  for (int64_t i = 0; i < R; i++)
    ops.rmsnorm(w.xn.data() + i * H, w.x.data() + b.logit_rows[size_t(i)] * H, static_cast<const float*>(mtp_.head_norm->data), H,
                float(c_.rms_norm_eps));
  matmul(*mtp_.head, w.xn.data(), R, logits, pool, w.mm);
}

void DeepseekModel::attention_block(int64_t l, const ForwardBatch& b, MlaCache& cache, ThreadPool& pool, DeepseekWorkspace& w,
                                    MlaAttention mode, const DumpHook* dump) const {
  const DeepseekLayer& L = layers_[size_t(l)];
  const DeepseekConfig& d = c_.deepseek;
  const int64_t T = int64_t(b.tokens.size()), H = c_.hidden_size, nh = c_.num_attention_heads;
  const int64_t nope = d.qk_nope_head_dim, rope_dim = d.qk_rope_head_dim, qk = nope + rope_dim, r = d.kv_lora_rank;
  const int64_t QD = nh * qk, KVA = r + rope_dim, VD = nh * d.v_head_dim;
  const CpuOps& ops = cpu_ops();
  const std::string p = "blk." + std::to_string(l) + ".";
  grow(w.q, size_t(T * QD));
  grow(w.kv_a, size_t(T * KVA));
  grow(w.attn, size_t(T * VD));
  grow(w.proj, size_t(T * H));

  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      ops.rmsnorm(w.xn.data() + t * H, w.x.data() + t * H, static_cast<const float*>(L.attn_norm->data), H, float(c_.rms_norm_eps));
  });
  emit(dump, p + "attn_norm", w.xn.data(), T, H);

  // Query: q_proj, or q_a_proj → q_a_layernorm → q_b_proj. [T, n_heads, qk_nope_head_dim + qk_rope_head_dim]
  // (kv_a_proj_with_mqa, below, is computed with the first query product: one parallel region.)
  if (!L.wq) grow(w.q_a, size_t(T * d.q_lora_rank));
  const MatmulJob first[] = {{L.wq ? L.wq : L.wq_a, w.xn.data(), T, L.wq ? w.q.data() : w.q_a.data()}, {L.wkv_a, w.xn.data(), T, w.kv_a.data()}};
  matmul_many(first, 2, pool, w.mm);
  add_lora(L.wq ? w.q.data() : w.q_a.data(), w.xn.data(), b, l, L.wq ? LoraTarget::QProj : LoraTarget::QAProj, T, pool);
  add_lora(w.kv_a.data(), w.xn.data(), b, l, LoraTarget::KvAProj, T, pool);
  if (!L.wq) {
    for (int64_t t = 0; t < T; t++)
      ops.rmsnorm(w.q_a.data() + t * d.q_lora_rank, w.q_a.data() + t * d.q_lora_rank, static_cast<const float*>(L.q_a_norm->data), d.q_lora_rank,
                  kMlaNormEps);
    emit(dump, p + "q_a", w.q_a.data(), T, d.q_lora_rank);
    matmul(*L.wq_b, w.q_a.data(), T, w.q.data(), pool, w.mm);
    add_lora(w.q.data(), w.q_a.data(), b, l, LoraTarget::QBProj, T, pool);
  }
  emit(dump, p + "q", w.q.data(), T, QD);

  // kv_a_proj_with_mqa → [c_kv (kv_lora_rank) | k_pe (qk_rope_head_dim)]; kv_a_layernorm on c_kv.
  for (int64_t t = 0; t < T; t++)
    ops.rmsnorm(w.kv_a.data() + t * KVA, w.kv_a.data() + t * KVA, static_cast<const float*>(L.kv_a_norm->data), r, kMlaNormEps);
  emit(dump, p + "kv_cmpr", w.kv_a.data(), T, KVA);

  // RoPE on the rope part of each query head and on the one shared k_pe; YaRN's attention factor
  // scales cos and sin, so it multiplies both rotated vectors. Then the latent goes to the cache.
  const int64_t bs = cache.block_size();
  const bool neox = !d.rope_interleave;
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t pos = b.pos[size_t(t)];
      for (int64_t h = 0; h < nh; h++) {
        float* qp = w.q.data() + t * QD + h * qk + nope;
        rope(qp, 1, rope_dim, pos, inv_freq_.data(), neox);
        if (rope_mscale_ != 1.0f) for (int64_t i = 0; i < rope_dim; i++) qp[i] *= rope_mscale_;
      }
      float* kp = w.kv_a.data() + t * KVA + r;
      rope(kp, 1, rope_dim, pos, inv_freq_.data(), neox);
      if (rope_mscale_ != 1.0f) for (int64_t i = 0; i < rope_dim; i++) kp[i] *= rope_mscale_;
      cache.write(l, b.blocks[size_t(t)][pos / bs], pos % bs, w.kv_a.data() + t * KVA, kp);
    }
  });
  emit(dump, p + "q_rope", w.q.data(), T, QD);
  emit(dump, p + "kv_rope", w.kv_a.data(), T, KVA);

  // Attention per sequence (a run of consecutive tokens sharing one block table).
  for (int64_t t0 = 0; t0 < T;) {
    int64_t t1 = t0 + 1;
    while (t1 < T && b.blocks[size_t(t1)] == b.blocks[size_t(t0)] && b.pos[size_t(t1)] == b.pos[size_t(t1 - 1)] + 1) t1++;
    // An adapter on kv_b_proj changes W_UK and W_UV, whose absorbed copies are the base model's:
    // such a layer runs expanded.
    const bool kvb_adapted = b.lora && b.lora->find(l, LoraTarget::KvBProj);
    if (kvb_adapted && !expanded_ok_)
      throw Error("an adapter on kv_b_proj needs attn_kv_b, and this model stores only attn_k_b / attn_v_b");
    const bool absorbed = !kvb_adapted && (mode == MlaAttention::Absorbed || (mode == MlaAttention::Auto && (t1 - t0 == 1 || !expanded_ok_)));
    if (absorbed) attend_absorbed(l, b, t0, t1, cache, pool, w);
    else attend_expanded(l, b, t0, t1, cache, pool, w);
    t0 = t1;
  }
  emit(dump, p + "kqv_out", w.attn.data(), T, VD);

  matmul(*L.wo, w.attn.data(), T, w.proj.data(), pool, w.mm);
  add_lora(w.proj.data(), w.attn.data(), b, l, LoraTarget::OProj, T, pool);
  emit(dump, p + "attn_out", w.proj.data(), T, H);
  pool.parallel_for(T, [&](int64_t a, int64_t z, int) { ops.add(w.x.data() + a * H, w.proj.data() + a * H, (z - a) * H); });
}

// Expanded form: kv_b_proj rebuilds every context token's per-head K_nope and V from its latent,
// then ordinary attention with K = [K_nope | k_pe] (k_pe shared by all heads).
void DeepseekModel::attend_expanded(int64_t l, const ForwardBatch& b, int64_t t0, int64_t t1, const MlaCache& cache, ThreadPool& pool,
                                    DeepseekWorkspace& w) const {
  const DeepseekLayer& L = layers_[size_t(l)];
  const DeepseekConfig& d = c_.deepseek;
  const int64_t nh = c_.num_attention_heads, nope = d.qk_nope_head_dim, rope_dim = d.qk_rope_head_dim, qk = nope + rope_dim;
  const int64_t r = d.kv_lora_rank, vd = d.v_head_dim, KVA = r + rope_dim, KVB = nh * (nope + vd);
  const int64_t n_ctx = b.pos[size_t(t1 - 1)] + 1, bs = cache.block_size();
  const int32_t* blocks = b.blocks[size_t(t0)];
  grow(w.ctx, size_t(n_ctx * KVA));
  grow(w.ctx_c, size_t(n_ctx * r));
  grow(w.ctx_kv, size_t(n_ctx * KVB));
  pool.parallel_for(n_ctx, [&](int64_t s0, int64_t s1, int) {
    for (int64_t s = s0; s < s1; s++) {
      float* row = w.ctx.data() + s * KVA;
      cache.read(l, blocks[s / bs], s % bs, row, row + r);
      std::memcpy(w.ctx_c.data() + s * r, row, size_t(r) * 4);
    }
  });
  matmul(*L.wkv_b, w.ctx_c.data(), n_ctx, w.ctx_kv.data(), pool, w.mm);  // [n_ctx, n_heads, nope + v]
  add_lora(w.ctx_kv.data(), w.ctx_c.data(), b, l, LoraTarget::KvBProj, n_ctx, pool);
  // Per head, two f32 products on the weight kernels: scores = Q_h K_hᵀ (K_h gathered as the
  // "weight" [n_ctx, qk]: its nope part and the shared rope key), the causal mask and softmax
  // per row, then out = P V_h (V_hᵀ gathered as the weight [v, n_ctx]).
  const int64_t T = t1 - t0;
  grow(w.kh, size_t(n_ctx * qk));
  grow(w.vt, size_t(vd * n_ctx));
  grow(w.qh, size_t(T * qk));
  grow(w.sc, size_t(T * n_ctx));
  grow(w.oh, size_t(T * vd));
  Tensor K, Vt;
  K.name = "mla.k_h";
  K.dtype = DType::F32;
  K.ne = {qk, n_ctx};
  K.row_bytes = size_t(qk) * 4;
  K.data = w.kh.data();
  Vt.name = "mla.v_h^T";
  Vt.dtype = DType::F32;
  Vt.ne = {n_ctx, vd};
  Vt.row_bytes = size_t(n_ctx) * 4;
  Vt.data = w.vt.data();
  for (int64_t h = 0; h < nh; h++) {
    pool.parallel_for(n_ctx, [&](int64_t s0, int64_t s1, int) {
      for (int64_t s = s0; s < s1; s++) {
        const float* kv = w.ctx_kv.data() + s * KVB + h * (nope + vd);
        std::memcpy(w.kh.data() + s * qk, kv, size_t(nope) * 4);
        std::memcpy(w.kh.data() + s * qk + nope, w.ctx.data() + s * KVA + r, size_t(rope_dim) * 4);
        for (int64_t j = 0; j < vd; j++) w.vt[size_t(j * n_ctx + s)] = kv[nope + j];
      }
    });
    for (int64_t t = 0; t < T; t++) std::memcpy(w.qh.data() + t * qk, w.q.data() + (t0 + t) * nh * qk + h * qk, size_t(qk) * 4);
    matmul(K, w.qh.data(), T, w.sc.data(), pool, w.mm);
    pool.parallel_for(T, [&](int64_t a, int64_t z, int) {
      for (int64_t t = a; t < z; t++) {
        float* row = w.sc.data() + t * n_ctx;
        const int64_t ctx = b.pos[size_t(t0 + t)] + 1;
        for (int64_t s = 0; s < ctx; s++) row[s] *= softmax_scale_;
        softmax(row, ctx);
        std::fill(row + ctx, row + n_ctx, 0.0f);
      }
    });
    matmul(Vt, w.sc.data(), T, w.oh.data(), pool, w.mm);
    for (int64_t t = 0; t < T; t++) std::memcpy(w.attn.data() + (t0 + t) * nh * vd + h * vd, w.oh.data() + t * vd, size_t(vd) * 4);
  }
}

// y[m, n_out] = x[m, k] · Wᵀ on the calling thread alone (the kernels of aha/kernels.h, no pool):
// for products small enough that one thread should do a whole one, inside a parallel region.
static void matmul_on_this_thread(const Tensor& W, const float* x, int64_t m, float* y, std::vector<uint8_t>& act) {
  const Isa isa = active_isa();
  const WeightKernel* kern = weight_kernel(W.dtype, isa);
  const int64_t k = W.ne[0];
  const size_t a_stride = row_bytes(kern->act, k);
  if (act.size() < a_stride * size_t(m)) act.resize(a_stride * size_t(m));
  for (int64_t i = 0; i < m; i++) quantize_act(kern->act, x + i * k, act.data() + size_t(i) * a_stride, k, isa);
  kern->tile(k, W.data, W.row_bytes, int(W.rows()), act.data(), a_stride, int(m), y, size_t(W.rows()));
}

// Absorbed form: q_nope·(W_UK c) = (W_UKᵀ q_nope)·c, so each head's query moves into the latent
// space and attends straight over the cached [c_kv | k_pe] slots; the output stays a latent
// (Σ p·c_kv) until W_UV maps it to the head's value space. The cache is never expanded.
// Short contexts: one parallel region, each thread whole heads (W_UKᵀ, attention, W_UV). Long
// ones (flash-decoding): each thread attends every head over its slice of the context, so the
// cache is read once rather than once per thread, and the slices merge by their log-sum-exp.
void DeepseekModel::attend_absorbed(int64_t l, const ForwardBatch& b, int64_t t0, int64_t t1, const MlaCache& cache, ThreadPool& pool,
                                    DeepseekWorkspace& w) const {
  const DeepseekLayer& L = layers_[size_t(l)];
  const DeepseekConfig& d = c_.deepseek;
  const int64_t nh = c_.num_attention_heads, nope = d.qk_nope_head_dim, rope_dim = d.qk_rope_head_dim, qk = nope + rope_dim;
  const int64_t r = d.kv_lora_rank, vd = d.v_head_dim, KVA = r + rope_dim, n = t1 - t0, bs = cache.block_size();
  const int32_t* blocks = b.blocks[size_t(t0)];
  const int P = pool.size();
  const bool split = P > 1 && b.pos[size_t(t1 - 1)] + 1 >= kSplitContext;
  // Per thread: q_nope rows [n, nope]; the absorbed queries [n, heads, KVA] of its heads and the
  // op's outputs [n, heads, r] (not split: split, they live in w.qabs and w.part); one head's
  // latent outputs [n, r] and values [n, v]; the op's scratch.
  const int64_t heads = split ? 0 : (nh + P - 1) / P, kva16 = (KVA + 15) / 16 * 16;
  const size_t per_thread = size_t(n * nope + n * heads * (KVA + r) + n * (r + vd) + 16 * kva16);
  grow(w.scratch, per_thread * size_t(P));
  if (w.act.size() < size_t(P)) w.act.resize(size_t(P));
  const uint8_t* k0 = cache.block_data(l, 0);
  const size_t slot_bytes = cache.slot_bytes(), block_stride = size_t(bs) * slot_bytes;
  const CpuOps& ops = cpu_ops();
  struct Parts {
    float *q_nope, *qq, *oo, *o_lat, *out, *op_scratch;
  };
  auto parts = [&](int thread, int64_t hn) {
    Parts p;
    p.q_nope = w.scratch.data() + per_thread * size_t(thread);
    p.qq = p.q_nope + n * nope;
    p.oo = p.qq + n * hn * KVA;
    p.o_lat = p.oo + n * hn * r;
    p.out = p.o_lat + n * r;
    p.op_scratch = p.out + n * vd;
    return p;
  };
  // Head h's absorbed queries into rows qq + i * stride, i < n: [q_nope W_UK_h | q_rope].
  auto absorb = [&](int64_t h, const Parts& p, float* qq, int64_t stride, std::vector<uint8_t>& act) {
    for (int64_t i = 0; i < n; i++) std::memcpy(p.q_nope + i * nope, w.q.data() + (t0 + i) * nh * qk + h * qk, size_t(nope) * 4);
    matmul_on_this_thread(L.wk_b[size_t(h)], p.q_nope, n, p.o_lat, act);  // [n, kv_lora_rank]
    for (int64_t i = 0; i < n; i++) {
      std::memcpy(qq + i * stride, p.o_lat + i * r, size_t(r) * 4);
      std::memcpy(qq + i * stride + r, w.q.data() + (t0 + i) * nh * qk + h * qk + nope, size_t(rope_dim) * 4);
    }
  };
  // Head h's latent outputs (p.o_lat [n, r]) through W_UV into the attention output.
  auto unabsorb = [&](int64_t h, const Parts& p, std::vector<uint8_t>& act) {
    matmul_on_this_thread(L.wv_b[size_t(h)], p.o_lat, n, p.out, act);  // [n, v_head_dim]
    for (int64_t i = 0; i < n; i++) std::memcpy(w.attn.data() + (t0 + i) * nh * vd + h * vd, p.out + i * vd, size_t(vd) * 4);
  };
  // Token i's heads [g0, g0 + group) over the slots [begin, end), one KV head (the latent).
  auto attend = [&](const float* q, float* out, int64_t group, int64_t begin, int64_t end, float* lse, float* op_scratch) {
    AttentionArgs a{q, out, int(group), int(KVA), softmax_scale_, end, blocks, bs, k0, k0, block_stride, slot_bytes, cache.dtype(), op_scratch};
    a.v_dim = int(r);
    a.tiled = cache.tiled();
    a.ctx_begin = begin;
    a.lse = lse;
    ops.attention(a);
  };

  if (!split) {
    pool.parallel_for(nh, [&](int64_t h0, int64_t h1, int thread) {
      const int64_t hn = h1 - h0;
      const Parts p = parts(thread, hn);
      std::vector<uint8_t>& act = w.act[size_t(thread)];
      for (int64_t h = h0; h < h1; h++) absorb(h, p, p.qq + (h - h0) * KVA, hn * KVA, act);
      for (int64_t i = 0; i < n; i++)
        for (int64_t g0 = 0; g0 < hn; g0 += 16)
          attend(p.qq + (i * hn + g0) * KVA, p.oo + (i * hn + g0) * r, std::min<int64_t>(16, hn - g0), 0, b.pos[size_t(t0 + i)] + 1, nullptr, p.op_scratch);
      for (int64_t h = h0; h < h1; h++) {
        for (int64_t i = 0; i < n; i++) std::memcpy(p.o_lat + i * r, p.oo + (i * hn + (h - h0)) * r, size_t(r) * 4);
        unabsorb(h, p, act);
      }
    });
    return;
  }
  // Split: every head's absorbed queries (heads between threads), then slice c of every token's
  // context for all heads on thread c (slices on 16-slot boundaries), then per head the merge and W_UV.
  grow(w.qabs, size_t(n * nh * KVA));
  grow(w.part, size_t(P) * size_t(n * nh * r));
  grow(w.part_lse, size_t(P) * size_t(n * nh));
  pool.parallel_for(nh, [&](int64_t h0, int64_t h1, int thread) {
    const Parts p = parts(thread, 0);
    for (int64_t h = h0; h < h1; h++) absorb(h, p, w.qabs.data() + h * KVA, nh * KVA, w.act[size_t(thread)]);
  });
  pool.parallel_for(P, [&](int64_t c0, int64_t c1, int thread) {
    const Parts p = parts(thread, 0);
    for (int64_t c = c0; c < c1; c++)
      for (int64_t i = 0; i < n; i++) {
        const int64_t ctx = b.pos[size_t(t0 + i)] + 1;
        const int64_t begin = ctx * c / P / 16 * 16, end = c + 1 == P ? ctx : ctx * (c + 1) / P / 16 * 16;
        for (int64_t g0 = 0; g0 < nh; g0 += 16) {
          const size_t at = size_t((c * n + i) * nh + g0);
          attend(w.qabs.data() + (i * nh + g0) * KVA, w.part.data() + at * size_t(r), std::min<int64_t>(16, nh - g0), begin, end, w.part_lse.data() + at,
                 p.op_scratch);
        }
      }
  }, 1);
  pool.parallel_for(nh, [&](int64_t h0, int64_t h1, int thread) {
    const Parts p = parts(thread, 0);
    for (int64_t h = h0; h < h1; h++) {
      for (int64_t i = 0; i < n; i++) {
        float m = -INFINITY;
        for (int c = 0; c < P; c++) m = std::max(m, w.part_lse[size_t((c * n + i) * nh + h)]);
        double z = 0;
        for (int c = 0; c < P; c++) z += std::exp(double(w.part_lse[size_t((c * n + i) * nh + h)] - m));
        float* o = p.o_lat + i * r;
        std::fill(o, o + r, 0.0f);
        for (int c = 0; c < P; c++) {
          const float f = float(std::exp(double(w.part_lse[size_t((c * n + i) * nh + h)] - m)) / z);
          if (f == 0.0f) continue;
          const float* part = w.part.data() + size_t((c * n + i) * nh + h) * size_t(r);
          for (int64_t j = 0; j < r; j++) o[j] += f * part[j];
        }
      }
      unabsorb(h, p, w.act[size_t(thread)]);
    }
  });
}

// Routed expert e's adapters (PEFT's ParamWrapper layout: one pair over the fused [gate | up]
// rows, one over down): gate, up [rows, F] += the gate_up term of x [rows, H]; y [rows, H] += the
// down term of h [rows, F].
static void add_expert_lora_gate_up(float* gate, float* up, const float* x, int64_t rows, const ForwardBatch& b, int64_t l, int64_t e,
                                    ThreadPool& pool) {
  const LoraPair<float>* p = b.lora ? b.lora->find(l, LoraTarget::ExpertsGateUp) : nullptr;
  if (!p) return;
  const int64_t r = b.lora->rank, H = p->in, F2 = p->out, F = F2 / 2;
  std::vector<float> be(size_t(F2 * r)), gu(size_t(rows * F2), 0.0f);
  lora_expert_b(*p, r, e, be.data());
  train::lora_add<float>(gu.data(), nullptr, x, p->A.data() + e * r * H, be.data(), b.lora_scale, rows, H, F2, r, &pool);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < F; j++) gate[i * F + j] += gu[size_t(i * F2 + j)], up[i * F + j] += gu[size_t(i * F2 + F + j)];
}

static void add_expert_lora_down(float* y, const float* h, int64_t rows, const ForwardBatch& b, int64_t l, int64_t e, ThreadPool& pool) {
  const LoraPair<float>* p = b.lora ? b.lora->find(l, LoraTarget::ExpertsDown) : nullptr;
  if (!p) return;
  const int64_t r = b.lora->rank, F = p->in, H = p->out;
  std::vector<float> be(size_t(H * r));
  lora_expert_b(*p, r, e, be.data());
  train::lora_add<float>(y, nullptr, h, p->A.data() + e * r * F, be.data(), b.lora_scale, rows, F, H, r, &pool);
}

// SwiGLU MLP on `rows` rows of x: y = down(silu(gate(x)) * up(x)); with an adapter batch `b`,
// layer l's adapters on the three projections (targets first, first + 1, first + 2) join in, or
// with expert ≥ 0 routed expert `expert`'s.
static void mlp(const Tensor& gate, const Tensor& up, const Tensor& down, const float* x, int64_t rows, float* y, ThreadPool& pool,
                DeepseekWorkspace& w, const ForwardBatch* b = nullptr, int64_t l = -1, LoraTarget first = LoraTarget::GateProj,
                int64_t expert = -1) {
  const int64_t F = gate.ne[1];
  grow(w.gate, size_t(rows * F));
  grow(w.up, size_t(rows * F));
  matmul(gate, x, rows, w.gate.data(), pool, w.mm);
  matmul(up, x, rows, w.up.data(), pool, w.mm);
  if (b && expert >= 0) {
    add_expert_lora_gate_up(w.gate.data(), w.up.data(), x, rows, *b, l, expert, pool);
  } else if (b) {
    add_lora(w.gate.data(), x, *b, l, first, rows, pool);
    add_lora(w.up.data(), x, *b, l, LoraTarget(int(first) + 1), rows, pool);
  }
  const CpuOps& ops = cpu_ops();
  pool.parallel_for(rows * F, [&](int64_t i0, int64_t i1, int) { ops.swiglu(w.gate.data() + i0, w.gate.data() + i0, w.up.data() + i0, i1 - i0); }, 16);
  matmul(down, w.gate.data(), rows, y, pool, w.mm);
  if (b && expert >= 0) add_expert_lora_down(y, w.gate.data(), rows, *b, l, expert, pool);
  else if (b) add_lora(y, w.gate.data(), *b, l, LoraTarget(int(first) + 2), rows, pool);
}

void DeepseekModel::dense_ffn_block(int64_t l, const ForwardBatch& b, ThreadPool& pool, DeepseekWorkspace& w, const DumpHook* dump) const {
  const DeepseekLayer& L = layers_[size_t(l)];
  const int64_t T = int64_t(b.tokens.size());
  const int64_t H = c_.hidden_size;
  const CpuOps& ops = cpu_ops();
  const std::string p = "blk." + std::to_string(l) + ".";
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      ops.rmsnorm(w.xn.data() + t * H, w.x.data() + t * H, static_cast<const float*>(L.ffn_norm->data), H, float(c_.rms_norm_eps));
  });
  emit(dump, p + "ffn_norm", w.xn.data(), T, H);
  mlp(*L.w_gate, *L.w_up, *L.w_down, w.xn.data(), T, w.proj.data(), pool, w, &b, l, LoraTarget::GateProj);
  emit(dump, p + "ffn_out", w.proj.data(), T, H);
  pool.parallel_for(T, [&](int64_t a, int64_t z, int) { ops.add(w.x.data() + a * H, w.proj.data() + a * H, (z - a) * H); });
}

// MoE: the gate picks top_k experts per token; each expert then runs once over all the tokens
// routed to it (grouped by expert), its output scaled by the token's gate weight; the shared
// experts see every token.
void DeepseekModel::moe_block(int64_t l, const ForwardBatch& b, ThreadPool& pool, DeepseekWorkspace& w, const DumpHook* dump) const {
  const DeepseekLayer& L = layers_[size_t(l)];
  const int64_t T = int64_t(b.tokens.size());
  const int64_t H = c_.hidden_size, E = c_.deepseek.n_routed_experts, K = L.gate.top_k;
  const CpuOps& ops = cpu_ops();
  const std::string p = "blk." + std::to_string(l) + ".";
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; t++)
      ops.rmsnorm(w.xn.data() + t * H, w.x.data() + t * H, static_cast<const float*>(L.ffn_norm->data), H, float(c_.rms_norm_eps));
  });
  emit(dump, p + "ffn_norm", w.xn.data(), T, H);

  grow(w.router, size_t(T * E));
  grow(w.topk_w, size_t(T * K));
  w.topk_i.resize(size_t(T * K));
  matmul(*L.gate_inp, w.xn.data(), T, w.router.data(), pool, w.mm);
  emit(dump, p + "ffn_moe_logits", w.router.data(), T, E);
  L.gate.route(w.router.data(), T, w.topk_w.data(), w.topk_i.data());
  emit(dump, p + "ffn_moe_weights", w.topk_w.data(), T, K);

  if (T <= 4) {
    // Decode: every chosen expert's gate and up, and the shared experts', as one set of products
    // (one parallel region), the SwiGLUs, then every down as another.
    const int64_t F = c_.deepseek.moe_intermediate_size, P = T * K, SF = L.sh_gate ? L.sh_gate->ne[1] : 0;
    grow(w.gate, size_t(P * F + T * SF));
    grow(w.up, size_t(P * F + T * SF));
    grow(w.ye, size_t(P * H));
    grow(w.moe_out, size_t(T * H));
    std::vector<MatmulJob> jobs;
    for (int64_t i = 0; i < P; i++) {
      const size_t e = size_t(w.topk_i[size_t(i)]);
      const float* x = w.xn.data() + (i / K) * H;
      jobs.push_back({L.exp_gate[e], x, 1, w.gate.data() + i * F});
      jobs.push_back({L.exp_up[e], x, 1, w.up.data() + i * F});
    }
    if (L.sh_gate) {
      jobs.push_back({L.sh_gate, w.xn.data(), T, w.gate.data() + P * F});
      jobs.push_back({L.sh_up, w.xn.data(), T, w.up.data() + P * F});
    }
    matmul_many(jobs.data(), jobs.size(), pool, w.mm);
    if (L.sh_gate) {
      add_lora(w.gate.data() + P * F, w.xn.data(), b, l, LoraTarget::SharedGate, T, pool);
      add_lora(w.up.data() + P * F, w.xn.data(), b, l, LoraTarget::SharedUp, T, pool);
    }
    for (int64_t i = 0; i < P; i++)
      add_expert_lora_gate_up(w.gate.data() + i * F, w.up.data() + i * F, w.xn.data() + (i / K) * H, 1, b, l, w.topk_i[size_t(i)], pool);
    ops.swiglu(w.gate.data(), w.gate.data(), w.up.data(), P * F + T * SF);
    jobs.clear();
    for (int64_t i = 0; i < P; i++) jobs.push_back({L.exp_down[size_t(w.topk_i[size_t(i)])], w.gate.data() + i * F, 1, w.ye.data() + i * H});
    if (L.sh_gate) jobs.push_back({L.sh_down, w.gate.data() + P * F, T, w.proj.data()});
    matmul_many(jobs.data(), jobs.size(), pool, w.mm);
    if (L.sh_gate) add_lora(w.proj.data(), w.gate.data() + P * F, b, l, LoraTarget::SharedDown, T, pool);
    for (int64_t i = 0; i < P; i++) add_expert_lora_down(w.ye.data() + i * H, w.gate.data() + i * F, 1, b, l, w.topk_i[size_t(i)], pool);
    std::fill(w.moe_out.begin(), w.moe_out.begin() + T * H, 0.0f);
    for (int64_t i = 0; i < P; i++) {
      float* out = w.moe_out.data() + (i / K) * H;
      const float* y = w.ye.data() + i * H;
      const float g = w.topk_w[size_t(i)];
      for (int64_t j = 0; j < H; j++) out[j] += g * y[j];
    }
    emit(dump, p + "ffn_moe_out", w.moe_out.data(), T, H);
    if (L.sh_gate) {
      emit(dump, p + "ffn_shexp", w.proj.data(), T, H);
      ops.add(w.moe_out.data(), w.proj.data(), T * H);
    }
    emit(dump, p + "ffn_out", w.moe_out.data(), T, H);
    ops.add(w.x.data(), w.moe_out.data(), T * H);
    return;
  }

  // (token, weight) lists per expert, tokens in order.
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; t++)
    for (int64_t k = 0; k < K; k++) routed[size_t(w.topk_i[size_t(t * K + k)])].push_back({t, w.topk_w[size_t(t * K + k)]});
  grow(w.moe_out, size_t(T * H));
  std::fill(w.moe_out.begin(), w.moe_out.begin() + T * H, 0.0f);
  for (int64_t e = 0; e < E; e++) {
    const auto& rows = routed[size_t(e)];
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    grow(w.xe, size_t(n * H));
    grow(w.ye, size_t(n * H));
    for (int64_t i = 0; i < n; i++) std::memcpy(w.xe.data() + i * H, w.xn.data() + rows[size_t(i)].first * H, size_t(H) * 4);
    mlp(*L.exp_gate[size_t(e)], *L.exp_up[size_t(e)], *L.exp_down[size_t(e)], w.xe.data(), n, w.ye.data(), pool, w, &b, l, LoraTarget::GateProj, e);
    for (int64_t i = 0; i < n; i++) {
      float* out = w.moe_out.data() + rows[size_t(i)].first * H;
      const float* y = w.ye.data() + i * H;
      const float g = rows[size_t(i)].second;
      for (int64_t j = 0; j < H; j++) out[j] += g * y[j];
    }
  }
  emit(dump, p + "ffn_moe_out", w.moe_out.data(), T, H);
  if (L.sh_gate) {
    mlp(*L.sh_gate, *L.sh_up, *L.sh_down, w.xn.data(), T, w.proj.data(), pool, w, &b, l, LoraTarget::SharedGate);
    emit(dump, p + "ffn_shexp", w.proj.data(), T, H);
    pool.parallel_for(T, [&](int64_t a, int64_t z, int) { ops.add(w.moe_out.data() + a * H, w.proj.data() + a * H, (z - a) * H); });
  }
  emit(dump, p + "ffn_out", w.moe_out.data(), T, H);
  pool.parallel_for(T, [&](int64_t a, int64_t z, int) { ops.add(w.x.data() + a * H, w.moe_out.data() + a * H, (z - a) * H); });
}

}  // namespace aha
