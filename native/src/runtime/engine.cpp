// The Model API: weights + paged KV cache + sequences + the forward of the model's family,
// and generation (batched decoding of several requests, prompts shared through forks).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <list>
#include <map>

#include "aha/error.h"
#include "aha/kernels.h"
#include "aha/model.h"
#include "aha/train.h"
#include "models/deepseek.h"
#include "models/dense.h"
#include "models/loader.h"
#include "runtime/kv_cache.h"
#include "runtime/mla_cache.h"
#include "runtime/sampler.h"
#include "train/dense_lora.h"

namespace aha {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Stop: return "stop";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Context: return "context";
  }
  return "?";
}

class Engine {
 public:
  Engine(const std::string& path, const LoadOptions& o) {
    ws = load_weights(path, o.progress, o.fp8_as);
    if (o.progress) o.progress({0.96, "binding weights"});
    const ModelConfig& c = ws->config;
    const bool mla = c.arch == Arch::DeepseekV2 || c.arch == Arch::DeepseekV3;
    if (mla) deepseek = std::make_unique<DeepseekModel>(*ws, o.experts_per_token);
    else model = std::make_unique<DenseModel>(*ws);
    mla_attention = o.mla_attention;
    context = o.context > 0 ? o.context : std::min<int64_t>(c.max_position_embeddings, 4096);
    if (context > c.max_position_embeddings) context = c.max_position_embeddings;
    int64_t cache_tokens = o.kv_cache_tokens > 0 ? o.kv_cache_tokens : 2 * context;
    const int64_t bs = 16;
    const DType kv = o.kv_dtype.value_or(mla ? DType::BF16 : DType::F16);
    if (!is_kv_dtype(kv)) throw Error(std::string("KV cache dtype must be f16, bf16 or f32, not ") + dtype_name(kv));
    const int64_t n_blocks = (cache_tokens + bs - 1) / bs;
    if (mla) {
      // The MTP module, when loaded, keeps its own latents in one more layer of the cache.
      mla_cache = std::make_unique<MlaCache>(c.num_hidden_layers + (deepseek->has_mtp() ? 1 : 0), c.deepseek.kv_lora_rank, c.deepseek.qk_rope_head_dim,
                                             kv, n_blocks, bs);
      cache = mla_cache.get();
    } else {
      kv_cache = std::make_unique<KvCache>(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, kv, n_blocks, bs);
      cache = kv_cache.get();
    }
    pool = std::make_unique<ThreadPool>(o.threads > 0 ? o.threads : ThreadPool::physical_cores());
    if (o.progress) o.progress({0.97, "packing weights"});
    ws->pack_for_cpu(*pool);
    if (o.progress) o.progress({1.0, "ready"});
  }

  std::unique_ptr<WeightStore> ws;
  // One family is loaded: DenseModel with the KV cache, or DeepseekModel with the MLA latent cache.
  std::unique_ptr<DenseModel> model;
  std::unique_ptr<KvCache> kv_cache;
  DenseWorkspace work;
  std::unique_ptr<DeepseekModel> deepseek;
  std::unique_ptr<MlaCache> mla_cache;
  DeepseekWorkspace deepseek_work;
  MlaAttention mla_attention = MlaAttention::Auto;
  PagedBlocks* cache = nullptr;  // the loaded family's cache
  std::unique_ptr<ThreadPool> pool;
  int64_t context = 0;
  std::vector<Sequence> seqs;
  DumpHook dump;
  std::vector<float>* capture_hidden = nullptr;  // set around a forward whose hidden states MTP drafting reads
  // LoRA adapters by id: as loaded (HF row order) and as the forward applies them.
  struct LoadedAdapter {
    AdapterInfo info;
    LoraAdapter adapter;
    LoraSet<float> engine_weights;  // q/k rows of B in the weights' order (train::to_engine_order)
  };
  std::map<int, LoadedAdapter> adapters;
  int next_adapter = 1;
  // Finished generations kept for reuse by a later prompt with the same prefix (LRU, most recent last).
  std::list<int> prefix_cache;
  static constexpr size_t kPrefixCacheEntries = 4;

  Sequence& seq(int id) {
    if (id < 0 || size_t(id) >= seqs.size() || !seqs[size_t(id)].live) throw Error("no sequence " + std::to_string(id));
    return seqs[size_t(id)];
  }

  LoadedAdapter& loaded_adapter(int id) {
    auto it = adapters.find(id);
    if (it == adapters.end()) throw Error("no LoRA adapter " + std::to_string(id) + " is loaded");
    return it->second;
  }

  int add_adapter(const LoraAdapter& a, const std::string& name, const std::string& path) {
    const ModelConfig& c = ws->config;
    if (a.weights().n_layers != c.num_hidden_layers)
      throw Error("the adapter has " + std::to_string(a.weights().n_layers) + " layers, the model " + std::to_string(c.num_hidden_layers));
    const int id = next_adapter++;
    LoadedAdapter& L = adapters[id];
    L.adapter = a;
    L.info.id = id;
    L.info.name = name.empty() ? (path.empty() ? "adapter-" + std::to_string(id) : path.substr(path.find_last_of('/') + 1)) : name;
    L.info.path = path;
    L.info.rank = a.config().rank;
    L.info.alpha = a.config().alpha;
    L.info.scale = a.scale();
    L.info.use_rslora = a.config().use_rslora;
    L.info.target_modules = a.config().target_modules;
    L.engine_weights = a.weights();
    train::to_engine_order(L.engine_weights, c);
    return id;
  }

  // Cached prefixes are only reused by requests with the adapter they were computed with.
  void drop_cached_prefixes(int adapter) {
    for (int id : std::vector<int>(prefix_cache.begin(), prefix_cache.end()))
      if (seqs[size_t(id)].adapter == adapter) free_sequence(id);
  }

  void update_adapter(int id, const LoraAdapter& a) {
    LoadedAdapter& L = loaded_adapter(id);
    const LoraConfig &was = L.adapter.config(), &now = a.config();
    if (now.rank != was.rank || now.target_modules != was.target_modules || a.weights().n_layers != L.adapter.weights().n_layers)
      throw Error("update_adapter: the new weights have another rank or other target modules than adapter " + std::to_string(id));
    drop_cached_prefixes(id);
    L.adapter = a;
    L.info.alpha = now.alpha;
    L.info.scale = a.scale();
    L.info.use_rslora = now.use_rslora;
    L.info.version++;
    L.engine_weights = a.weights();
    train::to_engine_order(L.engine_weights, ws->config);
  }

  void remove_adapter(int id) {
    loaded_adapter(id);
    drop_cached_prefixes(id);
    for (size_t i = 0; i < seqs.size(); i++)
      if (seqs[i].live && seqs[i].adapter == id)
        throw Error("LoRA adapter " + std::to_string(id) + " is in use by sequence " + std::to_string(i));
    adapters.erase(id);
  }

  int new_sequence(int adapter = 0) {
    if (adapter != 0) loaded_adapter(adapter);
    for (size_t i = 0; i < seqs.size(); i++)
      if (!seqs[i].live) {
        seqs[i] = Sequence{};
        seqs[i].live = true;
        seqs[i].adapter = adapter;
        return int(i);
      }
    seqs.push_back(Sequence{});
    seqs.back().live = true;
    seqs.back().adapter = adapter;
    return int(seqs.size() - 1);
  }

  int fork(int src) {
    int id = new_sequence(seq(src).adapter);
    Sequence& s = seq(src);
    Sequence& d = seqs[size_t(id)];
    d.tokens = s.tokens;
    d.blocks = s.blocks;
    for (int32_t b : d.blocks) cache->retain(b);
    return id;
  }

  void free_sequence(int id) {
    Sequence& s = seq(id);
    for (int32_t b : s.blocks) cache->release(b);
    s = Sequence{};
    prefix_cache.remove(id);
  }

  void truncate(int id, int64_t n) {
    Sequence& s = seq(id);
    if (n < 0 || n > int64_t(s.tokens.size())) throw Error("cannot truncate a sequence of " + std::to_string(s.tokens.size()) + " tokens to " + std::to_string(n));
    s.tokens.resize(size_t(n));
    size_t keep = size_t((n + cache->block_size() - 1) / cache->block_size());
    while (s.blocks.size() > keep) {
      cache->release(s.blocks.back());
      s.blocks.pop_back();
    }
  }

  int32_t alloc_block() {
    // Evict cached prefixes (oldest first) before giving up.
    for (;;) {
      if (cache->free_blocks() > 0 || prefix_cache.empty()) return cache->alloc();
      int victim = prefix_cache.front();
      free_sequence(victim);
    }
  }

  // Makes room for n more tokens: new blocks, and a private copy of a shared last block.
  void reserve(Sequence& s, int64_t n) {
    const int64_t bs = cache->block_size();
    const int64_t len = int64_t(s.tokens.size());
    if (len % bs != 0 && !s.blocks.empty() && cache->refcount(s.blocks.back()) > 1) {
      int32_t fresh = alloc_block();
      cache->copy_block(fresh, s.blocks.back());
      cache->release(s.blocks.back());
      s.blocks.back() = fresh;
    }
    while (int64_t(s.blocks.size()) * bs < len + n) s.blocks.push_back(alloc_block());
  }

  void forward(const std::vector<Model::BatchItem>& items, std::vector<float>& logits) {
    std::vector<int> used;
    for (auto& it : items) {
      Sequence& s = seq(it.seq);
      if (std::find(used.begin(), used.end(), it.seq) != used.end()) throw Error("sequence " + std::to_string(it.seq) + " appears twice in one batch");
      used.push_back(it.seq);
      if (it.tokens.empty()) throw Error("a batch item has no tokens");
      if (int64_t(s.tokens.size() + it.tokens.size()) > context)
        throw Error("prompt of " + std::to_string(s.tokens.size() + it.tokens.size()) + " tokens is longer than the context (" +
                    std::to_string(context) + " tokens)");
      for (int32_t id : it.tokens)
        if (id < 0 || id >= ws->config.vocab_size)
          throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(ws->config.vocab_size - 1) + ")");
    }
    for (auto& it : items) reserve(seq(it.seq), int64_t(it.tokens.size()));
    // One pass per adapter among the items (usually one); logits rows keep the items' order.
    std::vector<int> groups;
    for (auto& it : items)
      if (std::find(groups.begin(), groups.end(), seq(it.seq).adapter) == groups.end()) groups.push_back(seq(it.seq).adapter);
    const int64_t V = ws->config.vocab_size;
    std::vector<size_t> first_row(items.size());
    size_t rows = 0;
    for (size_t i = 0; i < items.size(); i++) first_row[i] = rows, rows += items[i].all_logits ? items[i].tokens.size() : 1;
    logits.resize(rows * size_t(V));
    std::vector<float> group_logits;
    for (int adapter : groups) {
      ForwardBatch b;
      b.hidden = capture_hidden;
      if (adapter != 0) {
        LoadedAdapter& L = loaded_adapter(adapter);
        b.lora = &L.engine_weights;
        b.lora_scale = L.info.scale;
      }
      std::vector<size_t> members;
      for (size_t i = 0; i < items.size(); i++) {
        const auto& it = items[i];
        Sequence& s = seq(it.seq);
        if (s.adapter != adapter) continue;
        members.push_back(i);
        const int64_t start = int64_t(s.tokens.size());
        for (size_t j = 0; j < it.tokens.size(); j++) {
          if (it.all_logits || j + 1 == it.tokens.size()) b.logit_rows.push_back(int64_t(b.tokens.size()));
          b.tokens.push_back(it.tokens[j]);
          b.pos.push_back(start + int64_t(j));
          b.blocks.push_back(s.blocks.data());
        }
      }
      float* out = logits.data();
      if (groups.size() > 1) {
        group_logits.resize(b.logit_rows.size() * size_t(V));
        out = group_logits.data();
      }
      if (deepseek) deepseek->forward(b, *mla_cache, *pool, deepseek_work, out, mla_attention, dump ? &dump : nullptr);
      else model->forward(b, *kv_cache, *pool, work, out, dump ? &dump : nullptr);
      if (groups.size() > 1) {
        size_t r = 0;
        for (size_t i : members) {
          const size_t n = items[i].all_logits ? items[i].tokens.size() : 1;
          std::copy(group_logits.begin() + int64_t(r * size_t(V)), group_logits.begin() + int64_t((r + n) * size_t(V)),
                    logits.begin() + int64_t(first_row[i] * size_t(V)));
          r += n;
        }
      }
    }
    for (auto& it : items) {
      Sequence& s = seq(it.seq);
      s.tokens.insert(s.tokens.end(), it.tokens.begin(), it.tokens.end());
    }
  }

  void fill_context(int id, int64_t n, uint64_t seed) {
    Sequence& s = seq(id);
    if (n < 0) throw Error("fill_context: negative count");
    const int64_t start = int64_t(s.tokens.size());
    if (start + n > context)
      throw Error("cannot fill " + std::to_string(n) + " positions: the context holds " + std::to_string(context) + " tokens");
    reserve(s, n);
    const int64_t bs = cache->block_size();
    const int64_t n_layers = mla_cache ? mla_cache->n_layers() : ws->config.num_hidden_layers;
    const int64_t width = mla_cache ? mla_cache->kv_lora_rank() + mla_cache->qk_rope_head_dim() : kv_cache->n_kv_heads() * kv_cache->head_dim();
    pool->parallel_for(n_layers, [&](int64_t l0, int64_t l1, int) {
      std::vector<float> row(static_cast<size_t>(width)), row_v(mla_cache ? 0 : size_t(width));
      for (int64_t l = l0; l < l1; l++) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ull + uint64_t(l) * 0xD1B54A32D192ED03ull + 1;
        auto next = [&] {  // uniform on (-√3, √3): unit variance
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          return float((double(x >> 11) * 0x1.0p-53 * 2.0 - 1.0) * 1.7320508075688772);
        };
        for (int64_t p = start; p < start + n; p++) {
          const int32_t blk = s.blocks[size_t(p / bs)];
          for (auto& v : row) v = next();
          if (mla_cache) {
            mla_cache->write(l, blk, p % bs, row.data(), row.data() + mla_cache->kv_lora_rank());
          } else {
            for (auto& v : row_v) v = next();
            kv_cache->write(l, blk, p % bs, row.data(), row_v.data());
          }
        }
      }
    });
    s.tokens.insert(s.tokens.end(), size_t(n), 0);
  }

  // A sequence holding the longest cached prefix of `prompt` (at most prompt.size()-1 tokens, so
  // at least one token is left to compute logits from), or a fresh one.
  int sequence_for_prompt(const std::vector<int32_t>& prompt, int adapter, int64_t* cached) {
    int best = -1;
    size_t best_len = 0;
    for (int id : prefix_cache) {
      if (seqs[size_t(id)].adapter != adapter) continue;
      const auto& t = seqs[size_t(id)].tokens;
      size_t n = 0;
      while (n < t.size() && n + 1 < prompt.size() && t[n] == prompt[n]) n++;
      if (n > best_len) best_len = n, best = id;
    }
    *cached = int64_t(best_len);
    if (best < 0) return new_sequence(adapter);
    int id = fork(best);
    truncate(id, int64_t(best_len));
    return id;
  }

  std::vector<GenerateResult> generate(const std::vector<GenerateRequest>& reqs, const std::function<bool(size_t, int32_t)>& on_token,
                                       const std::atomic<bool>* cancel) {
    using clock = std::chrono::steady_clock;
    const int64_t V = ws->config.vocab_size;
    std::vector<GenerateResult> res(reqs.size());
    for (auto& r : reqs) {
      if (r.prompt.empty()) throw Error("the prompt is empty");
      if (int64_t(r.prompt.size()) > context)
        throw Error("prompt of " + std::to_string(r.prompt.size()) + " tokens is longer than the context (" + std::to_string(context) + " tokens)");
      if (r.max_tokens < 0) throw Error("max_tokens must be ≥ 0");
      if (r.adapter != 0) loaded_adapter(r.adapter);
    }
    std::vector<Sampler> samplers;
    for (auto& r : reqs) samplers.emplace_back(r.sampler);
    std::vector<int> ids(reqs.size(), -1);
    std::vector<std::vector<float>> last(reqs.size());
    std::vector<bool> active(reqs.size(), true);

    auto t0 = clock::now();
    try {
      // Prefill each distinct (adapter, prompt) once; requests with the same pair fork it (shared blocks).
      std::map<std::pair<int, std::vector<int32_t>>, size_t> first_with;
      std::vector<Model::BatchItem> batch;
      std::vector<size_t> owners;
      for (size_t i = 0; i < reqs.size(); i++) {
        auto [it, fresh] = first_with.emplace(std::pair{reqs[i].adapter, reqs[i].prompt}, i);
        if (!fresh) continue;
        int64_t cached = 0;
        ids[i] = sequence_for_prompt(reqs[i].prompt, reqs[i].adapter, &cached);
        res[i].cached_tokens = cached;
        batch.push_back({ids[i], std::vector<int32_t>(reqs[i].prompt.begin() + cached, reqs[i].prompt.end()), false});
        owners.push_back(i);
      }
      std::vector<float> logits;
      forward(batch, logits);
      for (size_t j = 0; j < owners.size(); j++) last[owners[j]].assign(logits.begin() + int64_t(j) * V, logits.begin() + int64_t(j + 1) * V);
      for (size_t i = 0; i < reqs.size(); i++) {
        res[i].prompt_tokens = int64_t(reqs[i].prompt.size());
        if (ids[i] >= 0) continue;
        size_t src = first_with[std::pair{reqs[i].adapter, reqs[i].prompt}];
        ids[i] = fork(ids[src]);
        last[i] = last[src];
        res[i].cached_tokens = int64_t(reqs[i].prompt.size());
      }
      double prefill = std::chrono::duration<double>(clock::now() - t0).count();
      for (auto& r : res) r.prefill_seconds = prefill;

      auto t1 = clock::now();
      for (;;) {
        std::vector<Model::BatchItem> step;
        std::vector<size_t> who;
        for (size_t i = 0; i < reqs.size(); i++) {
          if (!active[i]) continue;
          const GenerateRequest& r = reqs[i];
          Sequence& s = seq(ids[i]);
          if (cancel && cancel->load()) {
            res[i].finish = FinishReason::Cancelled;
            active[i] = false;
            continue;
          }
          if (int64_t(res[i].tokens.size()) >= r.max_tokens) {
            res[i].finish = FinishReason::Length;
            active[i] = false;
            continue;
          }
          int32_t tok = samplers[i].sample(last[i].data(), V, s.tokens);
          res[i].tokens.push_back(tok);
          bool eos = !r.ignore_eos && std::find(ws->config.eos_token_ids.begin(), ws->config.eos_token_ids.end(), tok) != ws->config.eos_token_ids.end();
          bool stop = eos || std::find(r.stop_tokens.begin(), r.stop_tokens.end(), tok) != r.stop_tokens.end();
          bool keep = on_token ? on_token(i, tok) : true;
          if (stop || !keep) {
            res[i].finish = stop ? FinishReason::Stop : FinishReason::Cancelled;
            active[i] = false;
            continue;
          }
          if (int64_t(res[i].tokens.size()) >= r.max_tokens) {
            res[i].finish = FinishReason::Length;
            active[i] = false;
            continue;
          }
          if (int64_t(s.tokens.size()) + 1 > context) {
            res[i].finish = FinishReason::Context;
            active[i] = false;
            continue;
          }
          step.push_back({ids[i], {tok}, false});
          who.push_back(i);
        }
        if (step.empty()) break;
        forward(step, logits);
        for (size_t j = 0; j < who.size(); j++) last[who[j]].assign(logits.begin() + int64_t(j) * V, logits.begin() + int64_t(j + 1) * V);
      }
      double decode = std::chrono::duration<double>(clock::now() - t1).count();
      for (auto& r : res) r.decode_seconds = decode;
    } catch (...) {
      for (int id : ids)
        if (id >= 0 && seqs[size_t(id)].live) free_sequence(id);
      throw;
    }
    // Keep finished sequences as reusable prefixes (their last sampled token was never forwarded,
    // so a sequence holds exactly the tokens whose K/V are in the cache).
    for (size_t i = 0; i < ids.size(); i++) {
      prefix_cache.push_back(ids[i]);
      while (prefix_cache.size() > kPrefixCacheEntries) free_sequence(prefix_cache.front());
    }
    return res;
  }

  // Greedy decoding with DeepSeek-V3's MTP module drafting one token ahead: the main model checks
  // each draft in the forward that also takes the next step (two tokens in, two logits rows out),
  // so a kept draft yields two tokens for one forward; a rejected one is cut from the cache. The
  // tokens are those plain greedy decoding gives. The MTP module runs once at every position i of
  // the sequence with the main model's hidden state there and the token at i + 1 (as vLLM lays it
  // out), so its own cache layer is complete where it attends.
  GenerateResult generate_mtp(const GenerateRequest& r, const std::function<bool(int32_t)>& on_token, const std::atomic<bool>* cancel,
                              const std::function<int32_t(size_t, int32_t)>* draft_hook) {
    using clock = std::chrono::steady_clock;
    if (!deepseek || !deepseek->has_mtp())
      throw Error("--mtp needs a model with its multi-token-prediction module (DeepSeek-V3: num_nextn_predict_layers ≥ 1 and the weights of layer " +
                  std::to_string(ws->config.num_hidden_layers) + ")");
    if (r.prompt.empty()) throw Error("the prompt is empty");
    if (r.adapter != 0) throw Error("MTP drafting runs without an adapter");
    if (r.sampler.temperature > 0) throw Error("MTP drafting is greedy: use temperature 0");
    if (int64_t(r.prompt.size()) + 2 > context)
      throw Error("prompt of " + std::to_string(r.prompt.size()) + " tokens leaves no room in the context (" + std::to_string(context) + " tokens)");
    const int64_t V = ws->config.vocab_size, H = ws->config.hidden_size;
    auto argmax = [&](const float* row) { return int32_t(std::max_element(row, row + V) - row); };
    GenerateResult res;
    res.prompt_tokens = int64_t(r.prompt.size());
    const int id = new_sequence(0);
    std::vector<float> logits, hidden, mtp_logits;
    // MTP inputs not yet run, at positions mtp_pos..: the hidden state there and the token after it.
    std::vector<int32_t> mtp_tok;
    std::vector<float> mtp_h;
    int64_t mtp_pos = 0;
    auto t0 = clock::now();
    try {
      capture_hidden = &hidden;
      forward({{id, r.prompt, false}}, logits);
      capture_hidden = nullptr;
      res.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
      for (size_t i = 1; i < r.prompt.size(); i++) mtp_tok.push_back(r.prompt[i]);
      mtp_h.assign(hidden.begin(), hidden.end() - H);  // h_0 .. h_{P−2}
      std::vector<float> h_last(hidden.end() - H, hidden.end());
      int32_t next = argmax(logits.data());
      auto t1 = clock::now();
      // Emits a token; false when generation ends with it.
      auto emit = [&](int32_t tok) {
        res.tokens.push_back(tok);
        const bool eos = !r.ignore_eos && std::find(ws->config.eos_token_ids.begin(), ws->config.eos_token_ids.end(), tok) != ws->config.eos_token_ids.end();
        const bool stop = eos || std::find(r.stop_tokens.begin(), r.stop_tokens.end(), tok) != r.stop_tokens.end();
        const bool keep = on_token ? on_token(tok) : true;
        if (stop || !keep) {
          res.finish = stop ? FinishReason::Stop : FinishReason::Cancelled;
          return false;
        }
        if (int64_t(res.tokens.size()) >= r.max_tokens) {
          res.finish = FinishReason::Length;
          return false;
        }
        return true;
      };
      bool going = r.max_tokens > 0 && emit(next);
      if (r.max_tokens == 0) res.finish = FinishReason::Length;
      while (going) {
        if (cancel && cancel->load()) {
          res.finish = FinishReason::Cancelled;
          break;
        }
        Sequence& s = seq(id);
        const int64_t len = int64_t(s.tokens.size());  // the cache holds tokens 0..len−1; `next` is at len
        if (len + 2 > context) {
          if (len + 1 > context) {
            res.finish = FinishReason::Context;
            break;
          }
          // one position left: a plain step
          forward({{id, {next}, false}}, logits);
          next = argmax(logits.data());
          going = emit(next);
          if (going) res.finish = FinishReason::Context, going = false;
          break;
        }
        // Draft: the MTP module over its pending positions, the last (len − 1) pairing the last
        // cached token's hidden state with `next`.
        mtp_tok.push_back(next);
        mtp_h.insert(mtp_h.end(), h_last.begin(), h_last.end());
        ForwardBatch mb;
        for (size_t i = 0; i < mtp_tok.size(); i++) {
          mb.tokens.push_back(mtp_tok[i]);
          mb.pos.push_back(mtp_pos + int64_t(i));
          mb.blocks.push_back(s.blocks.data());
        }
        mb.logit_rows = {int64_t(mtp_tok.size()) - 1};
        mtp_logits.resize(size_t(V));
        deepseek->mtp_forward(mb, mtp_h.data(), *mla_cache, *pool, deepseek_work, mtp_logits.data());
        mtp_pos += int64_t(mtp_tok.size());
        mtp_tok.clear();
        mtp_h.clear();
        int32_t draft = argmax(mtp_logits.data());
        if (draft_hook) draft = (*draft_hook)(res.tokens.size(), draft);  // tests: drafts of a known quality
        res.drafted++;
        // Verify: the main model on [next, draft]; its first row is the truth for draft's place.
        capture_hidden = &hidden;
        forward({{id, {next, draft}, true}}, logits);
        capture_hidden = nullptr;
        const int32_t truth = argmax(logits.data());
        if (truth == draft) {
          res.accepted++;
          const int32_t after = argmax(logits.data() + V);
          // pending MTP input at position len: next's hidden state, and the draft after it
          mtp_tok.push_back(draft);
          mtp_h.assign(hidden.begin(), hidden.begin() + H);
          h_last.assign(hidden.begin() + H, hidden.begin() + 2 * H);
          next = after;
          going = emit(truth) && emit(after);
        } else {
          truncate(id, len + 1);  // the draft's K/V go
          h_last.assign(hidden.begin(), hidden.begin() + H);
          next = truth;
          going = emit(truth);
        }
      }
      res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
    } catch (...) {
      capture_hidden = nullptr;
      free_sequence(id);
      throw;
    }
    free_sequence(id);
    return res;
  }
};

Model::Model() = default;
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->e_ = std::make_unique<Engine>(path, opts);
  return m;
}

const ModelConfig& Model::config() const { return e_->ws->config; }
int Model::threads() const { return e_->pool->size(); }
void Model::set_threads(int n) { e_->pool = std::make_unique<ThreadPool>(n > 0 ? n : ThreadPool::physical_cores()); }
int Model::new_sequence(int adapter) { return e_->new_sequence(adapter); }
int Model::sequence_adapter(int s) const { return e_->seq(s).adapter; }
int Model::load_adapter(const std::string& dir, const std::string& name) {
  return e_->add_adapter(LoraAdapter::load(dir, e_->ws->config), name, dir);
}
int Model::add_adapter(const LoraAdapter& a, const std::string& name) { return e_->add_adapter(a, name, ""); }
void Model::update_adapter(int id, const LoraAdapter& a) { e_->update_adapter(id, a); }
void Model::remove_adapter(int id) { e_->remove_adapter(id); }
const LoraAdapter& Model::adapter(int id) const { return e_->loaded_adapter(id).adapter; }
std::vector<AdapterInfo> Model::adapters() const {
  std::vector<AdapterInfo> out;
  for (auto& [id, a] : e_->adapters) out.push_back(a.info);
  return out;
}
int Model::fork_sequence(int s) { return e_->fork(s); }
void Model::free_sequence(int s) { e_->free_sequence(s); }
void Model::truncate_sequence(int s, int64_t n) { e_->truncate(s, n); }
int64_t Model::sequence_length(int s) const { return int64_t(e_->seq(s).tokens.size()); }
const std::vector<int32_t>& Model::sequence_tokens(int s) const { return e_->seq(s).tokens; }
int64_t Model::free_cache_tokens() const { return e_->cache->free_blocks() * e_->cache->block_size(); }
int64_t Model::cache_bytes_per_token() const {
  return e_->mla_cache ? e_->mla_cache->bytes_per_token() : e_->kv_cache->bytes_per_token();
}
void Model::fill_context(int seq, int64_t n, uint64_t seed) { e_->fill_context(seq, n, seed); }
void Model::release_workspace() {
  e_->deepseek_work = DeepseekWorkspace{};
  e_->work = DenseWorkspace{};
}
size_t Model::workspace_bytes() const { return e_->deepseek ? e_->deepseek_work.bytes() : e_->work.bytes(); }
void Model::forward(const std::vector<BatchItem>& items, std::vector<float>& logits) { e_->forward(items, logits); }
void Model::set_dump_hook(DumpHook hook) { e_->dump = std::move(hook); }
void Model::set_mla_attention(MlaAttention mode) { e_->mla_attention = mode; }
const DenseModel& Model::dense_model() const {
  if (!e_->model) throw Error(std::string("the ") + arch_name(e_->ws->config.arch) + " family has no dense model");
  return *e_->model;
}
const DenseModel* Model::dense_model_if() const { return e_->model.get(); }
const DeepseekModel* Model::deepseek_model_if() const { return e_->deepseek.get(); }
ThreadPool& Model::thread_pool() { return *e_->pool; }

GenerateResult Model::generate_mtp(const GenerateRequest& req, const std::function<bool(int32_t)>& on_token, const std::atomic<bool>* cancel,
                                   const std::function<int32_t(size_t, int32_t)>* draft_hook) {
  return e_->generate_mtp(req, on_token, cancel, draft_hook);
}

std::vector<GenerateResult> Model::generate(const std::vector<GenerateRequest>& reqs, const std::function<bool(size_t, int32_t)>& on_token,
                                            const std::atomic<bool>* cancel) {
  return e_->generate(reqs, on_token, cancel);
}

ModelInfo Model::info() const {
  const WeightStore& ws = *e_->ws;
  ModelInfo i;
  i.path = ws.path;
  i.format = ws.format;
  i.architecture = arch_name(ws.config.arch);
  i.name = ws.name;
  for (auto& [n, t] : ws.tensors) {
    i.parameters += t.numel();
    i.dtype_mix[dtype_name(t.dtype)] += t.numel();
    i.weight_bytes += int64_t(t.row_bytes) * t.rows();
    int64_t bytes = int64_t(t.row_bytes) * t.rows();
    // MoE: a routed expert's weights are read by a decode step only when the gate picks it, so
    // they count with the share top_k / n_routed_experts (the expected active bytes per token).
    if (e_->deepseek && n.find("_exps.") != std::string::npos)
      bytes = bytes * e_->deepseek->experts_per_token() / ws.config.deepseek.n_routed_experts;
    if (n != "token_embd.weight" || ws.config.tie_word_embeddings) i.decode_bytes += bytes;
  }
  i.context_length = ws.config.max_position_embeddings;
  i.context = e_->context;
  i.kv_bytes = e_->cache->bytes();
  i.kv_dtype = e_->mla_cache ? e_->mla_cache->dtype() : e_->kv_cache->dtype();
  i.vocab_size = ws.config.vocab_size;
  i.config = ws.config;
  return i;
}

}  // namespace aha
