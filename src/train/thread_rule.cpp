#include "descent/train/thread_rule.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <utility>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::train {

namespace {

constexpr std::int64_t kEwSerial = elementwise_serial_below_default;
constexpr std::int64_t kEwFollow = elementwise_follow_below_default;

const std::array<ThreadRule, 3> kRules = {{
    {"small_serial", kernels::gemm_serial_below_default, kEwSerial, kEwFollow},
    {"tiny_serial", std::int64_t{1} << 20, kEwSerial, kEwFollow},
    {"parallel", 0, kEwSerial, kEwFollow},
}};

constexpr std::array<std::string_view, 4> kNames = {"auto", "small_serial", "tiny_serial", "parallel"};

double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void ThreadRule::apply() const {
  kernels::set_gemm_serial_below(gemm_serial_below);
  set_elementwise_serial_below(elementwise_serial_below);
  set_elementwise_follow_below(elementwise_follow_below);
}

std::span<const ThreadRule> thread_rules() { return kRules; }

std::span<const std::string_view> thread_rule_names() { return kNames; }

const ThreadRule& thread_rule(std::string_view name) {
  for (const ThreadRule& r : kRules) {
    if (r.name == name) return r;
  }
  std::string known;
  for (const ThreadRule& r : kRules) known += (known.empty() ? "" : ", ") + std::string(r.name);
  throw std::invalid_argument("unknown thread rule '" + std::string(name) + "' (expected one of " + known + ")");
}

ThreadRuleTuner::ThreadRuleTuner(std::vector<ThreadRule> candidates) : ThreadRuleTuner(std::move(candidates), Options{}) {}

ThreadRuleTuner::ThreadRuleTuner(std::vector<ThreadRule> candidates, Options options, Clock clock)
    : candidates_(std::move(candidates)), options_(options), clock_(clock ? std::move(clock) : Clock(steady_seconds)) {
  if (candidates_.empty()) throw std::invalid_argument("ThreadRuleTuner: no candidate rules");
  if (options_.warmup_steps < 0 || options_.steps_per_turn < 2 || options_.rounds < 1 || !(options_.margin >= 0) ||
      !(options_.margin < 1)) {
    throw std::invalid_argument(
        "ThreadRuleTuner: expected warmup_steps >= 0, steps_per_turn >= 2, rounds >= 1, margin in [0, 1)");
  }
  times_.resize(candidates_.size());
  if (candidates_.size() == 1) step_ = schedule_steps();  // nothing to choose
}

std::int64_t ThreadRuleTuner::schedule_steps() const {
  if (candidates_.size() == 1) return 0;
  return options_.warmup_steps +
         static_cast<std::int64_t>(options_.rounds) * static_cast<std::int64_t>(candidates_.size()) * options_.steps_per_turn;
}

std::size_t ThreadRuleTuner::next_candidate() const {
  if (done()) return chosen_;
  const std::int64_t s = step_ - options_.warmup_steps;
  if (s < 0) return 0;
  const auto c = static_cast<std::int64_t>(candidates_.size());
  const std::int64_t turn = s / options_.steps_per_turn;  // turn `turn` of the schedule
  const std::int64_t round = turn / c, slot = turn % c;
  return static_cast<std::size_t>((slot + round) % c);  // each round starts one candidate later
}

void ThreadRuleTuner::begin_step() {
  candidates_[next_candidate()].apply();
  started_ = clock_();
}

void ThreadRuleTuner::end_step() { record(clock_() - started_); }

std::size_t ThreadRuleTuner::record(double seconds) {
  const std::size_t c = next_candidate();
  if (done()) return c;
  const std::int64_t s = step_ - options_.warmup_steps;
  // The first step of a turn pays for the switch (data in the other core's cache): not timed.
  if (s >= 0 && s % options_.steps_per_turn != 0) times_[c].push_back(seconds);
  ++step_;
  if (done()) choose();
  return c;
}

void ThreadRuleTuner::choose() {
  const std::vector<double> m = medians();
  std::size_t best = 0;
  for (std::size_t i = 1; i < m.size(); ++i) {
    if (m[i] < m[best]) best = i;
  }
  // The first candidate stays unless the fastest beats it by the margin.
  chosen_ = m[best] < (1.0 - options_.margin) * m[0] ? best : 0;
  candidates_[chosen_].apply();
}

std::vector<double> ThreadRuleTuner::medians() const {
  std::vector<double> m;
  m.reserve(times_.size());
  for (const std::vector<double>& t : times_) m.push_back(median_of(t));
  return m;
}

std::string ThreadRuleTuner::summary() const {
  std::string s = std::string(chosen().name) + " (median ms per step:";
  const std::vector<double> m = medians();
  for (std::size_t i = 0; i < candidates_.size(); ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.3f", 1e3 * m[i]);
    s += (i ? ", " : " ") + std::string(candidates_[i].name) + buf;
  }
  return s + ")";
}

}  // namespace descent::train
