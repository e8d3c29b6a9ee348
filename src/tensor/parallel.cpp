#include "descent/tensor/parallel.hpp"

#include <omp.h>

namespace descent {

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  if (n >= 1) omp_set_num_threads(n);
}

}  // namespace descent
