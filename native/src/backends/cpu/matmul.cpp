#include "backends/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <vector>

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

// Rows per decode chunk: about kDecodeChunkBytes, but at least 4 chunks per thread so a small
// matrix (a MoE expert's 256 rows) is not split 240 / 16; a multiple of 16 (packed groups).
int64_t decode_chunk_rows(const Tensor& W, int64_t n_out, int threads) {
  const int64_t by_bytes = int64_t(kDecodeChunkBytes / W.row_bytes), by_count = n_out / (4 * int64_t(threads));
  return std::max<int64_t>(16, std::min(by_bytes, by_count) / 16 * 16);
}

// The kernel and weight bytes matmul uses for W on this ISA (its packed copy when there is one).
struct Chosen {
  const WeightKernel* kern;
  const uint8_t* w;
};
Chosen choose(const Tensor& W, Isa isa) {
  if (W.packed)
    if (const WeightKernel* p = packed_weight_kernel(W.dtype, isa)) return {p, static_cast<const uint8_t*>(W.packed)};
  return {&kernel_for(W, isa), static_cast<const uint8_t*>(W.data)};
}

}  // namespace

void matmul(const Tensor& W, const float* x, int64_t m, float* y, ThreadPool& pool, MatmulScratch& scratch) {
  const Isa isa = active_isa();
  // Weights packed at load go to the packed kernels while the active ISA has them (tests switch
  // ISAs on a loaded model). Row chunks and panels below are multiples of 16, as they need.
  const Chosen c = choose(W, isa);
  const WeightKernel& kern = *c.kern;
  const int64_t k = W.ne[0], n_out = W.rows();
  const size_t a_stride = row_bytes(kern.act, k);
  if (scratch.act.size() < a_stride * size_t(m)) scratch.act.resize(a_stride * size_t(m));
  uint8_t* act = scratch.act.data();
  const uint8_t* w = c.w;

  if (m <= kDecodeMaxM) {
    for (int64_t i = 0; i < m; i++) quantize_act(kern.act, x + i * k, act + size_t(i) * a_stride, k, isa);
    // Threads take chunks of about kDecodeChunkBytes of weight rows as they come free, so a
    // thread slowed by its SMT sibling or preempted by another process holds up the step only
    // for the chunk it has, not for half the matrix.
    const int64_t chunk = decode_chunk_rows(W, n_out, pool.size());
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

void matmul_many(const MatmulJob* jobs, size_t n, ThreadPool& pool, MatmulScratch& scratch) {
  const Isa isa = active_isa();
  struct Prepared {
    Chosen c;
    size_t act_offset, a_stride;
    int64_t chunk;
  };
  struct Chunk {
    uint32_t job;
    int64_t r0;
  };
  std::vector<Prepared> prep;
  std::vector<Chunk> chunks;
  size_t act_bytes = 0;
  for (size_t j = 0; j < n; j++) {
    const MatmulJob& J = jobs[j];
    if (J.m > kDecodeMaxM) {
      matmul(*J.W, J.x, J.m, J.y, pool, scratch);  // prefill-sized: its own panels
      prep.push_back({});
      continue;
    }
    const Chosen c = choose(*J.W, isa);
    const size_t a_stride = row_bytes(c.kern->act, J.W->ne[0]);
    // Equal parts of at most kDecodeChunkBytes (a 256-row expert in 2 × 128, not 240 + 16):
    // with many products there are chunks enough to balance the threads.
    const int64_t n_out = J.W->rows(), by_bytes = std::max<int64_t>(16, int64_t(kDecodeChunkBytes / J.W->row_bytes));
    const int64_t parts = (n_out + by_bytes - 1) / by_bytes;
    prep.push_back({c, act_bytes, a_stride, ((n_out + parts - 1) / parts + 15) / 16 * 16});
    act_bytes += a_stride * size_t(J.m);
  }
  // Too few chunks for the threads (one or two products): cut them as matmul does.
  int64_t total = 0;
  for (size_t j = 0; j < n; j++)
    if (jobs[j].m <= kDecodeMaxM) total += (jobs[j].W->rows() + prep[j].chunk - 1) / prep[j].chunk;
  if (total < 4 * int64_t(pool.size()))
    for (size_t j = 0; j < n; j++)
      if (jobs[j].m <= kDecodeMaxM) prep[j].chunk = decode_chunk_rows(*jobs[j].W, jobs[j].W->rows(), pool.size());
  if (scratch.act.size() < act_bytes) scratch.act.resize(act_bytes);
  for (size_t j = 0; j < n; j++) {
    const MatmulJob& J = jobs[j];
    if (J.m > kDecodeMaxM) continue;
    const Prepared& p = prep[j];
    for (int64_t i = 0; i < J.m; i++)
      quantize_act(p.c.kern->act, J.x + i * J.W->ne[0], scratch.act.data() + p.act_offset + size_t(i) * p.a_stride, J.W->ne[0], isa);
    for (int64_t r0 = 0; r0 < J.W->rows(); r0 += p.chunk) chunks.push_back({uint32_t(j), r0});
  }
  if (chunks.empty()) return;
  std::atomic<size_t> next{0};
  pool.run_on_all([&](int) {
    for (size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks.size();) {
      const MatmulJob& J = jobs[chunks[c].job];
      const Prepared& p = prep[chunks[c].job];
      const int64_t n_out = J.W->rows(), r0 = chunks[c].r0;
      p.c.kern->tile(J.W->ne[0], p.c.w + size_t(r0) * J.W->row_bytes, J.W->row_bytes, int(std::min(p.chunk, n_out - r0)),
                     scratch.act.data() + p.act_offset, p.a_stride, int(J.m), J.y + r0, size_t(n_out));
    }
  });
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
