// y[m, n_out] = x[m, k] · Wᵀ for a weight of any dtype, on the thread pool.
#pragma once
#include <cstdint>
#include <vector>

#include "aha/model.h"
#include "core/thread_pool.h"

namespace aha {

// Scratch for converted activations, reused across calls.
struct MatmulScratch {
  std::vector<uint8_t> act;
};

// W: ne = {k, n_out}. x: [m, k] row-major floats. y: [m, n_out].
void matmul(const Tensor& W, const float* x, int64_t m, float* y, ThreadPool& pool, MatmulScratch& scratch);

// Several independent products y_i = x_i · W_iᵀ in one parallel region: the decode-sized ones
// (m ≤ 4 rows) are cut into row chunks that the threads take as they come free, so a step with
// many small products (a MoE layer's experts, q/k/v, gate/up) pays one hand-off instead of one
// per product and no thread idles behind a lopsided split. Larger ones go through matmul.
struct MatmulJob {
  const Tensor* W;
  const float* x;
  int64_t m;
  float* y;
};
void matmul_many(const MatmulJob* jobs, size_t n, ThreadPool& pool, MatmulScratch& scratch);

// The same product computed by the scalar reference kernel, single-threaded (tests).
void matmul_reference(const Tensor& W, const float* x, int64_t m, float* y);

}  // namespace aha
