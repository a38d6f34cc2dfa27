// The Node addon: a thin layer over the engine's C++ API. Long work (load, prefill,
// generation, benchmarks) runs on worker threads; tokens stream back through a
// thread-safe queue, so the event loop never blocks. Engine errors become JS errors.
#include <algorithm>
#include <napi.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>

#include "aha/error.h"
#include "aha/grpo.h"
#include "aha/kernels.h"
#include "aha/model.h"
#include "aha/train.h"
#include "core/thread_pool.h"

namespace {

using aha::Model;

// One loaded model, shared between the JS object and any job still running on it.
struct Handle {
  std::unique_ptr<Model> model;
  std::mutex mu;                 // one job at a time on a model
  std::atomic<bool> cancel{false};
};

Napi::Object info_to_js(Napi::Env env, const aha::ModelInfo& i, int threads) {
  auto o = Napi::Object::New(env);
  o.Set("path", i.path);
  o.Set("format", i.format);
  o.Set("architecture", i.architecture);
  o.Set("name", i.name);
  o.Set("parameters", double(i.parameters));
  auto mix = Napi::Object::New(env);
  for (auto& [k, v] : i.dtype_mix) mix.Set(k, double(v));
  o.Set("dtypeMix", mix);
  o.Set("weightBytes", double(i.weight_bytes));
  o.Set("decodeBytes", double(i.decode_bytes));
  o.Set("contextLength", double(i.context_length));
  o.Set("context", double(i.context));
  o.Set("kvBytes", double(i.kv_bytes));
  o.Set("kvType", aha::dtype_name(i.kv_dtype));
  o.Set("vocabSize", double(i.vocab_size));
  o.Set("threads", threads);
  const auto& c = i.config;
  auto cfg = Napi::Object::New(env);
  cfg.Set("hiddenSize", double(c.hidden_size));
  cfg.Set("intermediateSize", double(c.intermediate_size));
  cfg.Set("layers", double(c.num_hidden_layers));
  cfg.Set("heads", double(c.num_attention_heads));
  cfg.Set("kvHeads", double(c.num_key_value_heads));
  cfg.Set("headDim", double(c.head_dim));
  cfg.Set("ropeTheta", c.rope_theta);
  cfg.Set("tiedEmbeddings", c.tie_word_embeddings);
  cfg.Set("bosTokenId", double(c.bos_token_id));
  auto eos = Napi::Array::New(env, c.eos_token_ids.size());
  for (size_t k = 0; k < c.eos_token_ids.size(); k++) eos.Set(uint32_t(k), double(c.eos_token_ids[k]));
  cfg.Set("eosTokenIds", eos);
  if (c.arch == aha::Arch::DeepseekV2 || c.arch == aha::Arch::DeepseekV3) {
    const aha::DeepseekConfig& d = c.deepseek;
    auto ds = Napi::Object::New(env);
    ds.Set("qLoraRank", double(d.q_lora_rank));
    ds.Set("kvLoraRank", double(d.kv_lora_rank));
    ds.Set("qkNopeHeadDim", double(d.qk_nope_head_dim));
    ds.Set("qkRopeHeadDim", double(d.qk_rope_head_dim));
    ds.Set("vHeadDim", double(d.v_head_dim));
    ds.Set("routedExperts", double(d.n_routed_experts));
    ds.Set("sharedExperts", double(d.n_shared_experts));
    ds.Set("expertsPerToken", double(d.num_experts_per_tok));
    ds.Set("moeIntermediateSize", double(d.moe_intermediate_size));
    ds.Set("denseLayers", double(d.first_k_dense_replace));
    cfg.Set("deepseek", ds);
  }
  o.Set("config", cfg);
  return o;
}

double num(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined() || o.Get(key).IsNull()) return fallback;
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::vector<int32_t> tokens_from(Napi::Env env, Napi::Value v, const char* what) {
  std::vector<int32_t> out;
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_int32_array) {
      auto a = v.As<Napi::Int32Array>();
      out.assign(a.Data(), a.Data() + a.ElementLength());
      return out;
    }
  }
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + " must be an array of token ids");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (!x.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + "[" + std::to_string(i) + "] is not a number");
    double d = x.As<Napi::Number>().DoubleValue();
    if (d != double(int32_t(d))) throw Napi::TypeError::New(env, std::string(what) + "[" + std::to_string(i) + "] is not a token id");
    out.push_back(int32_t(d));
  }
  return out;
}

aha::GenerateRequest request_from(Napi::Env env, const Napi::Object& o) {
  aha::GenerateRequest r;
  r.prompt = tokens_from(env, o.Get("prompt"), "prompt");
  r.max_tokens = int(num(o, "maxTokens", 256));
  auto& s = r.sampler;
  s.temperature = num(o, "temperature", 1.0);
  s.top_k = int(num(o, "topK", 0));
  s.top_p = num(o, "topP", 1.0);
  s.min_p = num(o, "minP", 0.0);
  s.repetition_penalty = num(o, "repetitionPenalty", 1.0);
  s.presence_penalty = num(o, "presencePenalty", 0.0);
  s.frequency_penalty = num(o, "frequencyPenalty", 0.0);
  s.penalty_last_n = int(num(o, "penaltyLastN", 256));
  s.seed = uint64_t(num(o, "seed", 0));
  if (o.Has("logitBias") && o.Get("logitBias").IsObject()) {
    auto lb = o.Get("logitBias").As<Napi::Object>();
    auto keys = lb.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string k = keys.Get(i).ToString();
      s.logit_bias[int32_t(std::stol(k))] = float(lb.Get(k).ToNumber().DoubleValue());
    }
  }
  if (o.Has("stopTokens") && !o.Get("stopTokens").IsUndefined()) r.stop_tokens = tokens_from(env, o.Get("stopTokens"), "stopTokens");
  r.ignore_eos = o.Has("ignoreEos") && o.Get("ignoreEos").ToBoolean();
  r.adapter = int(num(o, "adapter", 0));
  r.mtp = o.Has("mtp") && o.Get("mtp").ToBoolean();
  return r;
}

class LoadWorker : public Napi::AsyncProgressQueueWorker<aha::LoadProgress> {
 public:
  LoadWorker(Napi::Function progress, Napi::Promise::Deferred d, std::string path, aha::LoadOptions opts)
      : AsyncProgressQueueWorker(progress), d_(d), path_(std::move(path)), opts_(std::move(opts)) {}
  void Execute(const ExecutionProgress& p) override {
    try {
      opts_.progress = [&](const aha::LoadProgress& lp) { p.Send(&lp, 1); };
      handle_ = std::make_shared<Handle>();
      handle_->model = Model::load(path_, opts_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const aha::LoadProgress* lp, size_t n) override {
    Napi::HandleScope scope(Env());
    if (Callback().IsEmpty()) return;
    for (size_t i = 0; i < n; i++) {
      auto o = Napi::Object::New(Env());
      o.Set("fraction", lp[i].fraction);
      o.Set("stage", lp[i].stage);
      Callback().Call({o});
    }
  }
  void OnOK() override;
  void OnError(const Napi::Error& e) override { d_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred d_;
  std::string path_;
  aha::LoadOptions opts_;
  std::shared_ptr<Handle> handle_;
};

class ModelObject : public Napi::ObjectWrap<ModelObject> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Model", {
        InstanceMethod("info", &ModelObject::Info),
        InstanceMethod("logits", &ModelObject::Logits),
        InstanceMethod("generate", &ModelObject::Generate),
        InstanceMethod("cancel", &ModelObject::Cancel),
        InstanceMethod("benchmark", &ModelObject::Benchmark),
        InstanceMethod("unload", &ModelObject::Unload),
        InstanceMethod("loraGrad", &ModelObject::LoraGrad),
        InstanceMethod("loadAdapter", &ModelObject::LoadAdapter),
        InstanceMethod("removeAdapter", &ModelObject::RemoveAdapter),
        InstanceMethod("adapters", &ModelObject::Adapters),
        InstanceMethod("scoreLogprobs", &ModelObject::ScoreLogprobs),
        InstanceMethod("createTrainer", &ModelObject::CreateTrainer),
        InstanceMethod("grpoGrad", &ModelObject::GrpoGrad),
    });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }
  ModelObject(const Napi::CallbackInfo& info) : ObjectWrap(info) {}
  std::shared_ptr<Handle> handle;

 private:
  std::shared_ptr<Handle> need(Napi::Env env) {
    if (!handle) throw Napi::Error::New(env, "the model was unloaded");
    return handle;
  }
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Logits(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    if (handle) handle->cancel = true;
    return info.Env().Undefined();
  }
  Napi::Value Benchmark(const Napi::CallbackInfo& info);
  Napi::Value Unload(const Napi::CallbackInfo& info);
  Napi::Value LoraGrad(const Napi::CallbackInfo& info);
  Napi::Value LoadAdapter(const Napi::CallbackInfo& info);
  Napi::Value RemoveAdapter(const Napi::CallbackInfo& info);
  Napi::Value Adapters(const Napi::CallbackInfo& info);
  Napi::Value ScoreLogprobs(const Napi::CallbackInfo& info);
  Napi::Value CreateTrainer(const Napi::CallbackInfo& info);
  Napi::Value GrpoGrad(const Napi::CallbackInfo& info);
};
Napi::FunctionReference* ModelObject::ctor = nullptr;

void LoadWorker::OnOK() {
  Napi::Object obj = ModelObject::ctor->New({});
  ModelObject::Unwrap(obj)->handle = handle_;
  d_.Resolve(obj);
}

Napi::Value ModelObject::Info(const Napi::CallbackInfo& info) {
  auto h = need(info.Env());
  std::lock_guard<std::mutex> lk(h->mu);
  return info_to_js(info.Env(), h->model->info(), h->model->threads());
}

// A full trainer (aha::FullTrainer: every parameter of a small dense model), shared between the
// JS object and any job still running on it.
struct FullHandle {
  std::unique_ptr<aha::FullTrainer> trainer;
  std::mutex mu;  // one job at a time
};

Model& target(Handle& h) {
  if (!h.model) throw aha::Error("the model was unloaded");
  return *h.model;
}
aha::FullTrainer& target(FullHandle& h) { return *h.trainer; }

// A job run on the libuv pool under its handle's lock (a model's, a full trainer's); `work`
// returns a JS-building continuation.
template <class H, class T>
class JobOn : public Napi::AsyncWorker {
 public:
  JobOn(Napi::Env env, std::shared_ptr<H> h, std::function<std::function<Napi::Value(Napi::Env)>(T&)> work)
      : AsyncWorker(env), d_(Napi::Promise::Deferred::New(env)), h_(std::move(h)), work_(std::move(work)) {}
  Napi::Promise promise() { return d_.Promise(); }
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lk(h_->mu);
      done_ = work_(target(*h_));
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { d_.Resolve(done_ ? done_(Env()) : Env().Undefined()); }
  void OnError(const Napi::Error& e) override { d_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred d_;
  std::shared_ptr<H> h_;
  std::function<std::function<Napi::Value(Napi::Env)>(T&)> work_;
  std::function<Napi::Value(Napi::Env)> done_;
};
using Job = JobOn<Handle, Model>;

Napi::Value ModelObject::Logits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  auto tokens = tokens_from(env, info[0], "tokens");
  bool all = info.Length() > 1 && info[1].ToBoolean();
  if (tokens.empty()) throw Napi::Error::New(env, "tokens must not be empty");
  int adapter = 0;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "adapter must be an adapter id (a number)");
    adapter = info[2].As<Napi::Number>().Int32Value();
  }
  auto* job = new Job(env, h, [tokens, all, adapter](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    int seq = m.new_sequence(adapter);
    auto out = std::make_shared<std::vector<float>>();
    try {
      m.forward({{seq, tokens, all}}, *out);
    } catch (...) {
      m.free_sequence(seq);
      throw;
    }
    m.free_sequence(seq);
    int64_t V = m.config().vocab_size;
    return [out, V](Napi::Env env) -> Napi::Value {
      size_t rows = out->size() / size_t(V);
      auto arr = Napi::Array::New(env, rows);
      for (size_t r = 0; r < rows; r++) {
        auto f = Napi::Float32Array::New(env, size_t(V));
        std::copy(out->begin() + int64_t(r) * V, out->begin() + int64_t(r + 1) * V, f.Data());
        arr.Set(uint32_t(r), f);
      }
      return arr;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

struct TokenEvent {
  uint32_t request;
  int32_t token;
};

class GenerateWorker : public Napi::AsyncProgressQueueWorker<TokenEvent> {
 public:
  GenerateWorker(Napi::Function cb, std::shared_ptr<Handle> h, std::vector<aha::GenerateRequest> reqs)
      : AsyncProgressQueueWorker(cb), d_(Napi::Promise::Deferred::New(cb.Env())), h_(std::move(h)), reqs_(std::move(reqs)) {}
  Napi::Promise promise() { return d_.Promise(); }
  void Execute(const ExecutionProgress& p) override {
    try {
      std::lock_guard<std::mutex> lk(h_->mu);
      if (!h_->model) throw aha::Error("the model was unloaded");
      h_->cancel = false;
      const bool mtp = std::any_of(reqs_.begin(), reqs_.end(), [](const aha::GenerateRequest& r) { return r.mtp; });
      if (mtp && reqs_.size() != 1) throw aha::Error("MTP drafting takes one request at a time");
      if (mtp) {
        res_ = {h_->model->generate_mtp(reqs_[0], [&](int32_t tok) {
          TokenEvent ev{0, tok};
          p.Send(&ev, 1);
          return true;
        }, &h_->cancel)};
      } else {
        res_ = h_->model->generate(reqs_, [&](size_t i, int32_t tok) {
          TokenEvent ev{uint32_t(i), tok};
          p.Send(&ev, 1);
          return true;
        }, &h_->cancel);
      }
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const TokenEvent* ev, size_t n) override {
    Napi::HandleScope scope(Env());
    if (Callback().IsEmpty()) return;
    for (size_t i = 0; i < n; i++) Callback().Call({Napi::Number::New(Env(), ev[i].request), Napi::Number::New(Env(), ev[i].token)});
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto arr = Napi::Array::New(env, res_.size());
    for (size_t i = 0; i < res_.size(); i++) {
      auto o = Napi::Object::New(env);
      auto toks = Napi::Array::New(env, res_[i].tokens.size());
      for (size_t k = 0; k < res_[i].tokens.size(); k++) toks.Set(uint32_t(k), res_[i].tokens[k]);
      o.Set("tokens", toks);
      o.Set("finishReason", aha::finish_reason_name(res_[i].finish));
      o.Set("promptTokens", double(res_[i].prompt_tokens));
      o.Set("cachedTokens", double(res_[i].cached_tokens));
      o.Set("prefillSeconds", res_[i].prefill_seconds);
      o.Set("decodeSeconds", res_[i].decode_seconds);
      if (reqs_[i].mtp) {
        o.Set("drafted", double(res_[i].drafted));
        o.Set("accepted", double(res_[i].accepted));
      }
      arr.Set(uint32_t(i), o);
    }
    d_.Resolve(arr);
  }
  void OnError(const Napi::Error& e) override { d_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred d_;
  std::shared_ptr<Handle> h_;
  std::vector<aha::GenerateRequest> reqs_;
  std::vector<aha::GenerateResult> res_;
};

Napi::Value ModelObject::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "generate(requests[], onToken) expects an array of requests");
  auto arr = info[0].As<Napi::Array>();
  std::vector<aha::GenerateRequest> reqs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    if (!arr.Get(i).IsObject()) throw Napi::TypeError::New(env, "request " + std::to_string(i) + " is not an object");
    reqs.push_back(request_from(env, arr.Get(i).As<Napi::Object>()));
  }
  Napi::Function cb = info.Length() > 1 && info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  auto* w = new GenerateWorker(cb, h, std::move(reqs));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---------------------------------------------------------------- training (aha/train.h)

// loraGrad({adapter, sequences: [{inputIds, labels}], out, dtype}): one forward and backward with
// the PEFT adapter folder, every LoRA gradient written to `out`; resolves {loss, targetTokens}.
Napi::Value ModelObject::LoraGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "loraGrad({adapter, sequences, out, dtype}) expects an options object");
  auto o = info[0].As<Napi::Object>();
  auto str = [&](const char* k) {
    if (!o.Get(k).IsString()) throw Napi::TypeError::New(env, std::string(k) + " must be a string");
    return o.Get(k).As<Napi::String>().Utf8Value();
  };
  const std::string adapter = str("adapter"), out = str("out");
  const std::string dtype = o.Get("dtype").IsUndefined() ? "f32" : str("dtype");
  if (dtype != "f32" && dtype != "f64") throw Napi::TypeError::New(env, "dtype must be 'f32' or 'f64', got '" + dtype + "'");
  if (!o.Get("sequences").IsArray()) throw Napi::TypeError::New(env, "sequences must be an array of {inputIds, labels}");
  auto arr = o.Get("sequences").As<Napi::Array>();
  std::vector<aha::TrainSequence> seqs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    if (!arr.Get(i).IsObject()) throw Napi::TypeError::New(env, "sequence " + std::to_string(i) + " is not an object");
    auto s = arr.Get(i).As<Napi::Object>();
    std::string w = "sequences[" + std::to_string(i) + "]";
    seqs.push_back({tokens_from(env, s.Get("inputIds"), (w + ".inputIds").c_str()), tokens_from(env, s.Get("labels"), (w + ".labels").c_str())});
  }
  const auto prec = dtype == "f64" ? aha::GradPrecision::F64 : aha::GradPrecision::F32;
  auto* job = new Job(env, h, [adapter, out, seqs, prec](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    aha::LoraAdapter ad = aha::LoraAdapter::load(adapter, m.config());
    aha::LoraLossAndGrads r = aha::lora_loss_and_grads(m, ad, seqs, prec);
    aha::save_lora_grads(out, r, prec);
    const double loss = r.loss;
    const double n = double(r.target_tokens);
    return [loss, n](Napi::Env env) -> Napi::Value {
      auto res = Napi::Object::New(env);
      res.Set("loss", loss);
      res.Set("targetTokens", n);
      return res;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// ---------------------------------------------------------------- adapters and scoring

Napi::Object adapter_to_js(Napi::Env env, const aha::AdapterInfo& a) {
  auto o = Napi::Object::New(env);
  o.Set("id", a.id);
  o.Set("name", a.name);
  o.Set("path", a.path);
  o.Set("rank", double(a.rank));
  o.Set("alpha", a.alpha);
  o.Set("scale", a.scale);
  o.Set("useRslora", a.use_rslora);
  auto t = Napi::Array::New(env, a.target_modules.size());
  for (size_t i = 0; i < a.target_modules.size(); i++) t.Set(uint32_t(i), a.target_modules[i]);
  o.Set("targetModules", t);
  o.Set("version", double(a.version));
  return o;
}

// loadAdapter(dir, name?) → Promise<AdapterInfo>: a PEFT adapter folder, applied unmerged by
// requests that name its id.
Napi::Value ModelObject::LoadAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "loadAdapter(dir, name?) expects an adapter folder");
  const std::string dir = info[0].As<Napi::String>().Utf8Value();
  const std::string name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  auto* job = new Job(env, h, [dir, name](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    const int id = m.load_adapter(dir, name);
    aha::AdapterInfo a;
    for (auto& x : m.adapters())
      if (x.id == id) a = x;
    return [a](Napi::Env env) -> Napi::Value { return adapter_to_js(env, a); };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Napi::Value ModelObject::RemoveAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "removeAdapter(id) expects an adapter id");
  const int id = info[0].As<Napi::Number>().Int32Value();
  auto* job = new Job(env, h, [id](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    m.remove_adapter(id);
    return nullptr;
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// adapters() → Promise<AdapterInfo[]> (a job: it waits for a running step, not the event loop).
Napi::Value ModelObject::Adapters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  auto* job = new Job(env, h, [](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    auto list = m.adapters();
    return [list](Napi::Env env) -> Napi::Value {
      auto arr = Napi::Array::New(env, list.size());
      for (size_t i = 0; i < list.size(); i++) arr.Set(uint32_t(i), adapter_to_js(env, list[i]));
      return arr;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// scoreLogprobs({adapter?, sequences: [{prompt, completion}]}) → Promise<Float64Array[]>: the
// log-prob of every completion token, one train-mode forward for the batch (adapter 0: none).
Napi::Value ModelObject::ScoreLogprobs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "scoreLogprobs({adapter, sequences}) expects an options object");
  auto o = info[0].As<Napi::Object>();
  const int adapter = int(num(o, "adapter", 0));
  if (!o.Get("sequences").IsArray()) throw Napi::TypeError::New(env, "sequences must be an array of {prompt, completion}");
  auto arr = o.Get("sequences").As<Napi::Array>();
  std::vector<aha::ScoreSequence> seqs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    if (!arr.Get(i).IsObject()) throw Napi::TypeError::New(env, "sequence " + std::to_string(i) + " is not an object");
    auto s = arr.Get(i).As<Napi::Object>();
    std::string w = "sequences[" + std::to_string(i) + "]";
    seqs.push_back({tokens_from(env, s.Get("prompt"), (w + ".prompt").c_str()), tokens_from(env, s.Get("completion"), (w + ".completion").c_str())});
  }
  auto* job = new Job(env, h, [adapter, seqs](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    auto out = std::make_shared<std::vector<std::vector<double>>>(aha::completion_logprobs(m, adapter, seqs));
    return [out](Napi::Env env) -> Napi::Value {
      auto arr = Napi::Array::New(env, out->size());
      for (size_t i = 0; i < out->size(); i++) {
        auto f = Napi::Float64Array::New(env, (*out)[i].size());
        std::copy((*out)[i].begin(), (*out)[i].end(), f.Data());
        arr.Set(uint32_t(i), f);
      }
      return arr;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// ---------------------------------------------------------------- GRPO (aha/grpo.h)

// The loss options {type, beta, epsilon, epsilonHigh, temperature, maxCompletionLength,
// maskTruncatedCompletions}, every one optional (TRL's defaults).
aha::GrpoLossConfig grpo_loss_from(Napi::Env env, Napi::Value v) {
  aha::GrpoLossConfig c;
  if (v.IsUndefined()) return c;
  if (!v.IsObject()) throw Napi::TypeError::New(env, "loss must be an object {type, beta, epsilon, ...}");
  auto o = v.As<Napi::Object>();
  try {
    if (o.Get("type").IsString()) c.type = aha::grpo_loss_type_from_name(o.Get("type").As<Napi::String>().Utf8Value());
    c.beta = num(o, "beta", c.beta);
    c.epsilon_low = num(o, "epsilon", c.epsilon_low);
    c.epsilon_high = num(o, "epsilonHigh", c.epsilon_low);
    c.temperature = num(o, "temperature", c.temperature);
    c.max_completion_length = int64_t(num(o, "maxCompletionLength", 0));
    c.mask_truncated_completions = o.Get("maskTruncatedCompletions").ToBoolean();
    c.validate();
  } catch (const aha::Error& e) {
    throw Napi::TypeError::New(env, e.what());
  }
  return c;
}

// {loss, lossTokens, tokens, sequences, maskedSequences, kl, entropy, clipLowMean, clipHighMean,
//  clipRegionMean, clipLowMin, clipHighMax, referenceSeconds, policySeconds} (NaN: undefined).
Napi::Object grpo_result_to_js(Napi::Env env, const aha::GrpoLossAndGrads& g) {
  auto o = Napi::Object::New(env);
  o.Set("loss", g.loss);
  o.Set("lossTokens", double(g.loss_tokens));
  o.Set("tokens", double(g.tokens));
  o.Set("sequences", double(g.sequences));
  o.Set("maskedSequences", double(g.masked_sequences));
  o.Set("kl", g.kl);
  o.Set("entropy", g.entropy);
  o.Set("clipLowMean", g.clip_low_mean);
  o.Set("clipHighMean", g.clip_high_mean);
  o.Set("clipRegionMean", g.clip_region_mean);
  o.Set("clipLowMin", g.clip_low_min);
  o.Set("clipHighMax", g.clip_high_max);
  o.Set("referenceSeconds", g.reference_seconds);
  o.Set("policySeconds", g.policy_seconds);
  o.Set("forwardSeconds", g.forward_seconds);
  return o;
}

Napi::Array advantages_to_js(Napi::Env env, const aha::GrpoAdvantages& a) {
  auto arr = Napi::Array::New(env, a.advantages.size());
  for (size_t p = 0; p < a.advantages.size(); p++) {
    auto g = Napi::Array::New(env, a.advantages[p].size());
    for (size_t k = 0; k < a.advantages[p].size(); k++) g.Set(uint32_t(k), a.advantages[p][k]);
    arr.Set(uint32_t(p), g);
  }
  return arr;
}

// grpoGrad({adapter, rollouts, out, dtype?, microBatchTokens?}): the GRPO loss of ROLLOUTS.json
// (`rollouts`, a file; aha/grpo.h) with the PEFT adapter folder, every LoRA gradient written to
// `out`; resolves grpo_result_to_js plus {advantages, fracRewardZeroStd}.
Napi::Value ModelObject::GrpoGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "grpoGrad({adapter, rollouts, out, dtype}) expects an options object");
  auto o = info[0].As<Napi::Object>();
  auto str = [&](const char* k) {
    if (!o.Get(k).IsString()) throw Napi::TypeError::New(env, std::string(k) + " must be a string");
    return o.Get(k).As<Napi::String>().Utf8Value();
  };
  const std::string adapter = str("adapter"), rollouts = str("rollouts"), out = str("out");
  const std::string dtype = o.Get("dtype").IsUndefined() ? "f32" : str("dtype");
  if (dtype != "f32" && dtype != "f64") throw Napi::TypeError::New(env, "dtype must be 'f32' or 'f64', got '" + dtype + "'");
  const int64_t mb = int64_t(num(o, "microBatchTokens", 0));
  const auto prec = dtype == "f64" ? aha::GradPrecision::F64 : aha::GradPrecision::F32;
  auto* job = new Job(env, h, [adapter, rollouts, out, prec, mb](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    std::ifstream in(rollouts, std::ios::binary);
    if (!in) throw aha::Error(rollouts + ": cannot be read");
    std::stringstream text;
    text << in.rdbuf();
    aha::GrpoRollouts r = aha::grpo_rollouts_from_json(text.str(), rollouts, m.config().eos_token_ids);
    aha::LoraAdapter ad = aha::LoraAdapter::load(adapter, m.config());
    auto g = std::make_shared<aha::GrpoLossAndGrads>(aha::grpo_loss_and_grads(m, ad, r.batch, r.loss, prec, mb));
    aha::LoraLossAndGrads file;
    file.loss = g->loss;
    file.target_tokens = g->loss_tokens;
    file.grads = std::move(g->grads);
    aha::save_lora_grads(out, file, prec);
    auto adv = std::make_shared<aha::GrpoAdvantages>(std::move(r.advantages));
    return [g, adv](Napi::Env env) -> Napi::Value {
      auto res = grpo_result_to_js(env, *g);
      res.Set("advantages", advantages_to_js(env, *adv));
      res.Set("fracRewardZeroStd", adv->frac_reward_zero_std);
      return res;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// ---------------------------------------------------------------- LoRA training steps

std::vector<aha::TrainSequence> sequences_from(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, what + " must be an array of {inputIds, labels}");
  auto arr = v.As<Napi::Array>();
  std::vector<aha::TrainSequence> seqs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    std::string w = what + "[" + std::to_string(i) + "]";
    if (!arr.Get(i).IsObject()) throw Napi::TypeError::New(env, w + " is not an object");
    auto s = arr.Get(i).As<Napi::Object>();
    seqs.push_back({tokens_from(env, s.Get("inputIds"), (w + ".inputIds").c_str()), tokens_from(env, s.Get("labels"), (w + ".labels").c_str())});
  }
  return seqs;
}

// What a trainer's step({microBatches, lr}) is given.
struct StepArgs {
  std::vector<std::vector<aha::TrainSequence>> micro_batches;
  double lr = -1;
};

StepArgs step_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "step({microBatches, lr}) expects an options object");
  auto o = info[0].As<Napi::Object>();
  if (!o.Get("microBatches").IsArray()) throw Napi::TypeError::New(env, "microBatches must be an array of sequence arrays");
  auto mbs = o.Get("microBatches").As<Napi::Array>();
  StepArgs a;
  for (uint32_t i = 0; i < mbs.Length(); i++) a.micro_batches.push_back(sequences_from(env, mbs.Get(i), "microBatches[" + std::to_string(i) + "]"));
  a.lr = num(o, "lr", -1);
  return a;
}

Napi::Object step_result_to_js(Napi::Env env, const aha::TrainStepResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("loss", r.loss);
  o.Set("targetTokens", double(r.target_tokens));
  o.Set("tokens", double(r.tokens));
  o.Set("gradNorm", r.grad_norm);
  o.Set("step", double(r.step));
  return o;
}

// A LoRA trainer on a model: step() runs forward, backward and the optimizer on the addon's
// worker threads (the event loop never waits on it), one job at a time with the model's others.
class TrainerObject : public Napi::ObjectWrap<TrainerObject> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Trainer", {
        InstanceMethod("step", &TrainerObject::Step),
        InstanceMethod("grpoStep", &TrainerObject::GrpoStep),
        InstanceMethod("save", &TrainerObject::Save),
    });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }
  TrainerObject(const Napi::CallbackInfo& info) : ObjectWrap(info) {}
  std::shared_ptr<Handle> handle;
  std::shared_ptr<aha::LoraTrainer> trainer;

 private:
  // step({microBatches: [[{inputIds, labels}]], lr}) → Promise<{loss, targetTokens, tokens, gradNorm, step}>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const StepArgs a = step_args(info);
    auto t = trainer;
    auto* job = new Job(env, handle, [t, a](Model& m) -> std::function<Napi::Value(Napi::Env)> {
      aha::TrainStepResult r = t->step(m, a.micro_batches, a.lr);
      return [r](Napi::Env env) -> Napi::Value { return step_result_to_js(env, r); };
    });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
  // grpoStep({groups: [{prompt, completions: [ids], rewards: [G], truncated?: [G]}], loss?,
  //   scaleRewards?, lr, microBatchTokens?}) → Promise<grpo_result_to_js + {advantages,
  //   fracRewardZeroStd, gradNorm, step, optimizerSeconds, logprobs: Float64Array per completion}>:
  // advantages from the rewards (aha/grpo.h), the loss and its gradients, one AdamW step.
  Napi::Value GrpoStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "grpoStep({groups, loss, lr}) expects an options object");
    auto o = info[0].As<Napi::Object>();
    if (!o.Get("groups").IsArray()) throw Napi::TypeError::New(env, "groups must be an array of {prompt, completions, rewards}");
    auto groups = o.Get("groups").As<Napi::Array>();
    std::vector<aha::GrpoSequence> batch;
    std::vector<std::vector<double>> rewards;
    for (uint32_t p = 0; p < groups.Length(); p++) {
      const std::string w = "groups[" + std::to_string(p) + "]";
      if (!groups.Get(p).IsObject()) throw Napi::TypeError::New(env, w + " is not an object");
      auto g = groups.Get(p).As<Napi::Object>();
      const auto prompt = tokens_from(env, g.Get("prompt"), (w + ".prompt").c_str());
      if (!g.Get("completions").IsArray() || !g.Get("rewards").IsArray()) throw Napi::TypeError::New(env, w + " needs completions and rewards arrays");
      auto cs = g.Get("completions").As<Napi::Array>();
      auto rs = g.Get("rewards").As<Napi::Array>();
      auto tr = g.Get("truncated");
      if (rs.Length() != cs.Length()) throw Napi::TypeError::New(env, w + ": one reward per completion");
      if (!tr.IsUndefined() && (!tr.IsArray() || tr.As<Napi::Array>().Length() != cs.Length()))
        throw Napi::TypeError::New(env, w + ".truncated must hold one boolean per completion");
      rewards.emplace_back();
      for (uint32_t k = 0; k < cs.Length(); k++) {
        aha::GrpoSequence s;
        s.prompt = prompt;
        s.completion = tokens_from(env, cs.Get(k), (w + ".completions[" + std::to_string(k) + "]").c_str());
        s.truncated = !tr.IsUndefined() && tr.As<Napi::Array>().Get(k).ToBoolean();
        if (!rs.Get(k).IsNumber()) throw Napi::TypeError::New(env, w + ".rewards[" + std::to_string(k) + "] is not a number");
        rewards.back().push_back(rs.Get(k).As<Napi::Number>().DoubleValue());
        batch.push_back(std::move(s));
      }
    }
    const aha::GrpoLossConfig loss = grpo_loss_from(env, o.Get("loss"));
    aha::RewardScaling scaling;
    try {
      scaling = aha::reward_scaling_from_name(o.Get("scaleRewards").IsString() ? o.Get("scaleRewards").As<Napi::String>().Utf8Value() : "group");
    } catch (const aha::Error& e) {
      throw Napi::TypeError::New(env, e.what());
    }
    const double lr = num(o, "lr", -1);
    const int64_t mb = int64_t(num(o, "microBatchTokens", 0));
    auto t = trainer;
    auto* job = new Job(env, handle, [t, batch, rewards, loss, scaling, lr, mb](Model& m) mutable -> std::function<Napi::Value(Napi::Env)> {
      auto adv = std::make_shared<aha::GrpoAdvantages>(aha::grpo_advantages(rewards, scaling));
      size_t k = 0;
      for (auto& g : adv->advantages)
        for (double a : g) batch[k++].advantage = a;
      auto r = std::make_shared<aha::GrpoStepResult>(aha::grpo_step(*t, m, batch, loss, lr, mb));
      return [r, adv](Napi::Env env) -> Napi::Value {
        auto o = grpo_result_to_js(env, r->g);
        o.Set("advantages", advantages_to_js(env, *adv));
        o.Set("fracRewardZeroStd", adv->frac_reward_zero_std);
        o.Set("gradNorm", r->grad_norm);
        o.Set("step", double(r->step));
        o.Set("optimizerSeconds", r->optimizer_seconds);
        auto lp = Napi::Array::New(env, r->g.logprobs.size());
        for (size_t i = 0; i < r->g.logprobs.size(); i++) {
          auto f = Napi::Float64Array::New(env, r->g.logprobs[i].size());
          std::copy(r->g.logprobs[i].begin(), r->g.logprobs[i].end(), f.Data());
          lp.Set(uint32_t(i), f);
        }
        o.Set("logprobs", lp);
        return o;
      };
    });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
  // save(dir): the adapter (PEFT layout) and the optimizer state into an existing folder.
  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "save(dir) expects a folder");
    const std::string dir = info[0].As<Napi::String>().Utf8Value();
    auto t = trainer;
    auto* job = new Job(env, handle, [t, dir](Model&) -> std::function<Napi::Value(Napi::Env)> {
      t->save(dir);
      return nullptr;
    });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
};
Napi::FunctionReference* TrainerObject::ctor = nullptr;

// createTrainer({init: {rank, alpha, targetModules, useRslora, seed} | resume: dir, name?,
//   beta1?, beta2?, eps?, weightDecay?, maxGradNorm?}) → Promise<Trainer>. The adapter being
// trained is also one of the model's adapters (info().adapterId): generation can sample from it.
Napi::Value ModelObject::CreateTrainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "createTrainer({init | resume, ...}) expects an options object");
  auto o = info[0].As<Napi::Object>();
  aha::LoraTrainer::Options opts;
  opts.adamw.beta1 = num(o, "beta1", opts.adamw.beta1);
  opts.adamw.beta2 = num(o, "beta2", opts.adamw.beta2);
  opts.adamw.eps = num(o, "eps", opts.adamw.eps);
  opts.adamw.weight_decay = num(o, "weightDecay", opts.adamw.weight_decay);
  opts.max_grad_norm = num(o, "maxGradNorm", opts.max_grad_norm);
  opts.checkpoint_layers = o.Get("checkpointLayers").ToBoolean();
  const std::string name = o.Get("name").IsString() ? o.Get("name").As<Napi::String>().Utf8Value() : "training";
  std::string resume;
  aha::LoraConfig lc;
  uint64_t seed = 0;
  if (o.Get("resume").IsString()) {
    resume = o.Get("resume").As<Napi::String>().Utf8Value();
  } else if (o.Get("init").IsObject()) {
    auto i = o.Get("init").As<Napi::Object>();
    lc.rank = int64_t(num(i, "rank", double(lc.rank)));
    lc.alpha = num(i, "alpha", lc.alpha);
    lc.use_rslora = i.Get("useRslora").ToBoolean();
    lc.dropout = num(i, "dropout", 0);
    seed = uint64_t(num(i, "seed", 0));
    if (i.Get("baseModel").IsString()) lc.base_model = i.Get("baseModel").As<Napi::String>().Utf8Value();
    if (i.Has("targetModules") && !i.Get("targetModules").IsUndefined()) {
      if (!i.Get("targetModules").IsArray()) throw Napi::TypeError::New(env, "targetModules must be an array of module names");
      auto t = i.Get("targetModules").As<Napi::Array>();
      lc.target_modules.clear();
      for (uint32_t k = 0; k < t.Length(); k++) lc.target_modules.push_back(t.Get(k).ToString().Utf8Value());
    }
  } else {
    throw Napi::TypeError::New(env, "createTrainer needs init: {rank, alpha, targetModules, ...} or resume: a checkpoint folder");
  }
  auto made = std::make_shared<std::shared_ptr<aha::LoraTrainer>>();
  auto* job = new Job(env, h, [=](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    std::shared_ptr<aha::LoraTrainer> t;
    if (!resume.empty()) {
      t = std::make_shared<aha::LoraTrainer>(aha::LoraTrainer::load(resume, m.config(), opts));
    } else {
      lc.validate();
      t = std::make_shared<aha::LoraTrainer>(m.config(), aha::LoraAdapter::init(m.config(), lc, seed), opts);
    }
    t->model_adapter = m.add_adapter(t->adapter(), name);
    *made = t;
    const int id = t->model_adapter;
    const double step = double(t->optimizer().steps());
    return [made, h, id, step](Napi::Env env) -> Napi::Value {
      Napi::Object obj = TrainerObject::ctor->New({});
      auto* w = TrainerObject::Unwrap(obj);
      w->handle = h;
      w->trainer = *made;
      obj.Set("adapterId", id);
      obj.Set("initialStep", step);  // optimizer steps taken before (a resumed trainer's count)
      return obj;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// A full trainer: every parameter of a small dense model, owned by the trainer (no Model is
// loaded). step() and save() run on the addon's worker threads, one at a time.
class FullTrainerObject : public Napi::ObjectWrap<FullTrainerObject> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "FullTrainer", {
        InstanceMethod("step", &FullTrainerObject::Step),
        InstanceMethod("save", &FullTrainerObject::Save),
    });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }
  FullTrainerObject(const Napi::CallbackInfo& info) : ObjectWrap(info) {}
  std::shared_ptr<FullHandle> handle;

 private:
  using FullJob = JobOn<FullHandle, aha::FullTrainer>;
  // step({microBatches: [[{inputIds, labels}]], lr}) → Promise<{loss, targetTokens, tokens, gradNorm, step}>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    const StepArgs a = step_args(info);
    auto* job = new FullJob(info.Env(), handle, [a](aha::FullTrainer& t) -> std::function<Napi::Value(Napi::Env)> {
      aha::TrainStepResult r = t.step(a.micro_batches, a.lr);
      return [r](Napi::Env env) -> Napi::Value { return step_result_to_js(env, r); };
    });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
  // save(dir): config.json + model.safetensors (an HF folder) and the optimizer state into an existing folder.
  Napi::Value Save(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "save(dir) expects a folder");
    const std::string dir = info[0].As<Napi::String>().Utf8Value();
    auto* job = new FullJob(info.Env(), handle, [dir](aha::FullTrainer& t) -> std::function<Napi::Value(Napi::Env)> {
      t.save(dir);
      return nullptr;
    });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
};
Napi::FunctionReference* FullTrainerObject::ctor = nullptr;

// createFullTrainer({model: path | config: config.json, seed?} | {resume: dir}, threads?, beta1?,
//   beta2?, eps?, weightDecay?, maxGradNorm?) → Promise<FullTrainer> with initialStep, parameters,
// vocabSize, architecture: a model read from any format the engine loads, a fresh one from an HF
// config (HF's init, seeded), or a checkpoint folder FullTrainer.save wrote.
Napi::Value CreateFullTrainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "createFullTrainer({model | config | resume, ...}) expects an options object");
  auto o = info[0].As<Napi::Object>();
  aha::FullTrainer::Options opts;
  opts.adamw.beta1 = num(o, "beta1", opts.adamw.beta1);
  opts.adamw.beta2 = num(o, "beta2", opts.adamw.beta2);
  opts.adamw.eps = num(o, "eps", opts.adamw.eps);
  opts.adamw.weight_decay = num(o, "weightDecay", opts.adamw.weight_decay);
  opts.max_grad_norm = num(o, "maxGradNorm", opts.max_grad_norm);
  opts.threads = int(num(o, "threads", 0));
  auto str = [&](const char* k) { return o.Get(k).IsString() ? o.Get(k).As<Napi::String>().Utf8Value() : std::string(); };
  const std::string model = str("model"), config = str("config"), resume = str("resume");
  if (int(!model.empty()) + int(!config.empty()) + int(!resume.empty()) != 1)
    throw Napi::TypeError::New(env, "createFullTrainer needs one of model (a model path), config (an HF config.json) and resume (a checkpoint folder)");
  const uint64_t seed = uint64_t(num(o, "seed", 0));
  auto d = Napi::Promise::Deferred::New(env);
  struct W : Napi::AsyncWorker {
    W(Napi::Env e, Napi::Promise::Deferred d) : AsyncWorker(e), d(d) {}
    void Execute() override {
      try {
        trainer = std::make_unique<aha::FullTrainer>(make());
      } catch (const std::exception& e) {
        SetError(e.what());
      }
    }
    void OnOK() override {
      Napi::Object obj = FullTrainerObject::ctor->New({});
      auto h = std::make_shared<FullHandle>();
      const aha::DenseParams<float>& p = trainer->params();
      obj.Set("initialStep", double(trainer->optimizer().steps()));
      obj.Set("parameters", double(p.parameters()));
      obj.Set("vocabSize", double(p.config.vocab_size));
      obj.Set("architecture", aha::arch_name(p.config.arch));
      h->trainer = std::move(trainer);
      FullTrainerObject::Unwrap(obj)->handle = h;
      d.Resolve(obj);
    }
    void OnError(const Napi::Error& e) override { d.Reject(e.Value()); }
    Napi::Promise::Deferred d;
    std::function<aha::FullTrainer()> make;
    std::unique_ptr<aha::FullTrainer> trainer;
  };
  auto* w = new W(env, d);
  w->make = [=] {
    if (!resume.empty()) return aha::FullTrainer::load(resume, opts);
    return aha::FullTrainer(config.empty() ? aha::dense_params_load(model) : aha::dense_params_init(config, seed), opts);
  };
  w->Queue();
  return d.Promise();
}

Napi::Value ModelObject::Benchmark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = need(env);
  Napi::Object o = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  int pp = int(num(o, "pp", 512)), tg = int(num(o, "tg", 128)), reps = int(num(o, "repeats", 1));
  // Decode at depth: the context filled with random cache entries (Model::fill_context), then
  // depthTg tokens timed.
  std::vector<int64_t> depths;
  if (o.Has("depths") && o.Get("depths").IsArray()) {
    auto a = o.Get("depths").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) depths.push_back(int64_t(a.Get(i).As<Napi::Number>().DoubleValue()));
  }
  const int depth_tg = int(num(o, "depthTg", tg));
  // How the context gets to depth: random cache entries (default), or a real prefill of random
  // tokens in chunks of 512 (what llama-bench's -d does; slow for deep contexts of big models).
  bool depth_prefill = false;
  if (o.Has("depthFill") && o.Get("depthFill").IsString()) {
    const std::string f = o.Get("depthFill").ToString();
    if (f == "prefill") depth_prefill = true;
    else if (f != "random") throw Napi::Error::New(env, "depthFill must be random or prefill, not " + f);
  }
  struct DepthResult {
    int64_t depth;
    double tps;
    int64_t cache_bytes;
    size_t workspace_bytes;
  };
  auto* job = new Job(env, h, [pp, tg, reps, depths, depth_tg, depth_prefill](Model& m) -> std::function<Napi::Value(Napi::Env)> {
    using clock = std::chrono::steady_clock;
    std::mt19937 rng(1234);
    const int64_t V = m.config().vocab_size;
    std::uniform_int_distribution<int32_t> dist(0, int32_t(V - 1));
    double pp_best = 0, tg_best = 0, pp_sum = 0, tg_sum = 0;
    std::vector<float> logits;
    for (int r = 0; r < reps; r++) {
      if (pp > 0) {
        std::vector<int32_t> toks(static_cast<size_t>(pp));
        for (auto& t : toks) t = dist(rng);
        int seq = m.new_sequence();
        auto t0 = clock::now();
        m.forward({{seq, toks, false}}, logits);
        double s = std::chrono::duration<double>(clock::now() - t0).count();
        pp_best = std::max(pp_best, pp / s);
        pp_sum += pp / s;
        m.free_sequence(seq);
      }
      if (tg > 0) {
        int seq = m.new_sequence();
        m.forward({{seq, {dist(rng)}, false}}, logits);
        auto t0 = clock::now();
        for (int i = 0; i < tg; i++) m.forward({{seq, {dist(rng)}, false}}, logits);
        double s = std::chrono::duration<double>(clock::now() - t0).count();
        tg_best = std::max(tg_best, tg / s);
        tg_sum += tg / s;
        m.free_sequence(seq);
      }
    }
    std::vector<DepthResult> at;
    for (int64_t depth : depths) {
      int seq = m.new_sequence();
      if (depth_prefill) {
        for (int64_t done = 0; done < depth;) {
          std::vector<int32_t> toks(size_t(std::min<int64_t>(512, depth - done)));
          for (auto& t : toks) t = dist(rng);
          m.forward({{seq, toks, false}}, logits);
          done += int64_t(toks.size());
        }
      } else {
        m.fill_context(seq, depth);
      }
      m.release_workspace();  // workspaceBytes: what decoding at this depth holds
      m.forward({{seq, {dist(rng)}, false}}, logits);  // warm: buffers grown, pages touched
      double best = 0;
      for (int r = 0; r < reps; r++) {
        auto t0 = clock::now();
        for (int i = 0; i < depth_tg; i++) m.forward({{seq, {dist(rng)}, false}}, logits);
        best = std::max(best, depth_tg / std::chrono::duration<double>(clock::now() - t0).count());
      }
      at.push_back({depth, best, m.sequence_length(seq) * m.cache_bytes_per_token(), m.workspace_bytes()});
      m.free_sequence(seq);
    }
    const double pp_mean = pp_sum / reps, tg_mean = tg_sum / reps;
    return [pp, tg, pp_best, tg_best, pp_mean, tg_mean, at, depth_tg](Napi::Env env) -> Napi::Value {
      auto r = Napi::Object::New(env);
      auto a = Napi::Object::New(env);
      a.Set("tokens", pp);
      a.Set("tps", pp_best);
      a.Set("tpsMean", pp_mean);
      auto b = Napi::Object::New(env);
      b.Set("tokens", tg);
      b.Set("tps", tg_best);
      b.Set("tpsMean", tg_mean);
      r.Set("pp", a);
      r.Set("tg", b);
      auto d = Napi::Array::New(env, at.size());
      for (size_t i = 0; i < at.size(); i++) {
        auto e = Napi::Object::New(env);
        e.Set("depth", double(at[i].depth));
        e.Set("tokens", depth_tg);
        e.Set("tps", at[i].tps);
        e.Set("cacheBytes", double(at[i].cache_bytes));
        e.Set("workspaceBytes", double(at[i].workspace_bytes));
        d.Set(uint32_t(i), e);
      }
      r.Set("depths", d);
      return r;
    };
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Napi::Value ModelObject::Unload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!handle) return Napi::Promise::Deferred::New(env).Promise();
  auto h = handle;
  handle.reset();
  h->cancel = true;
  auto* job = new Job(env, h, [h](Model&) -> std::function<Napi::Value(Napi::Env)> {
    h->model.reset();
    return nullptr;
  });
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "loadModel(path, options?, onProgress?) expects a path");
  aha::LoadOptions opts;
  if (info.Length() > 1 && info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    opts.threads = int(num(o, "threads", 0));
    opts.context = int64_t(num(o, "context", 0));
    opts.kv_cache_tokens = int64_t(num(o, "cacheTokens", 0));
    if (o.Has("kvType") && o.Get("kvType").IsString()) {
      std::string k = o.Get("kvType").ToString();
      if (k == "f16") opts.kv_dtype = aha::DType::F16;
      else if (k == "bf16") opts.kv_dtype = aha::DType::BF16;
      else if (k == "f32") opts.kv_dtype = aha::DType::F32;
      else throw Napi::Error::New(env, "kvType must be f16, bf16 or f32, not " + k);
    }
    if (o.Has("mlaAttention") && o.Get("mlaAttention").IsString()) {
      std::string k = o.Get("mlaAttention").ToString();
      if (k == "auto") opts.mla_attention = aha::MlaAttention::Auto;
      else if (k == "absorbed") opts.mla_attention = aha::MlaAttention::Absorbed;
      else if (k == "expanded") opts.mla_attention = aha::MlaAttention::Expanded;
      else throw Napi::Error::New(env, "mlaAttention must be auto, absorbed or expanded, not " + k);
    }
    opts.experts_per_token = int(num(o, "expertsPerToken", 0));
    if (o.Has("fp8As") && o.Get("fp8As").IsString()) {
      std::string k = o.Get("fp8As").ToString();
      if (k == "fp8") opts.fp8_as = aha::DType::FP8_B128;
      else if (k == "bf16") opts.fp8_as = aha::DType::BF16;
      else if (k == "q8_0") opts.fp8_as = aha::DType::Q8_0;
      else if (k == "q4_K") opts.fp8_as = aha::DType::Q4_K;
      else throw Napi::Error::New(env, "fp8As must be fp8, bf16, q8_0 or q4_K, not " + k);
    }
  }
  Napi::Function cb = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  auto d = Napi::Promise::Deferred::New(env);
  auto* w = new LoadWorker(cb, d, info[0].ToString(), opts);
  w->Queue();
  return d.Promise();
}

aha::DType dtype_arg(Napi::Env env, Napi::Value v) {
  aha::DType t;
  if (!v.IsString() || !aha::dtype_from_name(v.ToString().Utf8Value().c_str(), &t))
    throw Napi::Error::New(env, "unknown dtype " + v.ToString().Utf8Value());
  return t;
}

// quantizeRows(type, Float32Array data, rowLength) → Uint8Array of GGUF blocks
Napi::Value QuantizeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  aha::DType t = dtype_arg(env, info[0]);
  if (!aha::can_quantize(t)) throw Napi::Error::New(env, std::string("cannot quantize to ") + aha::dtype_name(t));
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "data must be a Float32Array");
  auto data = info[1].As<Napi::Float32Array>();
  int64_t row = int64_t(info[2].ToNumber().Int64Value());
  int64_t n = int64_t(data.ElementLength());
  const auto& tr = aha::traits(t);
  if (row <= 0 || n % row != 0) throw Napi::Error::New(env, "data length is not a multiple of rowLength");
  if (row % tr.block != 0) throw Napi::Error::New(env, "rowLength " + std::to_string(row) + " is not a multiple of the " + tr.name + " block (" + std::to_string(tr.block) + ")");
  size_t rb = aha::row_bytes(t, row);
  auto out = Napi::Uint8Array::New(env, rb * size_t(n / row));
  for (int64_t r = 0; r < n / row; r++) aha::quantize_row(t, data.Data() + r * row, out.Data() + size_t(r) * rb, row);
  return out;
}

// dequantizeRows(type, Uint8Array bytes, rowLength) → Float32Array
Napi::Value DequantizeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  aha::DType t = dtype_arg(env, info[0]);
  auto bytes = info[1].As<Napi::Uint8Array>();
  int64_t row = int64_t(info[2].ToNumber().Int64Value());
  const auto& tr = aha::traits(t);
  if (row <= 0 || row % tr.block != 0) throw Napi::Error::New(env, "bad rowLength");
  size_t rb = aha::row_bytes(t, row);
  if (bytes.ByteLength() % rb != 0) throw Napi::Error::New(env, "byte length is not a whole number of rows");
  size_t rows = bytes.ByteLength() / rb;
  auto out = Napi::Float32Array::New(env, rows * size_t(row));
  for (size_t r = 0; r < rows; r++) aha::dequantize_row(t, bytes.Data() + r * rb, out.Data() + r * size_t(row), row);
  return out;
}

Napi::Value MeasureBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int threads = info.Length() > 0 && info[0].IsNumber() ? info[0].ToNumber().Int32Value() : 0;
  auto d = Napi::Promise::Deferred::New(env);
  struct W : Napi::AsyncWorker {
    W(Napi::Env e, Napi::Promise::Deferred d, int t) : AsyncWorker(e), d(d), t(t) {}
    void Execute() override { gbs = aha::measure_read_bandwidth(t); }
    void OnOK() override { d.Resolve(Napi::Number::New(Env(), gbs)); }
    Napi::Promise::Deferred d;
    int t;
    double gbs = 0;
  };
  (new W(env, d, threads))->Queue();
  return d.Promise();
}

// lrAt(schedule, lr, step, warmupSteps, totalSteps): transformers' warmup schedules (aha/train.h).
Napi::Value LrAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "lrAt(schedule, lr, step, warmupSteps, totalSteps)");
  for (size_t i = 1; i < 5; i++)
    if (!info[i].IsNumber()) throw Napi::TypeError::New(env, "lrAt(schedule, lr, step, warmupSteps, totalSteps) takes numbers after the schedule");
  try {
    return Napi::Number::New(env, aha::lr_at(aha::lr_schedule_from_name(info[0].As<Napi::String>().Utf8Value()), info[1].ToNumber().DoubleValue(),
                                             info[2].ToNumber().Int64Value(), info[3].ToNumber().Int64Value(), info[4].ToNumber().Int64Value()));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("isa", aha::isa_name(aha::active_isa()));
  o.Set("bestIsa", aha::isa_name(aha::best_isa()));
  o.Set("physicalCores", aha::ThreadPool::physical_cores());
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", ModelObject::Init(env));
  exports.Set("Trainer", TrainerObject::Init(env));
  exports.Set("FullTrainer", FullTrainerObject::Init(env));
  exports.Set("createFullTrainer", Napi::Function::New(env, CreateFullTrainer));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("quantizeRows", Napi::Function::New(env, QuantizeRows));
  exports.Set("dequantizeRows", Napi::Function::New(env, DequantizeRows));
  exports.Set("measureBandwidth", Napi::Function::New(env, MeasureBandwidth));
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("lrAt", Napi::Function::New(env, LrAt));
  return exports;
}

}  // namespace

NODE_API_MODULE(aha, Init)
