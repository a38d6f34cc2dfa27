// Micro-benchmark of the dot tiles, single thread, run by hand:
//   decode:  GB/s of weight streamed by tiles of 256 rows x 1 activation over a ~200 MB
//            matrix (k = 4096), far larger than L3, so it measures the memory-bound path;
//            with --threads N, N threads each stream their share of the rows, as decode does,
//            against the read bandwidth measure_read_bandwidth gives for N threads;
//   prefill: GFLOP/s (2 k per product) of 256 weight rows x 512 activation rows, k = 1536
//            (KP to change it), in the tiles matmul uses for the kernel (its panel sizes),
//            repeated on the same data: the compute-bound path. For the int8 dtypes that is
//            GOP/s of int8 products.
// Build after the engine (cmake --build BUILD --target aha_engine):
//   g++ -O2 -std=gnu++20 -Inative/include -Inative/src native/dev/bench_dot.cpp BUILD/libaha_engine.a -lpthread -o /tmp/bench_dot
//   /tmp/bench_dot [--isa scalar|avx2|avx512|avx512vnni|amx] [--mb 200] [--threads 1] [--packed] [dtype ...]
// --packed: the dtypes with a layout packed at load (kernels.h) run their packed kernels on
// packed copies, as the engine does; the others are skipped.
// An ISA this machine lacks falls back to the best it has (the header line says which ran).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "aha/kernels.h"
#include "aha/model.h"

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
  int threads = 1;
  bool packed = false;
  std::vector<DType> types;
  for (int i = 1; i < argc; i++) {
    DType t;
    if (!std::strcmp(argv[i], "--isa") && i + 1 < argc) {
      const char* n = argv[++i];
      for (Isa c : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx, Isa::Neon})
        if (!std::strcmp(n, isa_name(c))) isa = isa_supported(c) ? c : best_isa();
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--packed")) {
      packed = true;
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
  std::printf("isa %s (best %s), decode on %d thread(s), prefill on one%s\n", isa_name(isa), isa_name(best_isa()), threads,
              packed ? ", weights packed at load" : "");
  std::printf("read bandwidth (measure_read_bandwidth, %d thread(s), at least 1 GiB): %.1f GB/s\n", threads, measure_read_bandwidth(threads));
  std::printf("%-6s %14s %16s\n", "dtype", "decode GB/s", "prefill GFLOP/s");
  std::mt19937 rng(1);
  for (DType t : types) {
    const WeightKernel* kern = packed ? packed_weight_kernel(t, isa) : weight_kernel(t, isa);
    if (!kern) continue;
    // The packed copy of a matrix: the same bytes regrouped (rows are a multiple of 16 here).
    auto layout = [&](std::vector<uint8_t> m, int64_t kk, int64_t n) {
      if (!packed) return m;
      std::vector<uint8_t> p(packed_bytes(t, kk, n));
      pack_rows(t, m.data(), kk, n, 0, n, p.data());
      return p;
    };

    // Decode: stream the whole matrix in tiles of 256 rows against one activation row.
    const int64_t k = std::getenv("KD") ? std::atoll(std::getenv("KD")) : 4096;  // KD to change it
    const size_t rb = row_bytes(t, k);
    const int64_t rows = (int64_t(mb * 1e6) / int64_t(rb) + 255) / 256 * 256;
    const std::vector<uint8_t> w = layout(make_weights(t, k, rows, rng), k, rows);
    const std::vector<uint8_t> a = make_acts(*kern, k, 1, rng, isa);
    std::vector<float> y(static_cast<size_t>(rows));
    double best = 1e30;
    auto stream = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r += 256) kern->tile(k, w.data() + size_t(r) * rb, rb, 256, a.data(), 0, 1, y.data() + r, 0);
    };
    for (int pass = 0; pass < 4; pass++) {
      const double t0 = now();
      std::vector<std::thread> pool;
      for (int t = 1; t < threads; t++) pool.emplace_back(stream, rows / 256 * t / threads * 256, rows / 256 * (t + 1) / threads * 256);
      stream(0, rows / 256 / threads * 256);
      for (auto& th : pool) th.join();
      best = std::min(best, now() - t0);
    }
    const double gbs = double(rb) * double(rows) / best / 1e9;

    // Prefill: 256 weight rows x 512 activation rows in the kernel's panels, repeated.
    const int64_t kp = std::getenv("KP") ? std::atoll(std::getenv("KP")) : 1536;
    const int nw = 256, na = std::getenv("NA") ? std::atoi(std::getenv("NA")) : 512;  // NA to change it
    const std::vector<uint8_t> wp = layout(make_weights(t, kp, nw, rng), kp, nw);
    const std::vector<uint8_t> ap = make_acts(*kern, kp, na, rng, isa);
    const size_t rbp = row_bytes(t, kp), abp = row_bytes(kern->act, kp);
    const int pw = kern->panel_w ? int(kern->panel_w) : nw, pa = kern->panel_a ? int(kern->panel_a) : na;
    std::vector<float> yp(size_t(nw) * na);
    auto prefill = [&] {
      for (int r0 = 0; r0 < nw; r0 += pw)
        for (int i0 = 0; i0 < na; i0 += pa)
          kern->tile(kp, wp.data() + size_t(r0) * rbp, rbp, std::min(pw, nw - r0), ap.data() + size_t(i0) * abp, abp,
                     std::min(pa, na - i0), yp.data() + size_t(i0) * nw + size_t(r0), size_t(nw));
    };
    prefill();  // warm up (and the kernel's buffers)
    double dt = 1e30;
    for (int pass = 0; pass < 5; pass++) {
      const double t0 = now();
      prefill();
      dt = std::min(dt, now() - t0);
    }
    const double gflops = 2.0 * double(kp) * nw * na / dt / 1e9;
    std::printf("%-6s %14.2f %16.1f\n", dtype_name(t), gbs, gflops);
  }
  return 0;
}
