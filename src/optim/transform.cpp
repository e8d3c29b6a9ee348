// The links of the gradient-transformation chains. Each link's element-wise arithmetic is
// its rule in rules.hpp (with the equations), which the fused loops (optimizer.cpp) call too.
#include "descent/optim/transform.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <type_traits>

#include "descent/error.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "rules.hpp"

namespace descent::optim {
namespace {

std::string num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

void check_unit(double v, const char* link, const char* field) {
  if (!(v >= 0.0 && v < 1.0)) throw ConfigError(std::string(link) + ": " + field + " must be in [0, 1), got " + num(v));
}
void check_positive(double v, const char* link, const char* field) {
  if (!(v > 0.0) || !std::isfinite(v)) throw ConfigError(std::string(link) + ": " + field + " must be > 0, got " + num(v));
}
void check_nonnegative(double v, const char* link, const char* field) {
  if (!(v >= 0.0) || !std::isfinite(v)) {
    throw ConfigError(std::string(link) + ": " + field + " must be >= 0, got " + num(v));
  }
}

// f(i) for i in [0, n), in parallel chunks, vectorized within a chunk.
template <class F>
void each(std::int64_t n, F&& f) {
  parallel_for_elements(n, [&](std::int64_t i0, std::int64_t i1) {
    const std::decay_t<F> local = f;  // a local copy: its scalars stay in registers (stores cannot alias them)
#pragma omp simd
    for (std::int64_t i = i0; i < i1; ++i) local(i);
  });
}

// A link with state tensors of the arena's size and named counters.
class Stateful : public GradientTransform {
 public:
  Stateful(std::string name, std::vector<std::string> tensor_names, std::vector<std::string> counter_names)
      : name_(std::move(name)), tensor_names_(std::move(tensor_names)), counter_names_(std::move(counter_names)) {}

  void init(const ParameterArena& arena) override {
    tensors_.clear();
    for (std::size_t i = 0; i < tensor_names_.size(); ++i) tensors_.push_back(Tensor::zeros({arena.size()}, arena.dtype()));
    counters_.assign(counter_names_.size(), 0);
    on_init(arena);
  }
  void collect(StateRefs& refs) override {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      refs.names.push_back(name_ + "." + tensor_names_[i]);
      refs.tensors.push_back(tensors_[i]);
    }
    for (std::size_t i = 0; i < counters_.size(); ++i) {
      refs.counter_names.push_back(name_ + "." + counter_names_[i]);
      refs.counters.push_back(&counters_[i]);
    }
  }

 protected:
  virtual void on_init(const ParameterArena& arena) { (void)arena; }
  template <class T>
  T* state(std::size_t i) const {
    return tensors_[i].data<T>();
  }
  std::string name_;
  std::vector<std::string> tensor_names_, counter_names_;
  std::vector<Tensor> tensors_;
  std::vector<std::int64_t> counters_;
};

// ---- chain -------------------------------------------------------------------------

class Chain final : public GradientTransform {
 public:
  explicit Chain(std::vector<Transform> links) : links_(std::move(links)) {}
  void init(const ParameterArena& arena) override {
    for (auto& l : links_) l->init(arena);
  }
  void update(const Tensor& u, const Tensor& theta, std::int64_t k) override {
    for (auto& l : links_) l->update(u, theta, k);
  }
  bool has_interim_point() const override {
    return std::any_of(links_.begin(), links_.end(), [](const Transform& l) { return l->has_interim_point(); });
  }
  void interim(const Tensor& shift, std::int64_t k) override {
    for (auto& l : links_) l->interim(shift, k);
  }
  std::string describe() const override {
    std::string out = "chain(";
    for (std::size_t i = 0; i < links_.size(); ++i) out += (i ? ", " : "") + links_[i]->describe();
    return out + ")";
  }
  void collect(StateRefs& refs) override {
    for (auto& l : links_) l->collect(refs);
  }
  std::int64_t clip_count() const override {
    std::int64_t c = 0;
    for (const auto& l : links_) c += l->clip_count();
    return c;
  }
  void schedules(std::vector<std::shared_ptr<Schedule>>& out) const override {
    for (const auto& l : links_) l->schedules(out);
  }

 private:
  std::vector<Transform> links_;
};

// ---- learning rate -----------------------------------------------------------------

class ScaleByLearningRate final : public GradientTransform {
 public:
  explicit ScaleByLearningRate(std::shared_ptr<Schedule> s) : schedule_(std::move(s)) {}
  void init(const ParameterArena&) override {}
  void update(const Tensor& u, const Tensor&, std::int64_t k) override {
    const double eps = schedule_->at(k);
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      const rules::Rate<T> rate(eps);
      each(u.numel(), [=](std::int64_t i) { p[i] = rate(p[i]); });  // u <- -eps_k u
    });
  }
  std::string describe() const override { return "lr " + schedule_->describe(); }
  void schedules(std::vector<std::shared_ptr<Schedule>>& out) const override { out.push_back(schedule_); }

 private:
  std::shared_ptr<Schedule> schedule_;
};

// ---- momentum ----------------------------------------------------------------------

class Trace final : public Stateful {
 public:
  explicit Trace(const TraceOptions& o) : Stateful("trace", {"v"}, {}), o_(o) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* v = state<T>(0);
      rules::with_nesterov(o_.nesterov, [&](auto kind) {
        const rules::Trace<T, decltype(kind)::value> rule(o_);
        each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], v[i]); });  // v <- alpha v + u; u <- v (or a Nesterov form)
      });
    });
  }
  bool has_interim_point() const override { return o_.nesterov == Nesterov::interim; }
  void interim(const Tensor& shift, std::int64_t) override {
    if (o_.nesterov != Nesterov::interim) return;
    dispatch_float(shift.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* d = shift.data<T>();
      const T* v = state<T>(0);
      const rules::Trace<T, Nesterov::interim> rule(o_);
      each(shift.numel(), [=](std::int64_t i) { d[i] += rule.interim(v[i]); });  // theta_interim = theta + alpha v
    });
  }
  std::string describe() const override {
    const char* kind = o_.nesterov == Nesterov::none ? "" : o_.nesterov == Nesterov::interim ? ", nesterov" : ", nesterov (pytorch)";
    return "trace(alpha " + num(o_.alpha) + kind + ")";
  }

 private:
  TraceOptions o_;
};

// ---- weight decay ------------------------------------------------------------------

class AddDecayedWeights final : public GradientTransform {
 public:
  explicit AddDecayedWeights(double lambda) : lambda_(lambda) {}
  void init(const ParameterArena&) override {}
  void update(const Tensor& u, const Tensor& theta, std::int64_t) override {
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      const T* th = theta.data<T>();
      const rules::Decay<T> decay(lambda_);
      each(u.numel(), [=](std::int64_t i) { p[i] = decay(p[i], th[i]); });  // u <- u + lambda theta
    });
  }
  std::string describe() const override { return "weight_decay(" + num(lambda_) + ")"; }

 private:
  double lambda_;
};

// ---- adaptive scalings -------------------------------------------------------------

class ScaleByAdagrad final : public Stateful {
 public:
  explicit ScaleByAdagrad(const AdagradOptions& o) : Stateful("adagrad", {"r"}, {}), o_(o) {}
  void on_init(const ParameterArena&) override { tensors_[0].fill(o_.r0); }
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* r = state<T>(0);
      const rules::Adagrad<T> rule(o_);
      each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], r[i]); });  // r <- r + g (.) g; u <- g / (delta + sqrt(r))
    });
  }
  std::string describe() const override { return "adagrad(delta " + num(o_.delta) + ")"; }

 private:
  AdagradOptions o_;
};

class ScaleByRms final : public Stateful {
 public:
  explicit ScaleByRms(const RmsOptions& o)
      : Stateful("rms", o.centered ? std::vector<std::string>{"r", "s"} : std::vector<std::string>{"r"}, {}), o_(o) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* r = state<T>(0);
      rules::with_delta(o_.at, [&](auto at) {
        const rules::Rms<T, decltype(at)::value> rule(o_);
        if (o_.centered) {
          T* s = state<T>(1);
          each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], r[i], s[i]); });  // centered: r - s (.) s for r
        } else {
          each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], r[i]); });  // r <- rho r + (1 - rho) g (.) g; u <- g / sqrt(delta + r)
        }
      });
    });
  }
  std::string describe() const override {
    return std::string("rms(rho ") + num(o_.rho) + ", delta " + num(o_.delta) +
           (o_.at == Delta::inside_root ? " inside the root" : " outside the root") + (o_.centered ? ", centered)" : ")");
  }

 private:
  RmsOptions o_;
};

class ScaleByAdadelta final : public Stateful {
 public:
  explicit ScaleByAdadelta(const AdadeltaOptions& o) : Stateful("adadelta", {"eg2", "edx2"}, {}), o_(o) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* eg2 = state<T>(0);
      T* edx2 = state<T>(1);
      const rules::Adadelta<T> rule(o_);
      each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], eg2[i], edx2[i]); });  // u <- dx = RMS[dx] / RMS[g] g
    });
  }
  std::string describe() const override { return "adadelta(rho " + num(o_.rho) + ", delta " + num(o_.delta) + ")"; }

 private:
  AdadeltaOptions o_;
};

class ScaleByAdam final : public Stateful {
 public:
  explicit ScaleByAdam(const AdamOptions& o)
      : Stateful("adam", o.amsgrad ? std::vector<std::string>{"s", "r", "r_max"} : std::vector<std::string>{"s", "r"},
                 {"t"}),
        o_(o) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    const std::int64_t t = ++counters_[0];  // t <- t + 1
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* s = state<T>(0);
      T* r = state<T>(1);
      rules::with_delta(o_.at, [&](auto at) {
        const rules::Adam<T, decltype(at)::value> rule(o_, t);
        if (o_.amsgrad) {
          T* r_max = state<T>(2);
          each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], s[i], r[i], r_max[i]); });  // r_max <- max(r_max, r) for r
        } else {
          each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], s[i], r[i]); });  // u <- s_hat / (sqrt(r_hat) + delta)
        }
      });
    });
  }
  std::string describe() const override {
    return std::string(o_.amsgrad ? "amsgrad" : "adam") + "(rho1 " + num(o_.rho1) + ", rho2 " + num(o_.rho2) +
           ", delta " + num(o_.delta) + (o_.at == Delta::inside_root ? " inside the root)" : ")");
  }

 private:
  AdamOptions o_;
};

class ScaleByAdamax final : public Stateful {
 public:
  explicit ScaleByAdamax(const AdamOptions& o) : Stateful("adamax", {"s", "m"}, {"t"}), o_(o) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    const std::int64_t t = ++counters_[0];  // t <- t + 1
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* s = state<T>(0);
      T* m = state<T>(1);
      const rules::Adamax<T> rule(o_, t);
      each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], s[i], m[i]); });  // u <- s / ((1 - rho1^t) m)
    });
  }
  std::string describe() const override {
    return "adamax(rho1 " + num(o_.rho1) + ", rho2 " + num(o_.rho2) + ", delta " + num(o_.delta) + ")";
  }

 private:
  AdamOptions o_;
};

class ScaleByNadam final : public Stateful {
 public:
  explicit ScaleByNadam(const NadamOptions& o) : Stateful("nadam", {"s", "r"}, {"t"}), o_(o) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    const std::int64_t t = ++counters_[0];  // t <- t + 1
    if (product_t_ != t - 1) {  // after a restore: P_{t-1} from its definition
      product_ = 1.0;
      for (std::int64_t i = 1; i < t; ++i) product_ *= rules::nadam_mu(o_, i);
    }
    const double mu_t = rules::nadam_mu(o_, t), mu_next = rules::nadam_mu(o_, t + 1);
    product_ *= mu_t;  // P_t = prod_{i <= t} mu_i
    product_t_ = t;
    const double c_g = (1.0 - mu_t) / (1.0 - product_);       // weight of g
    const double c_s = mu_next / (1.0 - product_ * mu_next);  // weight of s
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      T* s = state<T>(0);
      T* r = state<T>(1);
      const rules::Nadam<T> rule(o_, t, c_g, c_s);
      each(u.numel(), [=](std::int64_t i) { p[i] = rule(p[i], s[i], r[i]); });  // u <- (w_g g + w_s s) / d
    });
  }
  std::string describe() const override {
    return "nadam(rho1 " + num(o_.rho1) + ", rho2 " + num(o_.rho2) + ", delta " + num(o_.delta) + ", psi " +
           num(o_.psi) + ")";
  }

 private:
  NadamOptions o_;
  double product_ = 1.0;
  std::int64_t product_t_ = 0;
};

// ---- clipping ----------------------------------------------------------------------

void scale_by(const Tensor& u, double factor) {
  dispatch_float(u.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = u.data<T>();
    const T f = static_cast<T>(factor);
    each(u.numel(), [=](std::int64_t i) { p[i] *= f; });
  });
}

class ClipByGlobalNorm final : public Stateful {
 public:
  explicit ClipByGlobalNorm(double c) : Stateful("clip_by_global_norm", {}, {"fired"}), c_(c) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    const double norm = std::sqrt(kernels::sum_squares(u));
    if (norm > c_) {
      scale_by(u, c_ / norm);  // u <- u c / |u|
      ++counters_[0];
    }
  }
  std::string describe() const override { return "clip_by_global_norm(" + num(c_) + ")"; }
  std::int64_t clip_count() const override { return counters_.empty() ? 0 : counters_[0]; }

 private:
  double c_;
};

class ClipByParamNorm final : public Stateful {
 public:
  explicit ClipByParamNorm(double c) : Stateful("clip_by_param_norm", {}, {"fired"}), c_(c) {}
  void on_init(const ParameterArena& arena) override {
    slices_.clear();
    for (const ParamEntry& e : arena.entries()) slices_.push_back({e.offset, e.shape.numel()});
  }
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    for (const auto& [offset, count] : slices_) {
      const Tensor piece = u.view(offset, {count});
      const double norm = std::sqrt(kernels::sum_squares(piece));
      if (norm > c_) {
        scale_by(piece, c_ / norm);  // this tensor's u <- u c / |u|
        ++counters_[0];
      }
    }
  }
  std::string describe() const override { return "clip_by_param_norm(" + num(c_) + ")"; }
  std::int64_t clip_count() const override { return counters_.empty() ? 0 : counters_[0]; }

 private:
  double c_;
  std::vector<std::pair<std::int64_t, std::int64_t>> slices_;
};

class ClipByValue final : public Stateful {
 public:
  explicit ClipByValue(double c) : Stateful("clip_by_value", {}, {"fired"}), c_(c) {}
  void update(const Tensor& u, const Tensor&, std::int64_t) override {
    const std::int64_t n = u.numel();
    std::vector<unsigned char> moved(static_cast<std::size_t>((n + parallel_grain - 1) / parallel_grain), 0);
    dispatch_float(u.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = u.data<T>();
      const T c = static_cast<T>(c_);
      parallel_for_elements(n, [&](std::int64_t i0, std::int64_t i1) {
        int any = 0;
#pragma omp simd reduction(| : any)
        for (std::int64_t i = i0; i < i1; ++i) {
          const T clipped = std::min(std::max(p[i], -c), c);  // u_i <- min(max(u_i, -c), c)
          any |= clipped != p[i] ? 1 : 0;
          p[i] = clipped;
        }
        moved[static_cast<std::size_t>(i0 / parallel_grain)] = static_cast<unsigned char>(any);
      });
    });
    if (std::any_of(moved.begin(), moved.end(), [](unsigned char m) { return m != 0; })) ++counters_[0];
  }
  std::string describe() const override { return "clip_by_value(" + num(c_) + ")"; }
  std::int64_t clip_count() const override { return counters_.empty() ? 0 : counters_[0]; }

 private:
  double c_;
};

}  // namespace

Transform chain(std::vector<Transform> links) {
  for (const auto& l : links) {
    if (!l) throw ConfigError("chain: a link is empty (a moved-from Transform?)");
  }
  return std::make_unique<Chain>(std::move(links));
}

Transform scale_by_learning_rate(std::shared_ptr<Schedule> schedule) {
  if (!schedule) throw ConfigError("scale_by_learning_rate: no schedule");
  return std::make_unique<ScaleByLearningRate>(std::move(schedule));
}

Transform trace(const TraceOptions& o) {
  check_unit(o.alpha, "trace (momentum)", "alpha");
  return std::make_unique<Trace>(o);
}

Transform add_decayed_weights(double lambda) {
  check_nonnegative(lambda, "add_decayed_weights", "weight_decay (lambda)");
  return std::make_unique<AddDecayedWeights>(lambda);
}

Transform scale_by_adagrad(const AdagradOptions& o) {
  check_positive(o.delta, "adagrad", "delta");
  check_nonnegative(o.r0, "adagrad", "r0 (initial accumulator)");
  return std::make_unique<ScaleByAdagrad>(o);
}

Transform scale_by_rms(const RmsOptions& o) {
  check_unit(o.rho, "rmsprop", "rho");
  check_positive(o.delta, "rmsprop", "delta");
  return std::make_unique<ScaleByRms>(o);
}

Transform scale_by_adadelta(const AdadeltaOptions& o) {
  check_unit(o.rho, "adadelta", "rho");
  check_positive(o.delta, "adadelta", "delta");
  return std::make_unique<ScaleByAdadelta>(o);
}

Transform scale_by_adam(const AdamOptions& o) {
  const char* name = o.amsgrad ? "amsgrad" : "adam";
  check_unit(o.rho1, name, "rho1");
  check_unit(o.rho2, name, "rho2");
  check_positive(o.delta, name, "delta");
  return std::make_unique<ScaleByAdam>(o);
}

Transform scale_by_adamax(const AdamOptions& o) {
  check_unit(o.rho1, "adamax", "rho1");
  check_unit(o.rho2, "adamax", "rho2");
  check_positive(o.delta, "adamax", "delta");
  return std::make_unique<ScaleByAdamax>(o);
}

Transform scale_by_nadam(const NadamOptions& o) {
  check_unit(o.rho1, "nadam", "rho1");
  check_unit(o.rho2, "nadam", "rho2");
  check_positive(o.delta, "nadam", "delta");
  check_nonnegative(o.psi, "nadam", "psi (momentum decay)");
  return std::make_unique<ScaleByNadam>(o);
}

Transform clip_by_global_norm(double c) {
  check_positive(c, "clip_by_global_norm", "c (the norm threshold)");
  return std::make_unique<ClipByGlobalNorm>(c);
}

Transform clip_by_value(double c) {
  check_positive(c, "clip_by_value", "c (the value threshold)");
  return std::make_unique<ClipByValue>(c);
}

Transform clip_by_param_norm(double c) {
  check_positive(c, "clip_by_param_norm", "c (the norm threshold)");
  return std::make_unique<ClipByParamNorm>(c);
}

}  // namespace descent::optim
