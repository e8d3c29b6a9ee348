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

void write_blobs(const std::filesystem::path& path, int n, std::uint64_t seed, Blobs kind) {
  static constexpr double kSeparated[3][4] = {{2, 0, 0, 1}, {0, 2, -1, 0}, {-2, -1, 1, 0}};
  static constexpr double kOverlapping[3][4] = {{1, 0, 0, 1}, {0, 1, -1, 0}, {-1, -1, 1, 0}};
  const auto& centers = kind == Blobs::separated ? kSeparated : kOverlapping;
  const double noise = kind == Blobs::separated ? 0.5 : 0.8;
  Rng rng(seed);
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng.below(3));
    out << c;
    for (int k = 0; k < 4; ++k) out << "," << centers[c][k] + noise * rng.normal();
    out << "\n";
  }
}

}  // namespace descent::testing
