#include <chrono>
#include <cstring>

#include "check.h"

namespace check {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

static std::string g_notes;
static bool g_verbose = false;

void fail(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": " << msg;
  throw Failure(os.str());
}

void note(const std::string& msg) {
  g_notes += "    " + msg + "\n";
}

}  // namespace check

int main(int argc, char** argv) {
  const char* filter = nullptr;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "-v")) check::g_verbose = true;
    else filter = argv[i];
  }
  int passed = 0, failed = 0;
  for (auto& c : check::registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    check::g_notes.clear();
    auto t0 = std::chrono::steady_clock::now();
    std::string err;
    try {
      c.fn();
    } catch (const std::exception& e) {
      err = e.what();
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (err.empty()) {
      passed++;
      std::printf("ok   %s (%.0f ms)\n", c.name, ms);
      if (check::g_verbose) std::fputs(check::g_notes.c_str(), stdout);
    } else {
      failed++;
      std::printf("FAIL %s (%.0f ms)\n    %s\n", c.name, ms, err.c_str());
      std::fputs(check::g_notes.c_str(), stdout);
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
