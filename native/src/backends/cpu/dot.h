// Per-ISA tables of the CPU dot-product kernels (dot_ref.cpp, dot_avx2.cpp, dot_avx512.cpp,
// dot_avx512vnni.cpp, dot_amx.cpp);
// dispatch.cpp picks one by the active ISA. Every table has one entry per weight dtype with a
// kernel, and the activation quantizers for q8_0 / q8_K, which must produce exactly the bytes
// of the scalar ones (quantize_row_q8_0_ref / quantize_row_q8_K_ref).
//
// Weight dtype -> activation dtype (same in every table):
//   f32, f16, bf16 -> f32   (no f16/bf16 arithmetic on these CPUs, so one side is widened on load
//                            either way; widening the weights keeps decode at memory speed
//                            (bench_dot) and the products exact up to summation order)
//   q4_0, q4_1, q5_0, q5_1, q8_0 -> q8_0   (the q4_1/q5_1 min term uses the sum of the q8_0
//                                          quants, computed in the kernel)
//   q4_K, q5_K, q6_K -> q8_K
#pragma once
#include <cstdint>

#include "aha/kernels.h"

namespace aha {

struct CpuDotKernels {
  const WeightKernel* kernels;  // [n]
  int n;
  void (*quantize_q8_0)(const float* x, void* out, int64_t k);
  void (*quantize_q8_K)(const float* x, void* out, int64_t k);
  const WeightKernel* packed = nullptr;  // [n_packed] kernels over weights packed at load (kernels.h)
  int n_packed = 0;
};

namespace ref {
extern const CpuDotKernels kDot;
}
#if defined(AHA_X86)
namespace avx2 {
extern const CpuDotKernels kDot;
}
namespace avx512 {
extern const CpuDotKernels kDot;
}
namespace avx512vnni {
extern const CpuDotKernels kDot;
}
// Only the int8 weight dtypes (AMX-INT8 tiles for prefill, the VNNI tiles for decode); the
// others, and the activation quantizers, come from avx512vnni::kDot.
#if defined(AHA_AMX)
namespace amx {
extern const CpuDotKernels kDot;
}
#endif
#endif

}  // namespace aha
