// Memory read bandwidth, measured the way decode reads weights: every thread streams its own
// part of a buffer far larger than the caches (at least 4x the last-level cache), reading
// every byte. Several readers are tried
// (1, 4 or 8 interleaved streams per thread; 512-bit loads where the CPU has AVX-512, which
// keeps the summing off the critical path of a core shared by two threads) and the best
// sustained rate over the repeats is reported: the most a kernel could get from this memory.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "aha/kernels.h"
#include "aha/model.h"
#include "core/thread_pool.h"

namespace aha {

namespace {

typedef uint64_t u64x8 __attribute__((vector_size(64)));

// Sum of every 8-byte word of p[0, bytes) (bytes a multiple of 64 * kStreams), read as
// kStreams interleaved sequential streams.
template <int kStreams>
__attribute__((always_inline)) inline uint64_t read_streams(const uint8_t* p, size_t bytes) {
  const size_t per = bytes / kStreams;
  u64x8 acc[kStreams] = {};
  for (size_t off = 0; off < per; off += 64)
    for (int s = 0; s < kStreams; s++) acc[s] += *reinterpret_cast<const u64x8*>(p + size_t(s) * per + off);
  u64x8 t = {};
  for (auto& a : acc) t += a;
  uint64_t r = 0;
  for (int i = 0; i < 8; i++) r += t[i];
  return r;
}

template <int kStreams>
uint64_t read_streams_plain(const uint8_t* p, size_t bytes) {
  return read_streams<kStreams>(p, bytes);
}

#if defined(AHA_X86)
template <int kStreams>
__attribute__((target("avx512f"))) uint64_t read_streams_avx512(const uint8_t* p, size_t bytes) {
  return read_streams<kStreams>(p, bytes);
}
#endif

using Reader = uint64_t (*)(const uint8_t*, size_t);

// Bytes of the largest cache Linux reports for cpu 0 (0 when it reports none).
size_t last_level_cache_bytes() {
  size_t best = 0;
  for (int i = 0; i < 8; i++) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    size_t n = 0;
    char unit = 0;
    if (!(in >> n)) continue;
    in >> unit;
    best = std::max(best, n << (unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0));
  }
  return best;
}

}  // namespace

double measure_read_bandwidth(int threads, size_t bytes, int repeats) {
  bytes = std::max(bytes, 4 * last_level_cache_bytes());
  ThreadPool pool(threads > 0 ? threads : ThreadPool::physical_cores());
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes / 4096 * 4096));
  const size_t per_thread = bytes / size_t(pool.size()) / 4096 * 4096;
  pool.run_on_all([&](int t) { std::memset(buf + size_t(t) * per_thread, 1 + t, per_thread); });
  std::vector<Reader> readers = {read_streams_plain<1>, read_streams_plain<4>, read_streams_plain<8>};
#if defined(AHA_X86)
  const Isa best_here = best_isa();
  if (best_here == Isa::Avx512 || best_here == Isa::Avx512Vnni || best_here == Isa::Amx)
    readers = {read_streams_avx512<1>, read_streams_avx512<4>, read_streams_avx512<8>};
#endif
  volatile uint64_t sink = 0;
  double best = 0;
  for (int r = 0; r < repeats; r++)
    for (Reader read : readers) {
      auto t0 = std::chrono::steady_clock::now();
      pool.run_on_all([&](int t) { sink = sink + read(buf + size_t(t) * per_thread, per_thread); });
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, double(per_thread * size_t(pool.size())) / s / 1e9);
    }
  std::free(buf);
  return best;
}

}  // namespace aha
