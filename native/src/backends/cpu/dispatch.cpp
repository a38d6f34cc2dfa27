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
#if defined(AHA_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace aha {

namespace {

#if defined(AHA_X86)
// AMX tile data is off by default on Linux: a process asks for it once (ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA) and may then use the tiles on every thread. Refused or not Linux: no AMX.
bool os_grants_amx() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

Isa detect_isa() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Scalar;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), f16c = c & (1u << 29);
  if (!osxsave) return Isa::Scalar;
  unsigned xlo, xhi;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool os_ymm = (xlo & 0x6) == 0x6, os_zmm = (xlo & 0xE6) == 0xE6;  // SSE+AVX state; + opmask, zmm
  const bool os_tiles = (xlo & 0x60000) == 0x60000;                        // XTILECFG, XTILEDATA
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::Scalar;
  const bool avx2 = b & (1u << 5);
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));  // F DQ BW VL
  const bool vnni = c & (1u << 11);
  const bool amx_int8 = (d & (1u << 24)) && (d & (1u << 25));  // AMX-TILE, AMX-INT8
  if (!(os_ymm && avx2 && fma && f16c)) return Isa::Scalar;
  if (!(os_zmm && avx512)) return Isa::Avx2;
  if (!vnni) return Isa::Avx512;
#if defined(AHA_AMX)
  if (amx_int8 && os_tiles && os_grants_amx()) return Isa::Amx;
#else
  (void)amx_int8, (void)os_tiles;
#endif
  return Isa::Avx512Vnni;
}
#else
Isa detect_isa() { return Isa::Scalar; }  // no NEON kernels yet: the scalar ones run on ARM
#endif

// The x86 levels are ordered; Neon is its own.
bool supported(Isa isa, Isa best) {
  if (isa == Isa::Scalar || isa == best) return true;
  if (isa == Isa::Neon || best == Isa::Neon) return false;
  return int(isa) <= int(best);
}

Isa clamp(Isa isa) { return supported(isa, best_isa()) ? isa : best_isa(); }

Isa initial_isa() {
  const char* env = std::getenv("AHA_ISA");
  if (!env || !*env) return best_isa();
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx, Isa::Neon})
    if (!std::strcmp(env, isa_name(i))) return clamp(i);
  std::fprintf(stderr, "aha: AHA_ISA=%s is not one of scalar, avx2, avx512, avx512vnni, amx, neon; using %s\n", env,
               isa_name(best_isa()));
  return best_isa();
}

std::atomic<int> g_active{-1};

const CpuDotKernels& table(Isa isa) {
#if defined(AHA_X86)
  switch (clamp(isa)) {
#if defined(AHA_AMX)
    case Isa::Amx: return amx::kDot;
#endif
    case Isa::Avx512Vnni: return avx512vnni::kDot;
    case Isa::Avx512: return avx512::kDot;
    case Isa::Avx2: return avx2::kDot;
    default: break;
  }
#endif
  return ref::kDot;
}

// The activation quantizers: the AMX table has none of its own.
const CpuDotKernels& quantizers(Isa isa) { return table(clamp(isa) == Isa::Amx ? Isa::Avx512Vnni : isa); }

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::Neon: return "neon";
    case Isa::Amx: return "amx";
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

bool cpu_has_avx512_bf16() {
#if defined(AHA_AVX512BF16)
  static const bool has = [] {
    if (!supported(Isa::Avx512, best_isa())) return false;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1 || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a & (1u << 5)) != 0;  // AVX512_BF16
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_amx_bf16() {
#if defined(AHA_AMX)  // (a compiler that knows AMX knows AVX512-BF16: AHA_AVX512BF16 is defined too)
  static const bool has = [] {
    unsigned a, b, c, d;
    return best_isa() == Isa::Amx && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) != 0  // AMX-BF16
           && cpu_has_avx512_bf16();
  }();
  return has;
#else
  return false;
#endif
}

bool isa_supported(Isa isa) { return supported(isa, best_isa()); }

void set_active_isa(Isa isa) { g_active.store(int(clamp(isa)), std::memory_order_relaxed); }

const WeightKernel* weight_kernel(DType weight, Isa isa) {
  const CpuDotKernels& t = table(isa);
  for (int i = 0; i < t.n; i++)
    if (t.kernels[i].weight == weight) return &t.kernels[i];
  if (clamp(isa) == Isa::Amx) return weight_kernel(weight, Isa::Avx512Vnni);  // the float dtypes
  // A dtype this ISA has no kernel for runs on the scalar reference: slow, never wrong.
  if (clamp(isa) != Isa::Scalar) return weight_kernel(weight, Isa::Scalar);
  return nullptr;
}

const WeightKernel* packed_weight_kernel(DType weight, Isa isa) {
  const CpuDotKernels& t = table(isa);
  for (int i = 0; i < t.n_packed; i++)
    if (t.packed[i].weight == weight) return &t.packed[i];
  return nullptr;
}

void quantize_act(DType act, const float* x, void* out, int64_t k, Isa isa) {
  switch (act) {
    case DType::F32: std::memcpy(out, x, size_t(k) * sizeof(float)); return;
    case DType::Q8_0:
      if (k % 32) throw Error("quantize_act: q8_0 row of " + std::to_string(k) + " elements is not a whole number of blocks");
      quantizers(isa).quantize_q8_0(x, out, k);
      return;
    case DType::Q8_K:
      if (k % 256) throw Error("quantize_act: q8_K row of " + std::to_string(k) + " elements is not a whole number of blocks");
      quantizers(isa).quantize_q8_K(x, out, k);
      return;
    default: quantize_row(act, x, out, k); return;
  }
}

}  // namespace aha
