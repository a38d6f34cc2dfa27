// GGUF v2/v3 reader: metadata of every value type, tensor infos, and tensor data
// memory-mapped in place. Every bound is checked against the file size.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "aha/dtype.h"
#include "core/mapped_file.h"

namespace aha {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

// One metadata value. Arrays keep their position in the file and are decoded on demand,
// so a 150k-entry vocabulary costs nothing until someone asks for it.
struct GgufValue {
  GgufType type = GgufType::U8;
  uint64_t u = 0;      // unsigned integers and bool
  int64_t i = 0;       // signed integers
  double f = 0;        // floats
  std::string s;       // strings
  GgufType item_type = GgufType::U8;  // arrays
  uint64_t count = 0;                 // arrays
  size_t offset = 0;                  // arrays: file offset of the first item

  bool is_integer() const;
  int64_t as_int() const;   // any integer type or bool; throws otherwise
  double as_float() const;  // any numeric type
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous dimension
  DType dtype;
  uint64_t offset;          // from the start of the data section
  size_t bytes;
  const uint8_t* data;      // points into the mapping
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // throws aha::Error("path: problem")

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const MappedFile& file() const { return *file_; }
  std::shared_ptr<MappedFile> shared_file() const { return file_; }

  const GgufValue* find(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
};

// Parses a GGUF image already in memory (used by the file reader and the fuzzer).
// Fills kv/tensors with data pointers into `base`; throws aha::Error prefixed by `name`.
void parse_gguf(const uint8_t* base, size_t size, const std::string& name, uint32_t* version,
                std::map<std::string, GgufValue>* kv, std::vector<GgufTensor>* tensors);

}  // namespace aha
