// safetensors reader: single file or sharded (model.safetensors.index.json), memory-mapped.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "aha/dtype.h"
#include "core/mapped_file.h"

namespace aha {

struct SafeTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order (reversed from the file's row-major shape)
  DType dtype;
  size_t bytes;
  const uint8_t* data;
  std::string file;         // which shard it came from, for error messages
};

// Parses one safetensors image in memory; tensors point into `base`. Throws aha::Error prefixed by `name`.
std::vector<SafeTensor> parse_safetensors(const uint8_t* base, size_t size, const std::string& name);

class SafetensorsModel {
 public:
  // `dir` is an HF model folder: model.safetensors, or an index json with shards.
  explicit SafetensorsModel(const std::string& dir);
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const std::vector<std::shared_ptr<MappedFile>>& files() const { return files_; }

 private:
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::vector<SafeTensor> tensors_;
};

}  // namespace aha
