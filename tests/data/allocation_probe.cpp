// The global operator new/delete of the data_tests binary, with a probe for the largest request
// (allocation_probe.hpp). Only the plain and array forms are replaced; the aligned forms keep
// the standard library's own new/delete pairs.
#include "allocation_probe.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

namespace {

std::atomic<bool> probing{false};
std::atomic<std::size_t> largest{0};

void* allocate(std::size_t size) {
  if (probing.load(std::memory_order_relaxed)) {
    std::size_t seen = largest.load(std::memory_order_relaxed);
    while (size > seen && !largest.compare_exchange_weak(seen, size, std::memory_order_relaxed)) {
    }
  }
  return std::malloc(size == 0 ? 1 : size);
}

}  // namespace

void* operator new(std::size_t size) {
  if (void* p = allocate(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = allocate(size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
// Every pointer these receive comes from allocate() above, i.e. from malloc; GCC cannot see
// that and takes free() inside a replacement operator delete for a mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace descent::data::testing {

std::size_t largest_allocation_during(const std::function<void()>& body) {
  largest.store(0);
  probing.store(true);
  try {
    body();
  } catch (...) {
    probing.store(false);
    throw;
  }
  probing.store(false);
  return largest.load();
}

namespace {

// Keeps the probed vector observable, so that the allocation cannot be optimized away.
void* volatile sink = nullptr;

TEST(AllocationProbe, SeesTheLargestRequest) {
  const std::size_t seen = largest_allocation_during([] {
    std::vector<char> small(100);
    std::vector<char> big(1 << 20);
    sink = small.data();
    sink = big.data();
  });
  EXPECT_EQ(seen, std::size_t{1} << 20);
  EXPECT_EQ(largest_allocation_during([] {}), 0u);
}

}  // namespace
}  // namespace descent::data::testing
