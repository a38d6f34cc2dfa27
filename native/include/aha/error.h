// Errors the engine reports. Every message names the file (or input) and the problem,
// so a user reading it knows what to fix; nothing in the engine aborts on bad input.
#pragma once
#include <stdexcept>
#include <string>

namespace aha {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "file: problem" for errors about a model file.
[[noreturn]] inline void fail_file(const std::string& file, const std::string& problem) {
  throw Error(file + ": " + problem);
}

}  // namespace aha
