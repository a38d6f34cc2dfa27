#include "formats/gguf.h"

#include <cstring>

#include "aha/error.h"

namespace aha {

namespace {

// Upper bounds that no real file reaches; past them the header is corrupt.
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxKeys = 1u << 20;
constexpr uint64_t kMaxString = 1ull << 30;
constexpr uint32_t kMaxDims = 4;
constexpr int64_t kMaxDim = int64_t(1) << 40;

class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& name) : base_(base), size_(size), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const { fail_file(name_, what); }

  void need(uint64_t n, const char* what) {
    if (n > size_ - pos_) fail(std::string("truncated: ") + what + " at byte " + std::to_string(pos_) + " ends past the end of the file (" + std::to_string(size_) + " bytes)");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t n = read<uint64_t>(what);
    if (n > kMaxString) fail(std::string(what) + ": absurd string length " + std::to_string(n));
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return s;
  }
  void skip(uint64_t n, const char* what) {
    need(n, what);
    pos_ += n;
  }
  size_t pos() const { return pos_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* base_;
  size_t size_;
  const std::string& name_;
  size_t pos_ = 0;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

void read_scalar(Cursor& c, GgufType t, GgufValue& v, const char* what) {
  switch (t) {
    case GgufType::U8: v.u = c.read<uint8_t>(what); break;
    case GgufType::I8: v.i = c.read<int8_t>(what); break;
    case GgufType::U16: v.u = c.read<uint16_t>(what); break;
    case GgufType::I16: v.i = c.read<int16_t>(what); break;
    case GgufType::U32: v.u = c.read<uint32_t>(what); break;
    case GgufType::I32: v.i = c.read<int32_t>(what); break;
    case GgufType::F32: v.f = c.read<float>(what); break;
    case GgufType::BOOL: {
      uint8_t b = c.read<uint8_t>(what);
      if (b > 1) c.fail(std::string(what) + ": bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.u = b;
      break;
    }
    case GgufType::U64: v.u = c.read<uint64_t>(what); break;
    case GgufType::I64: v.i = c.read<int64_t>(what); break;
    case GgufType::F64: v.f = c.read<double>(what); break;
    default: c.fail(std::string(what) + ": not a scalar type");
  }
}

void read_value(Cursor& c, GgufType t, GgufValue& v, const std::string& key, int depth) {
  v.type = t;
  if (t == GgufType::STRING) {
    v.s = c.read_string(key.c_str());
  } else if (t == GgufType::ARRAY) {
    if (depth > 8) c.fail("metadata '" + key + "': arrays nested too deep");
    uint32_t it = c.read<uint32_t>(key.c_str());
    if (it > uint32_t(GgufType::F64)) c.fail("metadata '" + key + "': unknown array item type " + std::to_string(it));
    v.item_type = GgufType(it);
    v.count = c.read<uint64_t>(key.c_str());
    v.offset = c.pos();
    size_t sz = scalar_size(v.item_type);
    if (sz) {
      if (v.count > (c.size() - c.pos()) / sz)
        c.fail("truncated: metadata array '" + key + "' of " + std::to_string(v.count) + " items ends past the end of the file");
      c.skip(v.count * sz, key.c_str());
    } else {
      if (v.count > c.size() - c.pos())  // every item takes at least one byte
        c.fail("truncated: metadata array '" + key + "' of " + std::to_string(v.count) + " items ends past the end of the file");
      for (uint64_t k = 0; k < v.count; k++) {
        GgufValue item;
        read_value(c, v.item_type, item, key, depth + 1);
      }
    }
  } else if (uint32_t(t) <= uint32_t(GgufType::F64)) {
    read_scalar(c, t, v, key.c_str());
  } else {
    c.fail("metadata '" + key + "': unknown value type " + std::to_string(uint32_t(t)));
  }
}

}  // namespace

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::BOOL: return true;
    default: return false;
  }
}

int64_t GgufValue::as_int() const {
  switch (type) {
    case GgufType::U8: case GgufType::U16: case GgufType::U32: case GgufType::U64: case GgufType::BOOL:
      if (u > uint64_t(INT64_MAX)) throw Error("metadata integer too large");
      return int64_t(u);
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i;
    default: throw Error("metadata value is not an integer");
  }
}

double GgufValue::as_float() const {
  if (type == GgufType::F32 || type == GgufType::F64) return f;
  return double(as_int());
}

void parse_gguf(const uint8_t* base, size_t size, const std::string& name, uint32_t* version,
                std::map<std::string, GgufValue>* kv, std::vector<GgufTensor>* tensors) {
  Cursor c(base, size, name);
  if (size < 4 || std::memcmp(base, "GGUF", 4) != 0) c.fail("not a GGUF file (wrong magic)");
  c.skip(4, "magic");
  *version = c.read<uint32_t>("version");
  if (*version == 1) c.fail("GGUF version 1 is too old; convert it again with a current llama.cpp");
  if (*version != 2 && *version != 3) c.fail("unsupported GGUF version " + std::to_string(*version));
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  if (n_tensors > kMaxTensors) c.fail("absurd tensor count " + std::to_string(n_tensors));
  if (n_kv > kMaxKeys) c.fail("absurd metadata count " + std::to_string(n_kv));

  for (uint64_t k = 0; k < n_kv; k++) {
    std::string key = c.read_string("metadata key");
    uint32_t t = c.read<uint32_t>("metadata type");
    GgufValue v;
    read_value(c, GgufType(t), v, key, 0);
    if (!kv->emplace(key, std::move(v)).second) c.fail("duplicate metadata key '" + key + "'");
  }

  size_t alignment = 32;
  if (auto it = kv->find("general.alignment"); it != kv->end()) {
    int64_t a = it->second.is_integer() ? it->second.as_int() : 0;
    if (a <= 0 || (a & (a - 1)) != 0) c.fail("general.alignment must be a power of two, got " + std::to_string(a));
    alignment = size_t(a);
  }

  tensors->reserve(n_tensors);
  std::map<std::string, size_t> seen;
  for (uint64_t k = 0; k < n_tensors; k++) {
    GgufTensor t;
    t.name = c.read_string("tensor name");
    uint32_t nd = c.read<uint32_t>("tensor dims");
    if (nd == 0 || nd > kMaxDims) c.fail("tensor '" + t.name + "': " + std::to_string(nd) + " dimensions (1 to 4 allowed)");
    int64_t n = 1;
    for (uint32_t d = 0; d < nd; d++) {
      uint64_t e = c.read<uint64_t>("tensor shape");
      if (e == 0 || e > uint64_t(kMaxDim) || n > kMaxDim / int64_t(e))
        c.fail("tensor '" + t.name + "': absurd dimension " + std::to_string(e));
      t.ne.push_back(int64_t(e));
      n *= int64_t(e);
    }
    uint32_t type = c.read<uint32_t>("tensor type");
    const DTypeTraits* tr = type < kFirstInternalDType ? dtype_traits(type) : nullptr;  // the engine's own layouts are not GGUF types
    if (!tr) c.fail("tensor '" + t.name + "': unknown or unsupported dtype id " + std::to_string(type));
    t.dtype = DType(type);
    if (t.ne[0] % tr->block != 0)
      c.fail("tensor '" + t.name + "': row of " + std::to_string(t.ne[0]) + " elements is not a whole number of " + tr->name + " blocks");
    t.bytes = size_t(n / tr->block) * tr->block_bytes;
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.offset % alignment != 0) c.fail("tensor '" + t.name + "': data offset " + std::to_string(t.offset) + " is not aligned to " + std::to_string(alignment));
    if (!seen.emplace(t.name, k).second) c.fail("duplicate tensor '" + t.name + "'");
    tensors->push_back(std::move(t));
  }
  size_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
  if (n_tensors > 0 && data_start > size) c.fail("truncated: no room for tensor data after the header");
  for (auto& t : *tensors) {
    if (t.offset > size - data_start || t.bytes > size - data_start - t.offset)
      c.fail("tensor '" + t.name + "': data [" + std::to_string(data_start + t.offset) + ", +" + std::to_string(t.bytes) +
             ") lies outside the file (" + std::to_string(size) + " bytes); the file is truncated or corrupt");
    t.data = base + data_start + t.offset;
  }
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_shared<MappedFile>(path)) {
  parse_gguf(file_->data(), file_->size(), path, &version_, &kv_, &tensors_);
  if (auto* a = find("general.alignment")) alignment_ = size_t(a->as_int());
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (!v->is_integer()) fail_file(path(), "metadata '" + key + "' is not an integer");
  return v->as_int();
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (!v->is_integer() && v->type != GgufType::F32 && v->type != GgufType::F64) fail_file(path(), "metadata '" + key + "' is not a number");
  return v->as_float();
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GgufType::STRING) fail_file(path(), "metadata '" + key + "' is not a string");
  return v->s;
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GgufType::BOOL) fail_file(path(), "metadata '" + key + "' is not a bool");
  return v->u != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = find(key);
  std::vector<std::string> out;
  if (!v) return out;
  if (v->type != GgufType::ARRAY || v->item_type != GgufType::STRING) fail_file(path(), "metadata '" + key + "' is not an array of strings");
  Cursor c(file_->data(), file_->size(), path());
  c.skip(v->offset, key.c_str());
  out.reserve(v->count);
  for (uint64_t k = 0; k < v->count; k++) out.push_back(c.read_string(key.c_str()));
  return out;
}

template <typename T>
static std::vector<T> numeric_array(const GgufFile& f, const std::string& key, const GgufValue* v) {
  std::vector<T> out;
  if (!v) return out;
  if (v->type != GgufType::ARRAY || scalar_size(v->item_type) == 0) fail_file(f.path(), "metadata '" + key + "' is not a numeric array");
  Cursor c(f.file().data(), f.file().size(), f.path());
  c.skip(v->offset, key.c_str());
  out.reserve(v->count);
  for (uint64_t k = 0; k < v->count; k++) {
    GgufValue item;
    item.type = v->item_type;
    read_scalar(c, v->item_type, item, key.c_str());
    if constexpr (std::is_floating_point_v<T>) out.push_back(T(item.as_float()));
    else out.push_back(T(item.as_int()));
  }
  return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const { return numeric_array<double>(*this, key, find(key)); }
std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const { return numeric_array<int64_t>(*this, key, find(key)); }

}  // namespace aha
