// Micro-benchmark of the dot tiles, single thread, run by hand:
//   decode:  GB/s of weight streamed by tiles of 256 rows x 1 activation over a ~200 MB
//            matrix (k = 4096), far larger than L3, so it measures the memory-bound path;
//   prefill: GFLOP/s (2 k per product) of a 64 weight rows x 64 activation rows tile,
//            k = 1536, repeated on the same (cache-resident) data: the compute-bound path.
// Build after the engine (cmake --build BUILD --target aha_engine):
//   g++ -O2 -std=gnu++20 -Inative/include -Inative/src native/dev/bench_dot.cpp BUILD/libaha_engine.a -lpthread -o /tmp/bench_dot
//   /tmp/bench_dot [--isa scalar|avx2|avx512] [--mb 200] [dtype ...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "aha/kernels.h"

using namespace aha;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// `rows` rows of k elements of dtype t: 64 distinct quantized random rows, repeated.
std::vector<uint8_t> make_weights(DType t, int64_t k, int64_t rows, std::mt19937& rng) {
  const size_t rb = row_bytes(t, k);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  std::vector<float> x(static_cast<size_t>(k));
  std::vector<uint8_t> w(rb * size_t(rows));
  const int64_t distinct = std::min<int64_t>(rows, 64);
  for (int64_t r = 0; r < distinct; r++) {
    for (auto& v : x) v = nd(rng);
    quantize_row(t, x.data(), w.data() + size_t(r) * rb, k);
  }
  for (int64_t r = distinct; r < rows; r++) std::memcpy(w.data() + size_t(r) * rb, w.data() + size_t(r % distinct) * rb, rb);
  return w;
}

std::vector<uint8_t> make_acts(const WeightKernel& kern, int64_t k, int rows, std::mt19937& rng, Isa isa) {
  const size_t rb = row_bytes(kern.act, k);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(k));
  std::vector<uint8_t> a(rb * size_t(rows));
  for (int r = 0; r < rows; r++) {
    for (auto& v : x) v = nd(rng);
    quantize_act(kern.act, x.data(), a.data() + size_t(r) * rb, k, isa);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Isa isa = best_isa();
  double mb = 200;
  std::vector<DType> types;
  for (int i = 1; i < argc; i++) {
    DType t;
    if (!std::strcmp(argv[i], "--isa") && i + 1 < argc) {
      const char* n = argv[++i];
      for (Isa c : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Neon})
        if (!std::strcmp(n, isa_name(c))) isa = c;
    } else if (!std::strcmp(argv[i], "--mb") && i + 1 < argc) {
      mb = std::atof(argv[++i]);
    } else if (dtype_from_name(argv[i], &t)) {
      types.push_back(t);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (types.empty())
    types = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
             DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  std::printf("isa %s (best %s), single thread\n", isa_name(isa), isa_name(best_isa()));
  std::printf("%-6s %14s %16s\n", "dtype", "decode GB/s", "prefill GFLOP/s");
  std::mt19937 rng(1);
  for (DType t : types) {
    const WeightKernel* kern = weight_kernel(t, isa);
    if (!kern) continue;

    // Decode: stream the whole matrix in tiles of 256 rows against one activation row.
    const int64_t k = 4096;
    const size_t rb = row_bytes(t, k);
    const int64_t rows = (int64_t(mb * 1e6) / int64_t(rb) + 255) / 256 * 256;
    const std::vector<uint8_t> w = make_weights(t, k, rows, rng);
    const std::vector<uint8_t> a = make_acts(*kern, k, 1, rng, isa);
    std::vector<float> y(static_cast<size_t>(rows));
    double best = 1e30;
    for (int pass = 0; pass < 4; pass++) {
      const double t0 = now();
      for (int64_t r = 0; r < rows; r += 256) kern->tile(k, w.data() + size_t(r) * rb, rb, 256, a.data(), 0, 1, y.data() + r, 0);
      best = std::min(best, now() - t0);
    }
    const double gbs = double(rb) * double(rows) / best / 1e9;

    // Prefill: one 64 x 64 tile, k = 1536, repeated.
    const int64_t kp = std::getenv("KP") ? std::atoll(std::getenv("KP")) : 1536;
    const int n = 64;
    const std::vector<uint8_t> wp = make_weights(t, kp, n, rng);
    const std::vector<uint8_t> ap = make_acts(*kern, kp, n, rng, isa);
    const size_t rbp = row_bytes(t, kp), abp = row_bytes(kern->act, kp);
    std::vector<float> yp(size_t(n) * n);
    int reps = 1;
    double dt = 0;
    while (dt < 0.3) {
      const double t0 = now();
      for (int i = 0; i < reps; i++) kern->tile(kp, wp.data(), rbp, n, ap.data(), abp, n, yp.data(), size_t(n));
      dt = now() - t0;
      if (dt < 0.3) reps *= 2;
    }
    const double gflops = 2.0 * double(kp) * n * n * reps / dt / 1e9;
    std::printf("%-6s %14.2f %16.1f\n", dtype_name(t), gbs, gflops);
  }
  return 0;
}
