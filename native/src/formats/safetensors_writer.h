// safetensors writer (the layout the safetensors library writes: header keys sorted, the header
// padded with spaces to a multiple of 8 bytes, tensors in header order), written to a temporary
// file and renamed into place, so a reader never sees half a file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace aha {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "F64", "F16", "BF16"
  std::vector<int64_t> shape;  // row-major, as the file states it
  std::vector<uint8_t> bytes;
};

void write_safetensors(const std::string& path, std::vector<SafetensorsEntry> entries, const std::map<std::string, std::string>& metadata);

// `s` as a JSON string literal, quotes included.
std::string json_quote(const std::string& s);

// Writes `text` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace aha
