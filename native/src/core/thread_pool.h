// A persistent thread pool. parallel_for splits [0, n) into one contiguous range per
// thread (static: decode wants each thread to stream the same weight rows every step);
// the caller's thread takes part. Workers spin briefly between jobs (a decode step runs
// hundreds of short parallel regions) and then sleep.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace aha {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  int size() const { return n_; }

  // fn(begin, end, thread) over [0, n) split evenly; returns when all ranges are done.
  // `grain` rounds split points to multiples of it (e.g. a SIMD width).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t grain = 1);
  // fn(thread) on every thread.
  void run_on_all(const std::function<void(int)>& fn);

  static int physical_cores();

 private:
  void worker(int id);
  int n_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleeping_{0};
};

}  // namespace aha
