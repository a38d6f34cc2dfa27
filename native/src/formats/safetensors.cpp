#include "formats/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "aha/error.h"
#include "core/json.h"
#include "core/mapped_file.h"

namespace aha {

std::vector<SafeTensor> parse_safetensors(const uint8_t* base, size_t size, const std::string& name) {
  if (size < 8) fail_file(name, "truncated: shorter than the 8-byte safetensors header length");
  uint64_t n;
  std::memcpy(&n, base, 8);
  if (n > size - 8) fail_file(name, "truncated or not a safetensors file: header length " + std::to_string(n) + " exceeds the file size " + std::to_string(size));
  if (n < 2 || base[8] != '{') fail_file(name, "not a safetensors file (header is not a JSON object)");
  Json header = Json::parse(std::string_view(reinterpret_cast<const char*>(base + 8), n), name + " header");
  const size_t data_start = 8 + n;
  const size_t data_size = size - data_start;
  std::vector<SafeTensor> out;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto& entry : header.object()) {
    const std::string& key = entry.first;  // not a structured binding: lambdas capture it
    const Json& v = entry.second;
    if (key == "__metadata__") continue;
    auto bad = [&](const std::string& what) { fail_file(name, "tensor '" + key + "': " + what); };
    if (!v.is_object()) bad("entry is not an object");
    const Json* dt = v.find("dtype");
    const Json* shape = v.find("shape");
    const Json* offs = v.find("data_offsets");
    if (!dt || !dt->is_string() || !shape || !shape->is_array() || !offs || !offs->is_array() || offs->array().size() != 2)
      bad("entry needs dtype, shape and data_offsets [begin, end]");
    SafeTensor t;
    t.name = key;
    t.file = name;
    const std::string& d = dt->string();
    size_t esize;
    if (d == "F32") t.dtype = DType::F32, esize = 4;
    else if (d == "F16") t.dtype = DType::F16, esize = 2;
    else if (d == "BF16") t.dtype = DType::BF16, esize = 2;
    else if (d == "F8_E4M3") t.dtype = DType::F8_E4M3, esize = 1;  // DeepSeek-V3's block-scaled weights
    else bad("unsupported dtype " + d + " (F32, F16, BF16 and F8_E4M3 are read)");
    int64_t count = 1;
    auto& dims = shape->array();
    if (dims.size() > 4) bad("more than 4 dimensions");
    for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
      if (!it->is_number()) bad("shape is not a list of integers");
      int64_t e;
      try {
        e = it->integer();
      } catch (const Error&) {
        bad("shape is not a list of integers");
      }
      if (e <= 0 || e > (int64_t(1) << 40) || count > (int64_t(1) << 40) / e) bad("absurd dimension " + std::to_string(e));
      t.ne.push_back(e);
      count *= e;
    }
    if (t.ne.empty()) t.ne.push_back(1);
    int64_t b = 0, e = 0;
    try {
      b = offs->array()[0].integer();
      e = offs->array()[1].integer();
    } catch (const Error&) {
      bad("data_offsets are not integers");
    }
    if (b < 0 || e < b) bad("bad data_offsets");
    if (size_t(e) > data_size) bad("data [" + std::to_string(b) + ", " + std::to_string(e) + ") lies outside the file's data (" + std::to_string(data_size) + " bytes); the file is truncated or corrupt");
    if (size_t(e - b) != size_t(count) * esize)
      bad("shape and dtype need " + std::to_string(size_t(count) * esize) + " bytes but data_offsets span " + std::to_string(e - b));
    t.bytes = size_t(e - b);
    t.data = base + data_start + b;
    ranges.push_back({size_t(b), size_t(e)});
    out.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    if (ranges[i].first < ranges[i - 1].second) fail_file(name, "tensors overlap in the data section");
  return out;
}

SafetensorsModel::SafetensorsModel(const std::string& dir) {
  std::string single = dir + "/model.safetensors";
  std::string index = dir + "/model.safetensors.index.json";
  std::vector<std::string> shards;
  std::map<std::string, std::string> weight_map;
  if (is_regular_file(index)) {
    Json j = Json::parse(read_text_file(index), index);
    const Json* wm = j.find("weight_map");
    if (!wm || !wm->is_object()) fail_file(index, "no \"weight_map\" object");
    std::set<std::string> uniq;
    for (auto& [k, v] : wm->object()) {
      if (!v.is_string()) fail_file(index, "weight_map entry '" + k + "' is not a file name");
      if (v.string().find('/') != std::string::npos || v.string().find("..") != std::string::npos)
        fail_file(index, "weight_map entry '" + k + "' points outside the folder");
      weight_map[k] = v.string();
      if (uniq.insert(v.string()).second) shards.push_back(v.string());
    }
  } else if (is_regular_file(single)) {
    shards.push_back("model.safetensors");
  } else {
    fail_file(dir, "no model.safetensors or model.safetensors.index.json");
  }
  std::set<std::string> names;
  for (auto& s : shards) {
    auto f = std::make_shared<MappedFile>(dir + "/" + s);
    for (auto& t : parse_safetensors(f->data(), f->size(), f->path())) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end() || it->second != s) continue;  // the index decides which shard owns a tensor
      }
      if (!names.insert(t.name).second) fail_file(f->path(), "tensor '" + t.name + "' appears in more than one shard");
      tensors_.push_back(std::move(t));
    }
    files_.push_back(f);
  }
  for (auto& [k, s] : weight_map)
    if (!names.count(k)) fail_file(dir + "/" + s, "tensor '" + k + "' listed in the index is missing from the shard");
}

}  // namespace aha
