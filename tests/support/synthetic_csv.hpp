#pragma once
// The CLI tests' small data set: three classes, each example `features` numbers where the
// features k with k % 3 == class are 1 plus noise and the others noise alone (noise standard
// deviation `noise`), so a small MLP learns it in a few epochs. train.csv and test.csv are
// written into `dir` in that order from one generator seeded with `seed`.
//   write_three_class_csvs(dir_, {.seed = 5, .train = 1200, .test = 200});
#include <cstdint>
#include <filesystem>
#include <string>

namespace descent::testing {

struct ThreeClassCsv {
  std::uint64_t seed = 5;
  int train = 1000;
  int test = 200;
  int features = 8;
  double noise = 0.9;
};

void write_three_class_csvs(const std::filesystem::path& dir, const ThreeClassCsv& spec);

// The trainer tests' data: three Gaussian blobs in 4-D (label, x0..x3 per line), `n` examples
// from a generator seeded with `seed`. separated: centers about 2 apart, noise 0.5 (a small
// MLP reaches ~0 error); overlapping: centers about 1 apart, noise 0.8 (errors remain).
enum class Blobs { separated, overlapping };
void write_blobs(const std::filesystem::path& path, int n, std::uint64_t seed, Blobs kind);

// The diagnostics tests' tiny problem: train.csv and test.csv in `dir`, 200 examples each,
// 3 classes, 3 features. tiny_config is its config: a float64 3-7-3 tanh MLP
// (3*7 + 7 + 7*3 + 3 = 52 parameters), `epochs` epochs, the run folder dir/runs/tiny, and
// `rest` (the [optimizer] and whatever else) appended.
void write_tiny_csvs(const std::filesystem::path& dir);
std::string tiny_config(const std::filesystem::path& dir, int epochs, const std::string& rest);

}  // namespace descent::testing
