// Run-time ISA choice for the CPU kernels: what the CPU supports (cpuid + the OS saving the
// vector state), the AHA_ISA override, and the per-ISA kernel tables.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "aha/error.h"
#include "backends/cpu/dot.h"

#if defined(AHA_X86)
#include <cpuid.h>
#endif

namespace aha {

namespace {

#if defined(AHA_X86)
Isa detect_isa() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Scalar;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), f16c = c & (1u << 29);
  if (!osxsave) return Isa::Scalar;
  unsigned xlo, xhi;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool os_ymm = (xlo & 0x6) == 0x6, os_zmm = (xlo & 0xE6) == 0xE6;  // SSE+AVX state; + opmask, zmm
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::Scalar;
  const bool avx2 = b & (1u << 5);
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));  // F DQ BW VL
  const bool vnni = c & (1u << 11);
  if (!(os_ymm && avx2 && fma && f16c)) return Isa::Scalar;
  if (!(os_zmm && avx512)) return Isa::Avx2;
  // No kernel uses VNNI yet; report it all the same so --isa and logs say what the CPU has.
  return vnni ? Isa::Avx512Vnni : Isa::Avx512;
}
#else
Isa detect_isa() { return Isa::Scalar; }  // no NEON kernels yet: the scalar ones run on ARM
#endif

Isa clamp(Isa isa) {
  const Isa best = best_isa();
  return int(isa) > int(best) ? best : isa;
}

Isa initial_isa() {
  const char* env = std::getenv("AHA_ISA");
  if (!env || !*env) return best_isa();
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Neon})
    if (!std::strcmp(env, isa_name(i))) return clamp(i);
  std::fprintf(stderr, "aha: AHA_ISA=%s is not one of scalar, avx2, avx512, avx512vnni, neon; using %s\n", env,
               isa_name(best_isa()));
  return best_isa();
}

std::atomic<int> g_active{-1};

const CpuDotKernels& table(Isa isa) {
#if defined(AHA_X86)
  switch (clamp(isa)) {
    case Isa::Avx512:
    case Isa::Avx512Vnni: return avx512::kDot;
    case Isa::Avx2: return avx2::kDot;
    default: break;
  }
#endif
  return ref::kDot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::Neon: return "neon";
  }
  return "unknown";
}

Isa best_isa() {
  static const Isa best = detect_isa();
  return best;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(initial_isa());
    g_active.store(v, std::memory_order_relaxed);
  }
  return Isa(v);
}

void set_active_isa(Isa isa) { g_active.store(int(clamp(isa)), std::memory_order_relaxed); }

const WeightKernel* weight_kernel(DType weight, Isa isa) {
  const CpuDotKernels& t = table(isa);
  for (int i = 0; i < t.n; i++)
    if (t.kernels[i].weight == weight) return &t.kernels[i];
  return nullptr;
}

void quantize_act(DType act, const float* x, void* out, int64_t k, Isa isa) {
  switch (act) {
    case DType::F32: std::memcpy(out, x, size_t(k) * sizeof(float)); return;
    case DType::Q8_0:
      if (k % 32) throw Error("quantize_act: q8_0 row of " + std::to_string(k) + " elements is not a whole number of blocks");
      table(isa).quantize_q8_0(x, out, k);
      return;
    case DType::Q8_K:
      if (k % 256) throw Error("quantize_act: q8_K row of " + std::to_string(k) + " elements is not a whole number of blocks");
      table(isa).quantize_q8_K(x, out, k);
      return;
    default: quantize_row(act, x, out, k); return;
  }
}

}  // namespace aha
