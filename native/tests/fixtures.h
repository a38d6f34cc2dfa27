// Paths of the generated tiny models (tests/fixtures/generated, made by make-tiny-models.ts;
// tests/fixtures/generated-deepseek, made by make-tiny-deepseek.ts).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

inline std::string fixtures_dir() {
  const char* env = std::getenv("AHA_FIXTURES");
  return env ? env : "tests/fixtures";
}

// Path of a generated model; fails the test with a clear line when the fixtures are missing.
inline std::string tiny(const std::string& name) {
  std::string p = fixtures_dir() + "/generated/" + name;
  struct stat st;
  if (::stat(p.c_str(), &st) != 0)
    check::fail(__FILE__, __LINE__, "missing fixture " + p + " (generate with: node --import tsx tests/fixtures/make-tiny-models.ts)");
  return p;
}

// Path of a generated DeepSeek model (make-tiny-deepseek.ts).
inline std::string tiny_deepseek(const std::string& name) {
  std::string p = fixtures_dir() + "/generated-deepseek/" + name;
  struct stat st;
  if (::stat(p.c_str(), &st) != 0)
    check::fail(__FILE__, __LINE__, "missing fixture " + p + " (generate with: node --import tsx tests/fixtures/make-tiny-deepseek.ts)");
  return p;
}

// A fresh directory under $TMPDIR (else /tmp), removed with everything in it when the test ends,
// failed or not: a test run leaves nothing behind.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    const char* env = std::getenv("TMPDIR");
    std::string t = std::string(env && *env ? env : "/tmp") + "/" + prefix + "-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) check::fail(__FILE__, __LINE__, "mkdtemp failed under " + t);
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  operator const std::string&() const { return path_; }

 private:
  std::string path_;
};
