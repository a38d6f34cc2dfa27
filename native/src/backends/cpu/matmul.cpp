#include "backends/cpu/matmul.h"

#include <algorithm>
#include <atomic>

#include "aha/error.h"
#include "aha/kernels.h"

namespace aha {

namespace {

constexpr int64_t kDecodeMaxM = 4;     // up to this many rows: one pass over W
constexpr size_t kDecodeChunkBytes = size_t(256) << 10;

const WeightKernel& kernel_for(const Tensor& W, Isa isa) {
  const WeightKernel* k = weight_kernel(W.dtype, isa);
  if (!k) throw Error(W.name + ": no matmul kernel for dtype " + dtype_name(W.dtype));
  return *k;
}

}  // namespace

void matmul(const Tensor& W, const float* x, int64_t m, float* y, ThreadPool& pool, MatmulScratch& scratch) {
  const Isa isa = active_isa();
  // Weights packed at load go to the packed kernels while the active ISA has them (tests switch
  // ISAs on a loaded model). Row chunks and panels below are multiples of 16, as they need.
  const WeightKernel* packed = W.packed ? packed_weight_kernel(W.dtype, isa) : nullptr;
  const WeightKernel& kern = packed ? *packed : kernel_for(W, isa);
  const int64_t k = W.ne[0], n_out = W.rows();
  const size_t a_stride = row_bytes(kern.act, k);
  if (scratch.act.size() < a_stride * size_t(m)) scratch.act.resize(a_stride * size_t(m));
  uint8_t* act = scratch.act.data();
  const uint8_t* w = static_cast<const uint8_t*>(packed ? W.packed : W.data);

  if (m <= kDecodeMaxM) {
    for (int64_t i = 0; i < m; i++) quantize_act(kern.act, x + i * k, act + size_t(i) * a_stride, k, isa);
    // Threads take chunks of about kDecodeChunkBytes of weight rows as they come free, so a
    // thread slowed by its SMT sibling or preempted by another process holds up the step only
    // for the chunk it has, not for half the matrix.
    const int64_t chunk = std::max<int64_t>(16, int64_t(kDecodeChunkBytes / W.row_bytes) / 16 * 16);
    std::atomic<int64_t> next{0};
    pool.run_on_all([&](int) {
      for (int64_t r0; (r0 = next.fetch_add(chunk, std::memory_order_relaxed)) < n_out;)
        kern.tile(k, w + size_t(r0) * W.row_bytes, W.row_bytes, int(std::min(chunk, n_out - r0)), act, a_stride, int(m),
                  y + r0, size_t(n_out));
    });
    return;
  }

  pool.parallel_for(m, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; i++) quantize_act(kern.act, x + i * k, act + size_t(i) * a_stride, k, isa);
  });
  // Each thread owns a contiguous range of weight rows and sweeps all activation rows, in
  // tiles of the kernel's panel sizes (a weight tile stays in L2 while the activations stream past).
  const int64_t pw = kern.panel_w, pa = kern.panel_a ? kern.panel_a : m;
  pool.parallel_for(n_out, [&](int64_t j0, int64_t j1, int) {
    const int64_t step = pw ? pw : j1 - j0;
    for (int64_t r0 = j0; r0 < j1; r0 += step) {
      const int64_t nr = std::min(step, j1 - r0);
      for (int64_t i0 = 0; i0 < m; i0 += pa) {
        const int64_t na = std::min(pa, m - i0);
        kern.tile(k, w + size_t(r0) * W.row_bytes, W.row_bytes, int(nr), act + size_t(i0) * a_stride, a_stride, int(na),
                  y + i0 * n_out + r0, size_t(n_out));
      }
    }
  }, 32);
}

void matmul_reference(const Tensor& W, const float* x, int64_t m, float* y) {
  const WeightKernel& kern = kernel_for(W, Isa::Scalar);
  const int64_t k = W.ne[0], n_out = W.rows();
  const size_t a_stride = row_bytes(kern.act, k);
  std::vector<uint8_t> act(a_stride * size_t(m));
  for (int64_t i = 0; i < m; i++) quantize_act(kern.act, x + i * k, act.data() + size_t(i) * a_stride, k, Isa::Scalar);
  kern.tile(k, W.data, W.row_bytes, int(n_out), act.data(), a_stride, int(m), y, size_t(n_out));
}

}  // namespace aha
