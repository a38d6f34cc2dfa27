// GGUF, safetensors and config.json readers: good files parse, every kind of bad file
// gives an error that names the file and the problem.
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "aha/error.h"
#include "check.h"
#include "core/json.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "models/loader.h"

using namespace aha;

namespace {

// Builds GGUF images byte by byte.
struct GgufBuilder {
  std::vector<uint8_t> b;
  template <typename T>
  void put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    put<uint32_t>(version);
    put<uint64_t>(n_tensors);
    put<uint64_t>(n_kv);
  }
  void kv_u32(const std::string& k, uint32_t v) {
    str(k);
    put<uint32_t>(uint32_t(GgufType::U32));
    put<uint32_t>(v);
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k);
    put<uint32_t>(uint32_t(GgufType::STRING));
    str(v);
  }
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name);
    put<uint32_t>(uint32_t(ne.size()));
    for (auto e : ne) put<uint64_t>(e);
    put<uint32_t>(type);
    put<uint64_t>(offset);
  }
  void align(size_t a = 32) {
    while (b.size() % a) b.push_back(0);
  }
};

std::string parse_error(const std::vector<uint8_t>& img) {
  uint32_t v;
  std::map<std::string, GgufValue> kv;
  std::vector<GgufTensor> ts;
  try {
    parse_gguf(img.data(), img.size(), "x.gguf", &v, &kv, &ts);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

GgufBuilder valid_gguf() {
  GgufBuilder g;
  g.header(3, 1, 3);
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.block_count", 2);
  // an array of strings
  g.str("tokenizer.ggml.tokens");
  g.put<uint32_t>(uint32_t(GgufType::ARRAY));
  g.put<uint32_t>(uint32_t(GgufType::STRING));
  g.put<uint64_t>(3);
  g.str("a");
  g.str("bb");
  g.str("ccc");
  g.tensor("w", {4, 2}, 0, 0);
  g.align();
  for (int i = 0; i < 8; i++) g.put<float>(float(i));
  return g;
}

}  // namespace

TEST(gguf_parses_metadata_and_tensors) {
  auto g = valid_gguf();
  uint32_t v;
  std::map<std::string, GgufValue> kv;
  std::vector<GgufTensor> ts;
  parse_gguf(g.b.data(), g.b.size(), "x.gguf", &v, &kv, &ts);
  CHECK(v == 3);
  CHECK(kv.at("general.architecture").s == "llama");
  CHECK(kv.at("llama.block_count").as_int() == 2);
  CHECK(kv.at("tokenizer.ggml.tokens").count == 3);
  CHECK(ts.size() == 1 && ts[0].ne[0] == 4 && ts[0].ne[1] == 2);
  float f5;
  std::memcpy(&f5, ts[0].data + 20, 4);
  CHECK(f5 == 5.0f);
}

TEST(gguf_bad_inputs_give_clear_errors) {
  auto g = valid_gguf();
  // wrong magic
  auto bad = g.b;
  bad[0] = 'X';
  CHECK(parse_error(bad).find("x.gguf: not a GGUF file (wrong magic)") == 0);
  // version 1 and unknown versions
  bad = g.b;
  bad[4] = 1;
  CHECK(parse_error(bad).find("version 1 is too old") != std::string::npos);
  bad[4] = 9;
  CHECK(parse_error(bad).find("unsupported GGUF version 9") != std::string::npos);
  // every truncation point gives "truncated" or "outside the file", never a crash
  for (size_t n = 0; n < g.b.size(); n++) {
    std::vector<uint8_t> t(g.b.begin(), g.b.begin() + long(n));
    std::string e = parse_error(t);
    CHECK_MSG(!e.empty(), "a file truncated to " << n << " bytes parsed");
    CHECK_MSG(e.find("truncated") != std::string::npos || e.find("outside the file") != std::string::npos || e.find("wrong magic") != std::string::npos,
              "truncated to " << n << ": " << e);
  }
  // tensor data outside the file
  GgufBuilder o;
  o.header(3, 1, 0);
  o.tensor("w", {4, 2}, 0, 1024);
  o.align();
  o.b.resize(o.b.size() + 32);
  CHECK(parse_error(o.b).find("tensor 'w': data") != std::string::npos);
  CHECK(parse_error(o.b).find("lies outside the file") != std::string::npos);
  // unknown dtype
  GgufBuilder u;
  u.header(3, 1, 0);
  u.tensor("w", {32}, 77, 0);
  u.align();
  u.b.resize(u.b.size() + 256);
  CHECK(parse_error(u.b).find("tensor 'w': unknown or unsupported dtype id 77") != std::string::npos);
  // absurd dimensions
  GgufBuilder a;
  a.header(3, 1, 0);
  a.tensor("w", {uint64_t(1) << 50, 1}, 0, 0);
  CHECK(parse_error(a.b).find("absurd dimension") != std::string::npos);
  // absurd counts
  GgufBuilder c;
  c.header(3, uint64_t(1) << 40, 0);
  CHECK(parse_error(c.b).find("absurd tensor count") != std::string::npos);
  // a row that is not whole blocks
  GgufBuilder q;
  q.header(3, 1, 0);
  q.tensor("w", {33}, 8, 0);
  CHECK(parse_error(q.b).find("not a whole number of q8_0 blocks") != std::string::npos);
  // duplicate keys
  GgufBuilder d;
  d.header(3, 0, 2);
  d.kv_u32("k", 1);
  d.kv_u32("k", 2);
  CHECK(parse_error(d.b).find("duplicate metadata key 'k'") != std::string::npos);
}

TEST(json_parses_and_rejects) {
  Json j = Json::parse(R"({"a": [1, 2.5, -3e2], "b": {"c": "x\u00e9\ud83d\ude00"}, "t": true, "n": null})", "t.json");
  CHECK(j.find("a")->array().size() == 3);
  CHECK(j.find("a")->array()[2].number() == -300);
  CHECK(j.find("b")->find("c")->string() == "x\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(j.get_bool("t", false));
  CHECK_THROWS(Json::parse("{\"a\": [1, 2}", "t.json"), "t.json: invalid JSON at byte");
  CHECK_THROWS(Json::parse("{\"a\": 1} x", "t.json"), "trailing");
  CHECK_THROWS(Json::parse(std::string(1000, '['), "t.json"), "nesting too deep");
  CHECK_THROWS(Json::parse("", "t.json"), "unexpected end");
}

static std::vector<uint8_t> safetensors_image(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8);
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes);
  return b;
}

static std::string st_error(const std::vector<uint8_t>& img) {
  try {
    parse_safetensors(img.data(), img.size(), "m.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(safetensors_parses_and_rejects) {
  auto ok = safetensors_image(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 24);
  auto ts = parse_safetensors(ok.data(), ok.size(), "m.safetensors");
  CHECK(ts.size() == 1 && ts[0].ne[0] == 3 && ts[0].ne[1] == 2 && ts[0].dtype == DType::F32);
  CHECK(st_error(safetensors_image(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 20)).find("lies outside the file") != std::string::npos);
  CHECK(st_error(safetensors_image(R"({"w":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[0,2]}})", 2)).find("unsupported dtype F8_E5M2") != std::string::npos);
  CHECK(st_error(safetensors_image(R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[0,24]}})", 24)).find("need 32 bytes") != std::string::npos);
  CHECK(st_error(safetensors_image(R"({"w":{"dtype":"F32","shape":[2,3]}})", 24)).find("needs dtype, shape and data_offsets") != std::string::npos);
  CHECK(st_error(safetensors_image(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}, "v":{"dtype":"F32","shape":[1],"data_offsets":[20,24]}})", 24)).find("overlap") != std::string::npos);
  std::vector<uint8_t> tiny = {1, 2, 3};
  CHECK(st_error(tiny).find("m.safetensors: truncated") == 0);
  auto huge = ok;
  uint64_t n = 1ull << 40;
  std::memcpy(huge.data(), &n, 8);
  CHECK(st_error(huge).find("exceeds the file size") != std::string::npos);
  CHECK(st_error(safetensors_image("[1,2]", 0)).find("not a safetensors file") != std::string::npos);
}

TEST(config_json_maps_and_rejects) {
  ModelConfig c = config_from_hf_json(R"({"architectures":["Qwen2ForCausalLM"],"vocab_size":100,"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":512,"rms_norm_eps":1e-6,
    "rope_theta":1000000.0,"tie_word_embeddings":false,"eos_token_id":[5,6]})", "config.json");
  CHECK(c.arch == Arch::Qwen2 && c.attention_bias && !c.qk_norm && c.head_dim == 16 && c.num_key_value_heads == 2);
  CHECK(c.eos_token_ids.size() == 2 && c.rope_theta == 1e6);
  CHECK_THROWS(config_from_hf_json(R"({"architectures":["MambaForCausalLM"]})", "config.json"), "config.json: unsupported architecture 'MambaForCausalLM'");
  CHECK_THROWS(config_from_hf_json(R"({"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":3})", "config.json"), "num_key_value_heads");
  CHECK_THROWS(config_from_hf_json(R"({"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":"big"})", "config.json"), "\"hidden_size\"");
  CHECK_THROWS(config_from_hf_json(R"({"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":1e12,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4})", "config.json"), "hidden_size");
}

TEST(hf_names_map_to_canonical) {
  CHECK(canonical_name_from_hf("model.layers.12.self_attn.q_proj.weight") == "blk.12.attn_q.weight");
  CHECK(canonical_name_from_hf("model.layers.0.mlp.down_proj.weight") == "blk.0.ffn_down.weight");
  CHECK(canonical_name_from_hf("model.layers.3.self_attn.k_norm.weight") == "blk.3.attn_k_norm.weight");
  CHECK(canonical_name_from_hf("lm_head.weight") == "output.weight");
  CHECK(canonical_name_from_hf("model.layers.x.mlp.up_proj.weight").empty());
  CHECK(canonical_name_from_hf("model.rotary_emb.inv_freq").empty());
}
