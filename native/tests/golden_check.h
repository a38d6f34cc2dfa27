// Reading the transformers goldens (tests/oracle/hf_golden.py's format) and scoring engine logits
// against them; shared by the golden tests of every family.
#pragma once
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "core/json.h"
#include "fixtures.h"

namespace golden {

using aha::Json;

// tests/fixtures/golden/<name>.json
inline Json load_golden(const std::string& name) {
  std::string path = fixtures_dir() + "/golden/" + name + ".json";
  std::ifstream in(path);
  if (!in) check::fail(__FILE__, __LINE__, "missing golden " + path + " (make it with tests/oracle/hf_golden.py)");
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str(), path);
}

inline std::vector<int32_t> ids(const Json& a) {
  std::vector<int32_t> v;
  for (auto& x : a.array()) v.push_back(int32_t(x.integer()));
  return v;
}

// Worst error over the golden's values at one position, relative to that position's largest |logit|.
inline double position_error(const float* row, int64_t V, const Json& pos, const std::vector<int32_t>& probes) {
  double mx = 0, lse_max = -INFINITY;
  for (int64_t i = 0; i < V; i++) mx = std::max(mx, std::fabs(double(row[i])));
  for (int64_t i = 0; i < V; i++) lse_max = std::max(lse_max, double(row[i]));
  double lse = 0, sum = 0, sumsq = 0;
  for (int64_t i = 0; i < V; i++) {
    lse += std::exp(double(row[i]) - lse_max);
    sum += row[i];
    sumsq += double(row[i]) * row[i];
  }
  lse = lse_max + std::log(lse);
  double err = std::fabs(lse - pos.find("logsumexp")->number()) / mx;
  // sum and sum of squares over the whole vocabulary: a wrong row anywhere shows here.
  err = std::max(err, std::fabs(sum - pos.find("sum")->number()) / (mx * std::sqrt(double(V))));
  err = std::max(err, std::fabs(std::sqrt(sumsq) - std::sqrt(pos.find("sumsq")->number())) / (mx * std::sqrt(double(V))));
  for (auto& t : pos.find("top")->array())
    err = std::max(err, std::fabs(row[t.array()[0].integer()] - t.array()[1].number()) / mx);
  auto& pv = pos.find("probes")->array();
  for (size_t k = 0; k < probes.size(); k++) err = std::max(err, std::fabs(row[probes[k]] - pv[k].number()) / mx);
  return err;
}

}  // namespace golden
