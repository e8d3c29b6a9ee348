#include "descent/optim/optimizer.hpp"

#include <cmath>
#include <sstream>

#include "descent/error.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::optim {
namespace {

class Constant final : public Schedule {
 public:
  explicit Constant(double eps) : eps_(eps) {}
  double at(std::int64_t) const override { return eps_; }
  std::string describe() const override {
    std::ostringstream out;
    out << "constant(" << eps_ << ")";
    return out.str();
  }

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
    std::ostringstream out;
    out << "linear(" << eps0_ << " -> " << eps_tau_ << " at step " << tau_ << ")";
    return out.str();
  }

 private:
  double eps0_, eps_tau_;
  std::int64_t tau_;
};

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const SgdOptions& o) : o_(o) {}

  void step(ParameterArena& arena, std::int64_t k) override {
    const double eps = o_.schedule->at(k);
    const Tensor& theta = arena.values();
    const Tensor& g = arena.grads();
    if (o_.alpha > 0.0 && !v_.defined()) v_ = Tensor::zeros(theta.shape(), theta.dtype());
    dispatch_float(theta.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* th = theta.data<T>();
      const T* gr = g.data<T>();
      const T e = static_cast<T>(eps);
      if (o_.alpha == 0.0) {
        parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
          for (std::int64_t i = i0; i < i1; ++i) th[i] -= e * gr[i];  // theta <- theta - eps g
        });
        return;
      }
      T* v = v_.data<T>();
      const T a = static_cast<T>(o_.alpha);
      parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) {
          v[i] = a * v[i] - e * gr[i];  // v <- alpha v - eps g
          th[i] += v[i];                // theta <- theta + v
        }
      });
    });
  }

  double learning_rate(std::int64_t k) const override { return o_.schedule->at(k); }
  std::string describe() const override {
    std::ostringstream out;
    out << (o_.alpha > 0 ? "momentum" : "sgd") << "(eps = " << o_.schedule->describe();
    if (o_.alpha > 0) out << ", alpha = " << o_.alpha;
    out << ")";
    return out.str();
  }
  std::vector<Tensor> state() const override {
    if (v_.defined()) return {v_};
    return {};
  }

 private:
  SgdOptions o_;
  Tensor v_;
};

}  // namespace

std::shared_ptr<Schedule> constant(double eps) {
  if (!(eps > 0.0) || !std::isfinite(eps)) throw ConfigError("learning rate must be positive and finite, got " + std::to_string(eps));
  return std::make_shared<Constant>(eps);
}

std::shared_ptr<Schedule> linear_decay(double eps0, double eps_tau, std::int64_t tau) {
  if (!(eps0 > 0.0) || !std::isfinite(eps0)) throw ConfigError("linear schedule: eps_0 must be positive, got " + std::to_string(eps0));
  if (!(eps_tau >= 0.0) || !std::isfinite(eps_tau)) {
    throw ConfigError("linear schedule: eps_tau must be >= 0, got " + std::to_string(eps_tau));
  }
  if (tau < 1) throw ConfigError("linear schedule: tau must be >= 1 step, got " + std::to_string(tau));
  return std::make_shared<LinearDecay>(eps0, eps_tau, tau);
}

std::unique_ptr<Optimizer> sgd(const SgdOptions& options) {
  if (!options.schedule) throw ConfigError("sgd: no learning-rate schedule");
  if (!(options.alpha >= 0.0 && options.alpha < 1.0)) {
    throw ConfigError("sgd: momentum alpha must be in [0, 1), got " + std::to_string(options.alpha));
  }
  return std::make_unique<Sgd>(options);
}

}  // namespace descent::optim
