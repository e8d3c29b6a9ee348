#pragma once
// The threading rule of a training run, chosen at run time by timing the run's own steps.
//
// Which matrix products and element-wise passes run on the calling thread rather than on all
// threads is a process-wide rule (kernels::set_gemm_serial_below, set_elementwise_serial_below,
// set_elementwise_follow_below). The built-in thresholds were measured on one CPU (an AMD Zen 5,
// docs/performance.md, "Small products and passes on one thread"); on another the opposite
// choice can be 25% faster (an Intel Xeon: the MLP at batch 32, 2 threads, 71k examples/s with
// them, 90k with every product split). No figure of one CPU is right for the next, so the
// training loop times its first steps under each candidate rule, alternating, and keeps the
// fastest for the rest of the run:
//
//   train::ThreadRuleTuner tuner(train::thread_rules());
//   for (std::int64_t k = 0; ...; ++k) {
//     tuner.begin_step();                      // applies this step's rule
//     train::train_step(net, arena, *opt, tape, x, y, k);
//     tuner.end_step();                        // its time; past the schedule, the winner stays
//   }
//
// Results: the rule decides which products split across the threads, and a split can change
// a product's rounding (oneDNN's and OpenBLAS's sgemm on the MLP's first layer, k = 784, are
// not bit-identical on 1 and 2 threads; docs/performance.md, session 11). So a run whose rule
// is chosen by timing is repeatable only to rounding. Deterministic mode is not tuned (its
// products run in fixed tiles, and nothing in it may depend on a timing); a fixed rule
// (config `thread_rule`, bench --thread-rule) is repeatable bit for bit.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace descent::train {

// One setting of the three thresholds.
struct ThreadRule {
  std::string_view name;
  std::int64_t gemm_serial_below = 0;
  std::int64_t elementwise_serial_below = 0;
  std::int64_t elementwise_follow_below = 0;
  void apply() const;  // sets the three process-wide thresholds
  bool operator==(const ThreadRule&) const = default;
};

// The named rules, the tuner's candidates, the built-in one first:
//   small_serial  products under 2^23 multiply-adds (m n k) on one thread: the built-in defaults
//   tiny_serial   products under 2^20 on one thread
//   parallel      every product split across the threads
// Each keeps the built-in element-wise thresholds (splitting the element-wise passes as well
// was slower in the cases measured: docs/performance.md, session 11).
std::span<const ThreadRule> thread_rules();
// The rule called `name`; throws std::invalid_argument naming the known ones otherwise.
const ThreadRule& thread_rule(std::string_view name);
// "auto" and the rules' names: the values of the config key `thread_rule`.
std::span<const std::string_view> thread_rule_names();

class ThreadRuleTuner {
 public:
  struct Options {
    int warmup_steps = 5;    // untimed steps under the first candidate (the first steps are slow)
    int steps_per_turn = 4;  // consecutive steps of one candidate; the first of each turn is not timed
    int rounds = 6;          // turns of every candidate, each round in a rotated order
    // Another candidate replaces the first (the built-in rule) only when its median step is
    // faster by at least this fraction: noise does not move a run off the built-in rule.
    double margin = 0.03;
  };
  using Clock = std::function<double()>;  // seconds; steady_clock unless a test injects one

  explicit ThreadRuleTuner(std::vector<ThreadRule> candidates);
  ThreadRuleTuner(std::vector<ThreadRule> candidates, Options options, Clock clock = {});

  // Applies the rule of the next step (during the schedule a candidate, afterwards the
  // chosen one) and starts its clock.
  void begin_step();
  // Stops the step's clock. The step that ends the schedule chooses.
  void end_step();
  // The same as begin_step + end_step, with the step's time given (tests, callers that time
  // the step themselves). Returns the index of the candidate the step ran under.
  std::size_t record(double seconds);

  // The candidate the next step runs under (it is what begin_step applies).
  std::size_t next_candidate() const;
  bool done() const { return step_ >= schedule_steps(); }
  std::int64_t schedule_steps() const;  // warmup + rounds * candidates * steps_per_turn
  // After done(): the chosen candidate, kept for every later step.
  std::size_t chosen_index() const { return chosen_; }
  const ThreadRule& chosen() const { return candidates_[chosen_]; }
  // The median timed step of each candidate (seconds; 0 before it was timed).
  std::vector<double> medians() const;
  const std::vector<ThreadRule>& candidates() const { return candidates_; }
  // After done(): "parallel (median ms per step: small_serial 0.449, tiny_serial 0.371, parallel 0.356)".
  std::string summary() const;

 private:
  void choose();

  std::vector<ThreadRule> candidates_;
  Options options_;
  Clock clock_;
  std::vector<std::vector<double>> times_;  // per candidate
  std::int64_t step_ = 0;
  std::size_t chosen_ = 0;
  double started_ = 0;
};

}  // namespace descent::train
