#pragma once
// How far one float32 vector lies from a reference, for tests that compare two computations
// of the same quantity to rounding: ||a - b|| / ||b||, summed in double.
#include <cmath>
#include <cstddef>
#include <vector>

namespace descent::testing {

inline double relative_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    n += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(d / n);
}

}  // namespace descent::testing
