#include "core/aligned.h"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace aha {

void advise_huge_pages(void* p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge, b = (reinterpret_cast<uintptr_t>(p) + n) / kHuge * kHuge;
  if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#else
  (void)p, (void)n;
#endif
}

}  // namespace aha
