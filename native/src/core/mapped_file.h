// A read-only memory-mapped file; model weights are used in place from it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace aha {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws aha::Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Hint the kernel to read the range ahead (model load progress walks the file with it).
  void prefetch(size_t offset, size_t len) const;
  // Drop this process's mapping of the whole pages inside [p, p + len) (a later read maps them
  // again from the file); false when the range is not in this file.
  bool release(const void* p, size_t len) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Small file helpers for config and index files (errors name the path).
std::string read_text_file(const std::string& path);
bool is_regular_file(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace aha
