// Memory read bandwidth, measured the way decode reads weights: every thread streams its
// own part of a buffer far larger than the caches, as several interleaved streams.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "aha/model.h"
#include "core/thread_pool.h"

namespace aha {

typedef uint64_t u64x8 __attribute__((vector_size(64)));

static uint64_t read_streams(const uint8_t* p, size_t bytes) {
  constexpr int kStreams = 4;
  const size_t per = bytes / kStreams / 64 * 64;
  u64x8 acc[kStreams] = {};
  for (size_t off = 0; off < per; off += 64)
    for (int s = 0; s < kStreams; s++) acc[s] += *reinterpret_cast<const u64x8*>(p + size_t(s) * per + off);
  uint64_t r = 0;
  for (auto& a : acc)
    for (int i = 0; i < 8; i++) r += a[i];
  return r;
}

double measure_read_bandwidth(int threads, size_t bytes, int repeats) {
  ThreadPool pool(threads > 0 ? threads : ThreadPool::physical_cores());
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(64, bytes));
  const size_t per_thread = bytes / size_t(pool.size()) / 4096 * 4096;
  pool.run_on_all([&](int t) { std::memset(buf + size_t(t) * per_thread, 1 + t, per_thread); });
  volatile uint64_t sink = 0;
  double best = 0;
  for (int r = 0; r < repeats; r++) {
    auto t0 = std::chrono::steady_clock::now();
    pool.run_on_all([&](int t) { sink = sink + read_streams(buf + size_t(t) * per_thread, per_thread); });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(per_thread * size_t(pool.size())) / s / 1e9);
  }
  std::free(buf);
  return best;
}

}  // namespace aha
