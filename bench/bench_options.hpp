#pragma once
// What the training benchmarks (train_mlp, train_cnn, train_lstm) share: their command-line
// options, the clock and the median. Each benchmark registers its options and parses:
//
//   bench::Common c{.batch = 128, .lr = 0.01};   // the defaults of this benchmark
//   bench::Options o("train_cnn");
//   o.common(c);                                 // --batch --lr --threads --reps --examples --data --profile
//                                                // --gemm-serial-below --elementwise-serial-below --elementwise-follow-below
//   o.value("--hidden", hidden);
//   if (!o.parse(argc, argv) || !o.check_common(c)) return 2;
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "descent/data/dataset.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The options every training benchmark has.
struct Common {
  std::int64_t batch = 128;
  double lr = 0.01;
  int threads = 2;
  int reps = 1;
  std::int64_t examples = 0;  // 0: the whole training file
  std::string data = descent::data::default_mnist_dir;
  bool profile = false;
  // Threading thresholds (kernels::set_gemm_serial_below, set_elementwise_serial_below);
  // -1 keeps the library's defaults.
  std::int64_t gemm_serial_below = -1;
  std::int64_t elementwise_serial_below = -1;
  std::int64_t elementwise_follow_below = -1;
};

// Sets the thread count and the thresholds of `c`.
inline void apply_threads(const Common& c) {
  descent::set_num_threads(c.threads);
  if (c.gemm_serial_below >= 0) descent::kernels::set_gemm_serial_below(c.gemm_serial_below);
  if (c.elementwise_serial_below >= 0) descent::set_elementwise_serial_below(c.elementwise_serial_below);
  if (c.elementwise_follow_below >= 0) descent::set_elementwise_follow_below(c.elementwise_follow_below);
}

class Options {
 public:
  explicit Options(std::string program) : program_(std::move(program)) {}

  void flag(const std::string& name, bool& target) { flags_[name] = &target; }
  void value(const std::string& name, std::string& target) {
    values_[name] = [&target](const std::string& v) { target = v; };
  }
  void value(const std::string& name, std::int64_t& target) {
    values_[name] = [&target](const std::string& v) { target = std::atoll(v.c_str()); };
  }
  void value(const std::string& name, int& target) {
    values_[name] = [&target](const std::string& v) { target = std::atoi(v.c_str()); };
  }
  void value(const std::string& name, double& target) {
    values_[name] = [&target](const std::string& v) { target = std::atof(v.c_str()); };
  }
  void common(Common& c) {
    value("--batch", c.batch);
    value("--lr", c.lr);
    value("--threads", c.threads);
    value("--reps", c.reps);
    value("--examples", c.examples);
    value("--data", c.data);
    flag("--profile", c.profile);
    value("--gemm-serial-below", c.gemm_serial_below);
    value("--elementwise-serial-below", c.elementwise_serial_below);
    value("--elementwise-follow-below", c.elementwise_follow_below);
  }

  // Reads argv; prints "<program>: <what>" and returns false for an unknown option or one
  // without its value.
  bool parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (const auto f = flags_.find(a); f != flags_.end()) {
        *f->second = true;
        continue;
      }
      const auto v = values_.find(a);
      if (v == values_.end()) return fail("unknown option " + a);
      if (i + 1 >= argc) return fail(a + " needs a value");
      v->second(argv[++i]);
    }
    return true;
  }

  // --batch, --threads, --reps >= 1, --examples >= 0, --lr > 0.
  bool check_common(const Common& c) const {
    if (c.batch < 1 || c.threads < 1 || c.reps < 1 || c.examples < 0 || !(c.lr > 0))
      return fail("expected --batch/--threads/--reps >= 1, --examples >= 0, --lr > 0");
    return true;
  }

  bool fail(const std::string& what) const {
    std::fprintf(stderr, "%s: %s\n", program_.c_str(), what.c_str());
    return false;
  }

 private:
  std::string program_;
  std::map<std::string, bool*> flags_;
  std::map<std::string, std::function<void(const std::string&)>> values_;
};

}  // namespace bench
