// std::vector storage aligned to cache lines (64 bytes): AMX tile loads and AVX-512 loads of a
// row that straddles two lines cost two (the MLA tile attention ran 1.6x slower on a cache whose
// base sat 16 bytes past a line).
#pragma once
#include <cstddef>
#include <new>
#include <vector>

namespace aha {

template <class T, size_t Align = 64>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, Align>&) {}
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, Align>;
  };
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(Align))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(Align)); }
  bool operator==(const AlignedAllocator&) const { return true; }
  bool operator!=(const AlignedAllocator&) const { return false; }
};

template <class T>
using aligned_vector = std::vector<T, AlignedAllocator<T>>;

// Asks the kernel to back the whole 2 MiB pages inside [p, p + n) with huge pages (one TLB entry
// per 2 MiB: a decode step at depth walks the cache's every page). A hint; ignored where unsupported.
void advise_huge_pages(void* p, size_t n);

// v resized to n elements with the huge-page hint given before its pages fault in (the resize's
// zeroing is what touches them).
template <class T>
void resize_with_huge_pages(aligned_vector<T>& v, size_t n) {
  v.reserve(n);
  advise_huge_pages(v.data(), n * sizeof(T));
  v.resize(n);
}

}  // namespace aha
