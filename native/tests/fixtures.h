// Paths of the generated tiny models (tests/fixtures/generated, made by make-tiny-models.ts;
// tests/fixtures/generated-deepseek, made by make-tiny-deepseek.ts).
#pragma once
#include <cstdlib>
#include <string>
#include <sys/stat.h>

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
