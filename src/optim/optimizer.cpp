// The optimizer that runs a chain, its fused loops, the factory of named chains, and
// Polyak averaging. Every fused loop below must compute, element by element, what its
// chain computes link by link (transform.cpp); tests/optim/properties_test.cpp (Fused) checks it.
#include "descent/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "descent/error.hpp"
#include "descent/optim/registry.hpp"
#include "descent/tensor/parallel.hpp"
#include "../tensor/dispatch.hpp"  // DESCENT_DISPATCH

namespace descent::optim {
namespace {

std::string num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// The fused loops. Each reads g and theta once and writes theta and its state once.
enum class Kernel : std::uint8_t { none, sgd, momentum, momentum_pytorch, nesterov, nesterov_pytorch, adagrad, rms, adam };

struct Fused {
  Kernel kernel = Kernel::none;
  double l2 = 0.0;         // add_decayed_weights before the scaling (L2)
  double decoupled = 0.0;  // add_decayed_weights after scale_by_adam (AdamW)
  double alpha = 0.0, rho = 0.0, rho1 = 0.0, rho2 = 0.0, delta = 0.0;
  Delta at = Delta::outside_root;
};

template <class T>
struct FusedArgs {
  T* th;
  const T* g;
  T* a;  // first state tensor: v, r or s
  T* b;  // second: Adam's r
  T minus_eps, l2, decoupled, alpha, rho, one_minus_rho, rho2, one_minus_rho2, bc1, bc2, delta;
  bool inside;
};

template <class T, bool L2>
DESCENT_DISPATCH void fused_chunk(Kernel kernel, const FusedArgs<T>& f, std::int64_t i0, std::int64_t i1) {
  T* const th = f.th;
  const T* const g = f.g;
  T* const a = f.a;
  T* const b = f.b;
  const T me = f.minus_eps, l2 = f.l2;
// g_i, with L2 weight decay added when the chain has it: g + lambda theta
#define DESCENT_G(i) (L2 ? g[i] + l2 * th[i] : g[i])
  switch (kernel) {
    case Kernel::none:
      break;
    case Kernel::sgd:
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + DESCENT_G(i) * me;  // theta <- theta - eps g
      break;
    case Kernel::momentum: {
      const T al = f.alpha;
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) {
        a[i] = al * a[i] + DESCENT_G(i) * me;  // v <- alpha v - eps g
        th[i] = th[i] + a[i];                  // theta <- theta + v
      }
      break;
    }
    case Kernel::momentum_pytorch: {
      const T al = f.alpha;
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) {
        a[i] = al * a[i] + DESCENT_G(i);  // v <- mu v + g
        th[i] = th[i] + a[i] * me;        // theta <- theta - lr v
      }
      break;
    }
    case Kernel::nesterov: {
      const T al = f.alpha;
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) {
        const T v_old = a[i];
        a[i] = al * a[i] + DESCENT_G(i) * me;  // v <- alpha v - eps g(theta + alpha v)
        th[i] = th[i] + (a[i] - al * v_old);   // from theta + alpha v_old to theta + v
      }
      break;
    }
    case Kernel::nesterov_pytorch: {
      const T al = f.alpha;
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) {
        const T gi = DESCENT_G(i);
        a[i] = al * a[i] + gi;                // v <- mu v + g
        th[i] = th[i] + (gi + al * a[i]) * me;  // theta <- theta - lr (g + mu v)
      }
      break;
    }
    case Kernel::adagrad: {
      const T delta = f.delta;
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) {
        const T gi = DESCENT_G(i);
        a[i] = a[i] + gi * gi;                                 // r <- r + g (.) g
        th[i] = th[i] + gi / (delta + std::sqrt(a[i])) * me;  // theta <- theta - eps g / (delta + sqrt(r))
      }
      break;
    }
    case Kernel::rms: {
      const T rho = f.rho, omr = f.one_minus_rho, delta = f.delta;
      if (f.inside) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) {
          const T gi = DESCENT_G(i);
          a[i] = rho * a[i] + omr * gi * gi;                    // r <- rho r + (1 - rho) g (.) g
          th[i] = th[i] + gi / std::sqrt(delta + a[i]) * me;  // theta <- theta - eps g / sqrt(delta + r)
        }
      } else {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) {
          const T gi = DESCENT_G(i);
          a[i] = rho * a[i] + omr * gi * gi;                      // r <- rho r + (1 - rho) g (.) g
          th[i] = th[i] + gi / (std::sqrt(a[i]) + delta) * me;  // theta <- theta - eps g / (sqrt(r) + delta)
        }
      }
      break;
    }
    case Kernel::adam: {
      const T rho1 = f.rho, omr1 = f.one_minus_rho, rho2 = f.rho2, omr2 = f.one_minus_rho2;
      const T bc1 = f.bc1, bc2 = f.bc2, delta = f.delta, wd = f.decoupled;
      if (f.inside) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) {
          const T gi = DESCENT_G(i);
          a[i] = rho1 * a[i] + omr1 * gi;       // s <- rho1 s + (1 - rho1) g
          b[i] = rho2 * b[i] + omr2 * gi * gi;  // r <- rho2 r + (1 - rho2) g (.) g
          const T u = a[i] / bc1 / std::sqrt(b[i] / bc2 + delta) + wd * th[i];
          th[i] = th[i] + u * me;
        }
      } else {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) {
          const T gi = DESCENT_G(i);
          a[i] = rho1 * a[i] + omr1 * gi;       // s <- rho1 s + (1 - rho1) g
          b[i] = rho2 * b[i] + omr2 * gi * gi;  // r <- rho2 r + (1 - rho2) g (.) g
          // s_hat / (sqrt(r_hat) + delta) (+ lambda theta for AdamW); theta <- theta - eps (...)
          const T u = a[i] / bc1 / (std::sqrt(b[i] / bc2) + delta) + wd * th[i];
          th[i] = th[i] + u * me;
        }
      }
      break;
    }
  }
#undef DESCENT_G
}

class ChainOptimizer final : public Optimizer {
 public:
  ChainOptimizer(Transform chain, const OptimizerOptions& o, const Fused& fused, std::string name)
      : chain_(std::move(chain)), o_(o), fused_(fused), name_(std::move(name)) {
    chain_->schedules(schedules_);
    interim_ = chain_->has_interim_point();
  }

  void prepare(ParameterArena& arena, std::int64_t k) override {
    ensure_init(arena);
    if (prepared_k_ == k) return;  // already at the interim point of update k
    prepared_k_ = k;
    if (!interim_) return;
    const Tensor& theta = arena.values();
    dispatch_float(theta.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* th = theta.data<T>();
      if (fused_.kernel == Kernel::nesterov) {
        const T* v = refs_.tensors[0].data<T>();
        const T al = static_cast<T>(fused_.alpha);
        parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
          for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + al * v[i];  // theta <- theta + alpha v
        });
        return;
      }
      shift_.fill(0.0);
      chain_->interim(shift_, k);
      const T* d = shift_.data<T>();
      parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + d[i];
      });
    });
  }

  bool has_interim() const override { return interim_; }
  void discard_prepared() override { prepared_k_ = -1; }

  void step(ParameterArena& arena, std::int64_t k) override {
    ensure_init(arena);
    if (interim_ && prepared_k_ != k) {
      throw ConfigError(name_ + ": step(" + std::to_string(k) +
                        ") without prepare(): Nesterov momentum needs the gradient at the interim point theta + alpha v");
    }
    prepared_k_ = -1;
    const Tensor& theta = arena.values();
    if (fused_.kernel != Kernel::none) {
      fused_step(theta, arena.grads(), k);
    } else {
      u_.copy_from(arena.grads());  // u <- g
      chain_->update(u_, theta, k);
      dispatch_float(theta.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* th = theta.data<T>();
        const T* u = u_.data<T>();
        parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
          for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + u[i];  // theta <- theta + u
        });
      });
    }
    if (o_.averaging != Averaging::none) average(theta);
  }

  double learning_rate(std::int64_t k) const override { return schedules_.empty() ? 1.0 : schedules_[0]->at(k); }
  std::string describe() const override {
    std::string out = name_ + " " + chain_->describe();
    if (fused_.kernel != Kernel::none) out += " [fused]";
    if (o_.averaging == Averaging::arithmetic) out += " + Polyak average";
    if (o_.averaging == Averaging::exponential) out += " + exponential average (rho " + num(o_.averaging_rho) + ")";
    return out;
  }
  std::vector<Tensor> state() const override {
    std::vector<Tensor> out = refs_.tensors;
    if (average_.defined()) out.push_back(average_);
    return out;
  }
  void observe(double metric) override {
    for (auto& s : schedules_) s->observe(metric);
  }
  std::int64_t clip_count() const override { return chain_->clip_count(); }
  Tensor averaged() const override { return average_count_ > 0 ? average_ : Tensor{}; }

  OptimizerState save_state() const override {
    OptimizerState s;
    s.names = refs_.names;
    for (const Tensor& t : refs_.tensors) s.tensors.push_back(t.clone());
    s.counter_names = refs_.counter_names;
    for (const std::int64_t* c : refs_.counters) s.counters.push_back(*c);
    if (average_.defined()) {
      s.names.push_back("average");
      s.tensors.push_back(average_.clone());
      s.counter_names.push_back("average.count");
      s.counters.push_back(average_count_);
    }
    for (const auto& sc : schedules_) s.schedules.push_back(sc->state());
    return s;
  }

  void load_state(const ParameterArena& arena, const OptimizerState& s) override {
    ensure_init(arena);
    const OptimizerState mine = save_state();
    if (s.names != mine.names || s.tensors.size() != s.names.size()) {
      throw DataError("optimizer state for " + name_ + ": expected tensors [" + join(mine.names) + "], got [" +
                      join(s.names) + "]");
    }
    if (s.counter_names != mine.counter_names || s.counters.size() != s.counter_names.size()) {
      throw DataError("optimizer state for " + name_ + ": expected counters [" + join(mine.counter_names) + "], got [" +
                      join(s.counter_names) + "]");
    }
    if (s.schedules.size() != schedules_.size()) {
      throw DataError("optimizer state for " + name_ + ": expected " + std::to_string(schedules_.size()) +
                      " schedule states, got " + std::to_string(s.schedules.size()));
    }
    for (std::size_t i = 0; i < s.tensors.size(); ++i) {
      if (s.tensors[i].numel() != arena.size() || s.tensors[i].dtype() != arena.dtype()) {
        throw DataError("optimizer state for " + name_ + ": tensor " + s.names[i] + " has " +
                        std::to_string(s.tensors[i].numel()) + " " + dtype_name(s.tensors[i].dtype()) +
                        " elements, expected " + std::to_string(arena.size()) + " " + dtype_name(arena.dtype()));
      }
    }
    for (std::size_t i = 0; i < refs_.tensors.size(); ++i) refs_.tensors[i].copy_from(s.tensors[i]);
    for (std::size_t i = 0; i < refs_.counters.size(); ++i) *refs_.counters[i] = s.counters[i];
    if (average_.defined()) {
      average_.copy_from(s.tensors.back());
      average_count_ = s.counters.back();
    }
    for (std::size_t i = 0; i < schedules_.size(); ++i) schedules_[i]->load_state(s.schedules[i]);
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
    return out;
  }

  void ensure_init(const ParameterArena& arena) {
    if (size_ == arena.size() && dtype_ == arena.dtype() && initialized_) return;
    if (initialized_) {
      throw ShapeError(name_ + ": the arena changed from " + std::to_string(size_) + " to " +
                       std::to_string(arena.size()) + " parameters after the first update");
    }
    chain_->init(arena);
    refs_ = {};
    chain_->collect(refs_);
    size_ = arena.size();
    dtype_ = arena.dtype();
    if (fused_.kernel == Kernel::none) u_ = Tensor::zeros({size_}, dtype_);
    if (interim_ && fused_.kernel == Kernel::none) shift_ = Tensor::zeros({size_}, dtype_);
    if (o_.averaging != Averaging::none) average_ = Tensor::zeros({size_}, dtype_);
    initialized_ = true;
  }

  void fused_step(const Tensor& theta, const Tensor& grads, std::int64_t k) {
    const double eps = schedules_.empty() ? 1.0 : schedules_[0]->at(k);
    double c1 = 1.0, c2 = 1.0;
    if (fused_.kernel == Kernel::adam) {
      const std::int64_t t = ++*refs_.counters[0];                   // t <- t + 1
      c1 = 1.0 - std::pow(fused_.rho1, static_cast<double>(t));    // 1 - rho1^t
      c2 = 1.0 - std::pow(fused_.rho2, static_cast<double>(t));    // 1 - rho2^t
    }
    dispatch_float(theta.dtype(), [&](auto zero) {
      using T = decltype(zero);
      FusedArgs<T> f{};
      f.th = theta.data<T>();
      f.g = grads.data<T>();
      f.a = refs_.tensors.empty() ? nullptr : refs_.tensors[0].data<T>();
      f.b = refs_.tensors.size() < 2 ? nullptr : refs_.tensors[1].data<T>();
      f.minus_eps = static_cast<T>(-eps);
      f.l2 = static_cast<T>(fused_.l2);
      f.decoupled = static_cast<T>(fused_.decoupled);
      f.alpha = static_cast<T>(fused_.alpha);
      const double rho = fused_.kernel == Kernel::adam ? fused_.rho1 : fused_.rho;
      f.rho = static_cast<T>(rho);
      f.one_minus_rho = static_cast<T>(1.0 - rho);
      f.rho2 = static_cast<T>(fused_.rho2);
      f.one_minus_rho2 = static_cast<T>(1.0 - fused_.rho2);
      f.bc1 = static_cast<T>(c1);
      f.bc2 = static_cast<T>(c2);
      f.delta = static_cast<T>(fused_.delta);
      f.inside = fused_.at == Delta::inside_root;
      const Kernel kernel = fused_.kernel;
      const bool l2 = fused_.l2 != 0.0;
      parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
        if (l2) {
          fused_chunk<T, true>(kernel, f, i0, i1);
        } else {
          fused_chunk<T, false>(kernel, f, i0, i1);
        }
      });
    });
  }

  void average(const Tensor& theta) {
    ++average_count_;
    const double w = o_.averaging == Averaging::arithmetic ? 1.0 / static_cast<double>(average_count_)
                     : average_count_ == 1                 ? 1.0
                                                           : 1.0 - o_.averaging_rho;
    dispatch_float(theta.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* th = theta.data<T>();
      T* bar = average_.data<T>();
      const T wt = static_cast<T>(w);
      parallel_for(theta.numel(), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) bar[i] = bar[i] + wt * (th[i] - bar[i]);  // bar += w (theta - bar)
      });
    });
  }

  Transform chain_;
  OptimizerOptions o_;
  Fused fused_;
  std::string name_;
  std::vector<std::shared_ptr<Schedule>> schedules_;
  bool interim_ = false;
  bool initialized_ = false;
  std::int64_t size_ = 0;
  DType dtype_ = DType::f32;
  StateRefs refs_;
  Tensor u_, shift_, average_;
  std::int64_t average_count_ = 0;
  std::int64_t prepared_k_ = -1;
};

// ---- the factory -------------------------------------------------------------------

struct Defaults {
  double lr;
  double momentum;
  double rho;
  double delta;
};

bool pytorch_form(const OptimizerSpec& s) {
  if (s.form == "textbook") return false;
  if (s.form == "pytorch") return true;
  throw ConfigError("optimizer " + s.name + ": form must be \"textbook\" or \"pytorch\", got \"" + s.form + "\"");
}

Defaults defaults_of(const OptimizerSpec& s, bool pt) {
  const OptimizerEntry* e = find_optimizer(s.name);  // registry.cpp holds the defaults
  if (e == nullptr) throw ConfigError(unknown_optimizer(s.name));
  const OptimizerDefaults& d = pt ? e->pytorch : e->textbook;
  return {d.lr, d.momentum, d.rho, d.delta};
}

struct Built {
  Transform chain;
  Fused fused;
};

Built build(const OptimizerSpec& s, std::shared_ptr<Schedule> schedule) {
  const bool pt = pytorch_form(s);
  const Defaults d = defaults_of(s, pt);
  if (s.lr && !(*s.lr > 0.0)) throw ConfigError("optimizer " + s.name + ": lr must be > 0, got " + num(*s.lr));
  if (!schedule) schedule = constant(s.lr.value_or(d.lr));
  const double alpha = s.momentum.value_or(d.momentum);
  const double rho = s.rho.value_or(d.rho);
  const double delta = s.delta.value_or(d.delta);
  const double rho1 = s.rho1.value_or(0.9), rho2 = s.rho2.value_or(0.999);
  // Range checks here name the algorithm (the links check again, naming themselves).
  auto unit = [&](double v, const char* field) {
    if (!(v >= 0.0 && v < 1.0)) throw ConfigError("optimizer " + s.name + ": " + field + " must be in [0, 1), got " + num(v));
  };
  unit(alpha, "momentum (alpha)");
  unit(rho, "rho");
  unit(rho1, "rho1");
  unit(rho2, "rho2");
  if (s.delta && !(*s.delta > 0.0)) throw ConfigError("optimizer " + s.name + ": delta must be > 0, got " + num(*s.delta));
  if (!(s.weight_decay >= 0.0)) {
    throw ConfigError("optimizer " + s.name + ": weight_decay must be >= 0, got " + num(s.weight_decay));
  }
  if (s.centered && s.name != "rmsprop") throw ConfigError("optimizer " + s.name + ": centered applies to rmsprop only");
  if (s.amsgrad && s.name != "adam" && s.name != "adamw") {
    throw ConfigError("optimizer " + s.name + ": amsgrad applies to adam and adamw only");
  }

  std::vector<Transform> links;
  Fused f;
  if (s.clip_global_norm > 0.0) links.push_back(clip_by_global_norm(s.clip_global_norm));
  if (s.clip_param_norm > 0.0) links.push_back(clip_by_param_norm(s.clip_param_norm));
  if (s.clip_value > 0.0) links.push_back(clip_by_value(s.clip_value));
  if (s.clip_global_norm < 0.0 || s.clip_param_norm < 0.0 || s.clip_value < 0.0) {
    throw ConfigError("optimizer " + s.name + ": clipping thresholds must be >= 0 (0 turns clipping off)");
  }
  const bool clipped = !links.empty();
  const bool decoupled = s.name == "adamw";
  const double wd = decoupled && s.weight_decay == 0.0 ? 0.01 : s.weight_decay;
  if (wd > 0.0 && !decoupled) {
    links.push_back(add_decayed_weights(wd));
    f.l2 = wd;
  }
  f.alpha = alpha;
  f.rho = rho;
  f.rho1 = rho1;
  f.rho2 = rho2;
  f.delta = delta;
  const std::string& n = s.name;
  if (n == "sgd") {
    if (alpha > 0.0) throw ConfigError("optimizer sgd: momentum must be 0 (use name = \"momentum\"), got " + num(alpha));
    links.push_back(scale_by_learning_rate(schedule));
    f.kernel = Kernel::sgd;
  } else if (n == "momentum" || n == "nesterov") {
    const Nesterov kind = n == "momentum" ? Nesterov::none : pt ? Nesterov::pytorch : Nesterov::interim;
    if (pt) {
      links.push_back(trace({.alpha = alpha, .nesterov = kind}));
      links.push_back(scale_by_learning_rate(schedule));
    } else {
      links.push_back(scale_by_learning_rate(schedule));
      links.push_back(trace({.alpha = alpha, .nesterov = kind}));
    }
    f.kernel = n == "momentum" ? (pt ? Kernel::momentum_pytorch : Kernel::momentum)
                               : (pt ? Kernel::nesterov_pytorch : Kernel::nesterov);
  } else if (n == "adagrad") {
    links.push_back(scale_by_adagrad({.delta = delta}));
    links.push_back(scale_by_learning_rate(schedule));
    f.kernel = Kernel::adagrad;
  } else if (n == "rmsprop" || n == "rmsprop_nesterov") {
    if (n == "rmsprop_nesterov" && pt) {
      throw ConfigError("optimizer rmsprop_nesterov: PyTorch has no RMSprop with Nesterov momentum; use form = \"textbook\"");
    }
    f.at = pt ? Delta::outside_root : Delta::inside_root;
    links.push_back(scale_by_rms({.rho = rho, .delta = delta, .at = f.at, .centered = s.centered}));
    if (n == "rmsprop_nesterov") {
      links.push_back(scale_by_learning_rate(schedule));
      links.push_back(trace({.alpha = alpha, .nesterov = Nesterov::interim}));
    } else if (alpha > 0.0 && pt) {
      links.push_back(trace({.alpha = alpha}));  // torch: v <- mu v + g / (sqrt(r) + delta); theta -= lr v
      links.push_back(scale_by_learning_rate(schedule));
    } else if (alpha > 0.0) {
      links.push_back(scale_by_learning_rate(schedule));
      links.push_back(trace({.alpha = alpha}));  // velocity form: v <- alpha v - eps g / sqrt(delta + r)
    } else {
      links.push_back(scale_by_learning_rate(schedule));
      if (!s.centered) f.kernel = Kernel::rms;
    }
  } else if (n == "adadelta") {
    links.push_back(scale_by_adadelta({.rho = rho, .delta = delta}));
    links.push_back(scale_by_learning_rate(pt ? schedule : constant(1.0)));
  } else if (n == "adam" || n == "adamw" || n == "amsgrad") {
    const bool ams = s.amsgrad || n == "amsgrad";
    links.push_back(scale_by_adam({.rho1 = rho1, .rho2 = rho2, .delta = delta, .amsgrad = ams}));
    if (decoupled) {
      links.push_back(add_decayed_weights(wd));
      f.decoupled = wd;
    }
    links.push_back(scale_by_learning_rate(schedule));
    if (!ams) f.kernel = Kernel::adam;
  } else if (n == "adamax") {
    links.push_back(scale_by_adamax({.rho1 = rho1, .rho2 = rho2, .delta = delta}));
    links.push_back(scale_by_learning_rate(schedule));
  } else if (n == "nadam") {
    links.push_back(scale_by_nadam({.rho1 = rho1, .rho2 = rho2, .delta = delta}));
    links.push_back(scale_by_learning_rate(schedule));
  }
  if (clipped || !s.fused) f.kernel = Kernel::none;
  return {chain(std::move(links)), f};
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(Transform c, const OptimizerOptions& options) {
  if (!c) throw ConfigError("make_optimizer: the chain is empty");
  if (options.averaging == Averaging::exponential && !(options.averaging_rho >= 0.0 && options.averaging_rho < 1.0)) {
    throw ConfigError("averaging: averaging_rho must be in [0, 1), got " + num(options.averaging_rho));
  }
  return std::make_unique<ChainOptimizer>(std::move(c), options, Fused{}, "chain");
}

Transform make_chain(const OptimizerSpec& spec, std::shared_ptr<Schedule> schedule) {
  return build(spec, std::move(schedule)).chain;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec, std::shared_ptr<Schedule> schedule) {
  Built b = build(spec, std::move(schedule));
  const OptimizerOptions o{.averaging = spec.averaging, .averaging_rho = spec.averaging_rho};
  if (o.averaging == Averaging::exponential && !(o.averaging_rho >= 0.0 && o.averaging_rho < 1.0)) {
    throw ConfigError("optimizer " + spec.name + ": averaging_rho must be in [0, 1), got " + num(o.averaging_rho));
  }
  return std::make_unique<ChainOptimizer>(std::move(b.chain), o, b.fused, spec.name + " (" + spec.form + ")");
}

std::unique_ptr<Optimizer> sgd(const SgdOptions& options) {
  if (!options.schedule) throw ConfigError("sgd: no learning-rate schedule");
  if (!(options.alpha >= 0.0 && options.alpha < 1.0)) {
    throw ConfigError("sgd: momentum alpha must be in [0, 1), got " + num(options.alpha));
  }
  OptimizerSpec spec{.name = options.alpha > 0.0 ? "momentum" : "sgd"};
  if (options.alpha > 0.0) spec.momentum = options.alpha;
  return make_optimizer(spec, options.schedule);
}

double default_learning_rate(const OptimizerSpec& spec) {
  return spec.lr.value_or(defaults_of(spec, pytorch_form(spec)).lr);
}

}  // namespace descent::optim
