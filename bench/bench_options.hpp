#pragma once
// What the training benchmarks (train_mlp, train_cnn, train_lstm) share: their command-line
// options, the clock and the median. Each benchmark registers its options and parses:
//
//   bench::Common c{.batch = 128, .lr = 0.01};   // the defaults of this benchmark
//   bench::Options o("train_cnn");
//   o.common(c);                                 // --batch --lr --threads --reps --examples --data --profile
//                                                // --gemm-serial-below --elementwise-serial-below --elementwise-follow-below
//                                                // --thread-rule --flush-denormals
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
#include "descent/train/thread_rule.hpp"

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
  // --thread-rule: auto (the warm-up times the rules, train::ThreadRuleTuner) or a rule's name
  // (small_serial, tiny_serial, parallel). A threshold given above overrides the rule's.
  std::string thread_rule = "auto";
  // --flush-denormals 0|1: denormals read and written as zero (descent::set_flush_denormals),
  // as the config key flush_denormals (default on) and PyTorch's set_flush_denormal.
  int flush_denormals = 1;
  bool thresholds_given() const {
    return gemm_serial_below >= 0 || elementwise_serial_below >= 0 || elementwise_follow_below >= 0;
  }
};

// Sets the thread count and the thresholds of `c`.
inline void apply_threads(const Common& c) {
  descent::set_num_threads(c.threads);
  descent::set_flush_denormals(c.flush_denormals != 0);
  if (c.thread_rule != "auto") descent::train::thread_rule(c.thread_rule).apply();
  if (c.gemm_serial_below >= 0) descent::kernels::set_gemm_serial_below(c.gemm_serial_below);
  if (c.elementwise_serial_below >= 0) descent::set_elementwise_serial_below(c.elementwise_serial_below);
  if (c.elementwise_follow_below >= 0) descent::set_elementwise_follow_below(c.elementwise_follow_below);
}

// The warm-up steps before the timed epochs. With --thread-rule auto, more than one thread and
// no threshold given, the run's first steps go through train::ThreadRuleTuner until it has
// chosen (as the trainer's do), then `plain` more; else `plain` steps. step(s) runs minibatch
// s (cycling over the `steps` of an epoch, from minibatch `first`). Returns the JSON fields that say which rule ran:
// `, "thread_rule": "parallel", "thread_rule_ms": {"small_serial": 0.449, ...}, "thread_rule_tuning_s": 0.031`.
template <class Step>
std::string warm_up(const Common& c, std::int64_t plain, std::int64_t steps, Step&& step, std::int64_t first = 0) {
  std::int64_t s = first;
  auto next = [&] { return s++ % steps; };
  plain = std::min(plain, steps - first);
  if (c.thread_rule != "auto" || c.threads <= 1 || c.thresholds_given()) {
    for (std::int64_t i = 0; i < plain; ++i) step(next());
    return ", \"thread_rule\": \"" + (c.thresholds_given() ? std::string("thresholds given") : c.thread_rule) + "\"";
  }
  const auto rules = descent::train::thread_rules();
  descent::train::ThreadRuleTuner tuner(std::vector<descent::train::ThreadRule>(rules.begin(), rules.end()));
  const auto t0 = Clock::now();
  while (!tuner.done()) {
    tuner.begin_step();
    step(next());
    tuner.end_step();
  }
  const double tuning_s = seconds(t0, Clock::now());
  for (std::int64_t i = 0; i < plain; ++i) step(next());
  std::string out = ", \"thread_rule\": \"" + std::string(tuner.chosen().name) + "\", \"thread_rule_ms\": {";
  const std::vector<double> m = tuner.medians();
  char buf[96];
  for (std::size_t i = 0; i < m.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s\"%s\": %.4f", i ? ", " : "", std::string(rules[i].name).c_str(), 1e3 * m[i]);
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "}, \"thread_rule_tuning_s\": %.3f", tuning_s);
  return out + buf;
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
    value("--thread-rule", c.thread_rule);
    value("--flush-denormals", c.flush_denormals);
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
    return check_thread_rule(c);
  }
  bool check_thread_rule(const Common& c) const {
    if (c.flush_denormals != 0 && c.flush_denormals != 1) return fail("--flush-denormals must be 0 or 1");
    if (c.thread_rule == "auto") return true;
    try {
      (void)descent::train::thread_rule(c.thread_rule);
    } catch (const std::exception& e) {
      return fail(std::string("--thread-rule: ") + e.what() + " or auto");
    }
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
