// A minimal test harness: TEST(name) { CHECK(...); } registered at static init;
// aha_tests [substring] runs the matching tests and prints one line per test
// and a closing "N passed, N failed".
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace check {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Case {
  const char* name;
  std::function<void()> fn;
};
std::vector<Case>& registry();

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

// Where a test asserts; set by CHECK macros so failures name the line.
[[noreturn]] void fail(const char* file, int line, const std::string& msg);

// Print extra detail for the running test (shown only with -v or on failure).
void note(const std::string& msg);

}  // namespace check

// ||a − b|| / ||b|| in double: the tests' measure of how far a result is from its reference.
template <class A, class B>
double nerr(const A& a, const B& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / (den + 1e-300));
}
inline double nerr(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / (den + 1e-300));
}

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST(name)                                                              \
  static void CHECK_CAT(test_fn_, name)();                                      \
  static check::Register CHECK_CAT(test_reg_, name)(#name, CHECK_CAT(test_fn_, name)); \
  static void CHECK_CAT(test_fn_, name)()

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) check::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed"); \
  } while (0)

#define CHECK_MSG(cond, msg)                                 \
  do {                                                       \
    if (!(cond)) {                                           \
      std::ostringstream os_;                                \
      os_ << "CHECK(" #cond ") failed: " << msg;             \
      check::fail(__FILE__, __LINE__, os_.str());            \
    }                                                        \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                      \
  do {                                                                             \
    double a_ = (a), b_ = (b);                                                     \
    if (!(std::fabs(a_ - b_) <= (tol))) {                                          \
      std::ostringstream os_;                                                      \
      os_ << #a " = " << a_ << ", " #b " = " << b_ << ", |diff| > " << (tol);      \
      check::fail(__FILE__, __LINE__, os_.str());                                  \
    }                                                                              \
  } while (0)

// Expects `expr` to throw an exception whose what() contains `substr`.
#define CHECK_THROWS(expr, substr)                                                   \
  do {                                                                               \
    bool thrown_ = false;                                                            \
    try {                                                                            \
      (void)(expr);                                                                  \
    } catch (const std::exception& e_) {                                             \
      thrown_ = true;                                                                \
      if (std::string(e_.what()).find(substr) == std::string::npos)                  \
        check::fail(__FILE__, __LINE__, std::string("wrong error: ") + e_.what() +  \
                                            " (expected '" + (substr) + "')");       \
    }                                                                                \
    if (!thrown_) check::fail(__FILE__, __LINE__, "expected an error: " #expr);      \
  } while (0)
