#include "support/synthetic_csv.hpp"

#include <fstream>

#include "descent/init/rng.hpp"

namespace descent::testing {

void write_three_class_csvs(const std::filesystem::path& dir, const ThreeClassCsv& spec) {
  Rng rng(spec.seed);
  for (const auto& [name, n] : {std::pair{"train.csv", spec.train}, std::pair{"test.csv", spec.test}}) {
    std::ofstream f(dir / name);
    for (int i = 0; i < n; ++i) {
      const int c = static_cast<int>(rng.below(3));
      f << c;
      for (int k = 0; k < spec.features; ++k) f << "," << (k % 3 == c ? 1.0 : 0.0) + spec.noise * rng.normal();
      f << "\n";
    }
  }
}

}  // namespace descent::testing
