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

// The same product computed by the scalar reference kernel, single-threaded (tests).
void matmul_reference(const Tensor& W, const float* x, int64_t m, float* y);

}  // namespace aha
