#include "support/synthetic_csv.hpp"

#include <fstream>
#include <sstream>

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

void write_tiny_csvs(const std::filesystem::path& dir) {
  Rng rng(7);
  for (const char* name : {"train.csv", "test.csv"}) {
    std::ofstream f(dir / name);
    for (int i = 0; i < 200; ++i) {
      const int c = static_cast<int>(rng.below(3));
      f << c << "," << c - 1.0 + rng.normal() * 0.8 << "," << rng.normal() << "," << (c == 2 ? -1.0 : 1.0) + rng.normal() << "\n";
    }
  }
}

std::string tiny_config(const std::filesystem::path& dir, int epochs, const std::string& rest) {
  std::ostringstream c;
  c << "name = \"tiny\"\nepochs = " << epochs << "\nprogress = \"none\"\nout_dir = \"" << (dir / "runs").string() << "\"\n"
    << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir / "train.csv").string() << "\"\ntest_features = \""
    << (dir / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 50\n[model]\nhidden = [7]\nactivation = \"tanh\"\n"
    << "dtype = \"f64\"\n" << rest;
  return c.str();
}

}  // namespace descent::testing
