#include "descent/optim/schedule.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <sstream>

#include "descent/error.hpp"

namespace descent::optim {
namespace {

std::string num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

void require(bool ok, const std::string& schedule, const std::string& field, double value, const char* expected) {
  if (!ok || !std::isfinite(value)) {
    throw ConfigError(schedule + " schedule: " + field + " must be " + expected + ", got " + num(value));
  }
}

class Constant final : public Schedule {
 public:
  explicit Constant(double eps) : eps_(eps) {}
  double at(std::int64_t) const override { return eps_; }
  std::string describe() const override { return "constant(" + num(eps_) + ")"; }

 private:
  double eps_;
};

class LinearDecay final : public Schedule {
 public:
  LinearDecay(double eps0, double eps_tau, std::int64_t tau) : eps0_(eps0), eps_tau_(eps_tau), tau_(tau) {}
  double at(std::int64_t k) const override {
    if (k >= tau_) return eps_tau_;
    const double a = static_cast<double>(k) / static_cast<double>(tau_);  // alpha = k / tau
    return (1.0 - a) * eps0_ + a * eps_tau_;                              // eq. 8.14
  }
  std::string describe() const override {
    return "linear(" + num(eps0_) + " -> " + num(eps_tau_) + " at step " + std::to_string(tau_) + ")";
  }

 private:
  double eps0_, eps_tau_;
  std::int64_t tau_;
};

class StepDecay final : public Schedule {
 public:
  explicit StepDecay(const StepDecayOptions& o) : o_(o) {}
  double at(std::int64_t k) const override {
    return o_.eps0 * std::pow(o_.gamma, static_cast<double>(k / o_.every));  // eps0 gamma^floor(k/every)
  }
  std::string describe() const override {
    return "step(" + num(o_.eps0) + ", x" + num(o_.gamma) + " every " + std::to_string(o_.every) + ")";
  }

 private:
  StepDecayOptions o_;
};

class ExponentialDecay final : public Schedule {
 public:
  explicit ExponentialDecay(const ExponentialDecayOptions& o) : o_(o) {}
  double at(std::int64_t k) const override { return o_.eps0 * std::pow(o_.gamma, static_cast<double>(k)); }
  std::string describe() const override { return "exponential(" + num(o_.eps0) + ", x" + num(o_.gamma) + ")"; }

 private:
  ExponentialDecayOptions o_;
};

class InverseTime final : public Schedule {
 public:
  explicit InverseTime(const InverseTimeOptions& o) : o_(o) {}
  double at(std::int64_t k) const override { return o_.eps0 / (1.0 + o_.decay * static_cast<double>(k)); }
  std::string describe() const override { return "inverse_time(" + num(o_.eps0) + ", decay " + num(o_.decay) + ")"; }

 private:
  InverseTimeOptions o_;
};

class Cosine final : public Schedule {
 public:
  explicit Cosine(const CosineOptions& o) : o_(o) {}
  double at(std::int64_t k) const override {
    if (k < o_.warmup) return o_.eps0 * static_cast<double>(k + 1) / static_cast<double>(o_.warmup);
    const double t = std::min(1.0, static_cast<double>(k - o_.warmup) / static_cast<double>(o_.total - o_.warmup));
    return o_.eps_min + (o_.eps0 - o_.eps_min) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
  }
  std::string describe() const override {
    return "cosine(" + num(o_.eps0) + " -> " + num(o_.eps_min) + ", warmup " + std::to_string(o_.warmup) + ", total " +
           std::to_string(o_.total) + ")";
  }

 private:
  CosineOptions o_;
};

class Plateau final : public Schedule {
 public:
  explicit Plateau(const PlateauOptions& o) : o_(o), eps_(o.eps0) {}
  double at(std::int64_t) const override { return eps_; }
  std::string describe() const override {
    return "reduce_on_plateau(" + num(o_.eps0) + ", x" + num(o_.factor) + " after " + std::to_string(o_.patience) +
           " bad observations; now " + num(eps_) + ")";
  }
  void observe(double metric) override {
    if (metric < best_ * (1.0 - o_.threshold)) {  // an improvement by more than the relative threshold
      best_ = metric;
      bad_ = 0;
    } else {
      ++bad_;
    }
    if (cooldown_ > 0) {  // right after a reduction, observations do not count
      --cooldown_;
      bad_ = 0;
    }
    if (bad_ > o_.patience) {
      eps_ = std::max(eps_ * o_.factor, o_.eps_min);
      cooldown_ = o_.cooldown;
      bad_ = 0;
    }
  }
  std::vector<double> state() const override {
    return {eps_, best_, static_cast<double>(bad_), static_cast<double>(cooldown_)};
  }
  void load_state(const std::vector<double>& s) override {
    if (s.size() != 4) Schedule::load_state(s);
    eps_ = s[0];
    best_ = s[1];
    bad_ = static_cast<std::int64_t>(s[2]);
    cooldown_ = static_cast<std::int64_t>(s[3]);
  }

 private:
  PlateauOptions o_;
  double eps_;
  double best_ = std::numeric_limits<double>::infinity();
  std::int64_t bad_ = 0;
  std::int64_t cooldown_ = 0;
};

}  // namespace

void Schedule::load_state(const std::vector<double>& state) {
  if (state.size() != this->state().size()) {
    throw DataError("optimizer state: schedule " + describe() + " expects " + std::to_string(this->state().size()) +
                    " state values, got " + std::to_string(state.size()));
  }
}

std::shared_ptr<Schedule> constant(double eps) {
  require(eps > 0.0, "constant", "eps (the learning rate)", eps, "> 0");
  return std::make_shared<Constant>(eps);
}

std::shared_ptr<Schedule> linear_decay(double eps0, double eps_tau, std::int64_t tau) {
  require(eps0 > 0.0, "linear", "eps_0", eps0, "> 0");
  require(eps_tau >= 0.0, "linear", "eps_tau", eps_tau, ">= 0");
  if (tau < 1) throw ConfigError("linear schedule: tau must be >= 1 step, got " + std::to_string(tau));
  return std::make_shared<LinearDecay>(eps0, eps_tau, tau);
}

std::shared_ptr<Schedule> step_decay(const StepDecayOptions& o) {
  require(o.eps0 > 0.0, "step", "eps0", o.eps0, "> 0");
  require(o.gamma > 0.0 && o.gamma <= 1.0, "step", "gamma", o.gamma, "in (0, 1]");
  if (o.every < 1) throw ConfigError("step schedule: every must be >= 1 step, got " + std::to_string(o.every));
  return std::make_shared<StepDecay>(o);
}

std::shared_ptr<Schedule> exponential_decay(const ExponentialDecayOptions& o) {
  require(o.eps0 > 0.0, "exponential", "eps0", o.eps0, "> 0");
  require(o.gamma > 0.0 && o.gamma <= 1.0, "exponential", "gamma", o.gamma, "in (0, 1]");
  return std::make_shared<ExponentialDecay>(o);
}

std::shared_ptr<Schedule> inverse_time(const InverseTimeOptions& o) {
  require(o.eps0 > 0.0, "inverse_time", "eps0", o.eps0, "> 0");
  require(o.decay >= 0.0, "inverse_time", "decay", o.decay, ">= 0");
  return std::make_shared<InverseTime>(o);
}

std::shared_ptr<Schedule> cosine(const CosineOptions& o) {
  require(o.eps0 > 0.0, "cosine", "eps0", o.eps0, "> 0");
  require(o.eps_min >= 0.0 && o.eps_min <= o.eps0, "cosine", "eps_min", o.eps_min, "in [0, eps0]");
  if (o.warmup < 0 || o.total <= o.warmup) {
    throw ConfigError("cosine schedule: expected 0 <= warmup < total, got warmup " + std::to_string(o.warmup) +
                      ", total " + std::to_string(o.total));
  }
  return std::make_shared<Cosine>(o);
}

std::shared_ptr<Schedule> reduce_on_plateau(const PlateauOptions& o) {
  require(o.eps0 > 0.0, "reduce_on_plateau", "eps0", o.eps0, "> 0");
  require(o.factor > 0.0 && o.factor < 1.0, "reduce_on_plateau", "factor", o.factor, "in (0, 1)");
  require(o.threshold >= 0.0, "reduce_on_plateau", "threshold", o.threshold, ">= 0");
  require(o.eps_min >= 0.0, "reduce_on_plateau", "eps_min", o.eps_min, ">= 0");
  if (o.patience < 0 || o.cooldown < 0) {
    throw ConfigError("reduce_on_plateau schedule: patience and cooldown must be >= 0, got " +
                      std::to_string(o.patience) + " and " + std::to_string(o.cooldown));
  }
  return std::make_shared<Plateau>(o);
}

}  // namespace descent::optim
