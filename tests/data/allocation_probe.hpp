#pragma once
// The largest single heap allocation made while a callable runs: the tests use it to show that
// a reader refuses a header claiming 10^12 elements before allocating anything for it.
// allocation_probe.cpp replaces the global operator new of the data_tests binary; outside
// a probe the replacement only forwards to malloc.
#include <cstddef>
#include <functional>

namespace descent::data::testing {

// Runs `body` and returns the size of the largest operator new request made meanwhile (by any
// thread). Exceptions from `body` propagate.
std::size_t largest_allocation_during(const std::function<void()>& body);

}  // namespace descent::data::testing
