#include "descent/tensor/parallel.hpp"

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define DESCENT_HAVE_MXCSR 1
#endif

#include <algorithm>
#include <atomic>

namespace descent {
namespace {
std::atomic<std::int64_t> g_elementwise_serial_below{elementwise_serial_below_default};
}  // namespace

void set_elementwise_serial_below(std::int64_t n) { g_elementwise_serial_below.store(std::max<std::int64_t>(0, n)); }
std::int64_t elementwise_serial_below() { return g_elementwise_serial_below.load(std::memory_order_relaxed); }

namespace {
std::atomic<std::int64_t> g_elementwise_follow_below{elementwise_follow_below_default};
std::atomic<bool> g_last_products_serial{false};
}  // namespace

void set_elementwise_follow_below(std::int64_t n) { g_elementwise_follow_below.store(std::max<std::int64_t>(0, n)); }
std::int64_t elementwise_follow_below() { return g_elementwise_follow_below.load(std::memory_order_relaxed); }
void note_products_serial(bool serial) { g_last_products_serial.store(serial, std::memory_order_relaxed); }
bool last_products_serial() { return g_last_products_serial.load(std::memory_order_relaxed); }

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  if (n >= 1) omp_set_num_threads(n);
}

#ifdef DESCENT_HAVE_MXCSR
namespace {
constexpr unsigned kFlushBits = 0x8040;  // MXCSR FTZ (bit 15) | DAZ (bit 6)
void set_mxcsr_flush(bool on) {
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | kFlushBits) : (csr & ~kFlushBits));
}
}  // namespace

void set_flush_denormals(bool on) {
  set_mxcsr_flush(on);
  // every thread of the pool, the calling one included (a team of num_threads())
#pragma omp parallel
  set_mxcsr_flush(on);
}
bool flush_denormals() { return (_mm_getcsr() & kFlushBits) == kFlushBits; }
#else
void set_flush_denormals(bool) {}
bool flush_denormals() { return false; }
#endif

}  // namespace descent
