#pragma once
// The element-wise update rules, each written once. Both paths that update parameters
// call these and nothing else for their arithmetic:
//   - the links (transform.cpp): u_i <- rule(u_i, state_i...) over the buffer, one link at
//     a time;
//   - the fused loops (optimizer.cpp): theta_i <- theta_i + lr(rule(decay(g_i), state_i...))
//     in one pass, the same rules composed in the chain's order.
// So editing a rule here changes `descent train` (fused) and the documented chain alike;
// tests/optim/algorithms_test.cpp checks both paths against scalar code written from the
// equations, tests/optim/rules_test.cpp checks the two paths against each other.
//
// A rule is a small value type for one element type T: its constructor converts the
// hyperparameters (and, for the counted rules, the step's scalars such as 1 - rho1^t) to T
// once per update; operator() maps one element of the incoming update and the element's
// state (by reference, updated in place) to the outgoing update. Where delta sits, or which
// Nesterov form, is a template argument so that each loop is branch-free and vectorizes
// (`#pragma omp simd`; sqrt vectorizes because the library is built with -fno-math-errno).
// The forms follow the textbook (Goodfellow et al. 2016, chapter 8); PyTorch's forms are
// options of the same rule, named beside each.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "descent/optim/transform.hpp"

namespace descent::optim::rules {

// ---- where delta sits -----------------------------------------------------------------
// inside_root: sqrt(delta + m) (RMSProp, Algorithm 8.5);  outside_root: sqrt(m) + delta
// (Adam, Algorithm 8.7; torch.optim.RMSprop).
template <Delta At, class T>
inline T root(T m, T delta) {
  if constexpr (At == Delta::inside_root) {
    return std::sqrt(delta + m);
  } else {
    return std::sqrt(m) + delta;
  }
}

// Calls f(std::integral_constant<Delta, at>{}): a run-time choice made once per update,
// outside the loop.
template <class F>
inline void with_delta(Delta at, F&& f) {
  if (at == Delta::inside_root) {
    f(std::integral_constant<Delta, Delta::inside_root>{});
  } else {
    f(std::integral_constant<Delta, Delta::outside_root>{});
  }
}

template <class F>
inline void with_nesterov(Nesterov kind, F&& f) {
  switch (kind) {
    case Nesterov::none:
      f(std::integral_constant<Nesterov, Nesterov::none>{});
      break;
    case Nesterov::interim:
      f(std::integral_constant<Nesterov, Nesterov::interim>{});
      break;
    case Nesterov::pytorch:
      f(std::integral_constant<Nesterov, Nesterov::pytorch>{});
      break;
  }
}

// ---- learning rate --------------------------------------------------------------------
// u <- -eps_k u  (scale_by_learning_rate; torch: the `lr` of every optimizer).
template <class T>
struct Rate {
  T minus_eps;
  explicit Rate(double eps) : minus_eps(static_cast<T>(-eps)) {}
  T operator()(T u) const { return u * minus_eps; }
};

// ---- weight decay ---------------------------------------------------------------------
// u <- u + lambda theta. Before the scaling: L2 regularization, the gradient of
// lambda/2 |theta|^2 (torch: `weight_decay` of SGD, Adam, ...). After Adam and before the
// rate: decoupled decay (AdamW, Loshchilov & Hutter 2019).
template <class T>
struct Decay {
  T lambda;
  explicit Decay(double l) : lambda(static_cast<T>(l)) {}
  T operator()(T u, T theta) const { return u + lambda * theta; }
};

// ---- momentum -------------------------------------------------------------------------
// After the rate (textbook, Algorithm 8.2):  v <- alpha v - eps g;  theta <- theta + v.
// Before it (torch.optim.SGD(momentum=mu)):  v <- mu v + g;  theta <- theta - lr v.
// Nesterov, Algorithm 8.3 (interim): g is taken at theta + alpha v_old (interim() gives the
//   shift, the optimizer's prepare() applies it); v <- alpha v - eps g; the step from the
//   interim point to theta + v is v - alpha v_old.
// Nesterov, torch (nesterov=True):  v <- mu v + g;  u <- g + mu v.
template <class T, Nesterov N>
struct Trace {
  T alpha;
  explicit Trace(const TraceOptions& o) : alpha(static_cast<T>(o.alpha)) {}
  T operator()(T u, T& v) const {
    return (*this)([u] { return u; }, v);
  }
  // The same rule with the incoming update computed by `in()` after alpha v: a fused loop
  // passes the preceding rules here, so that the compiler contracts alpha v + u into one
  // FMA as it does in the link (where u is a stored value), not (-eps) g + alpha v.
  template <class In>
    requires std::is_invocable_r_v<T, In>
  T operator()(In in, T& v) const {
    if constexpr (N == Nesterov::none) {
      v = alpha * v + in();  // v <- alpha v + u
      return v;              // u <- v
    } else if constexpr (N == Nesterov::interim) {
      const T v_old = v;
      v = alpha * v + in();      // v <- alpha v + u            (u = -eps g, g at theta + alpha v_old)
      return v - alpha * v_old;  // from theta + alpha v_old to theta + v
    } else {
      const T u = in();
      v = alpha * v + u;     // v <- mu v + g
      return u + alpha * v;  // u <- g + mu v
    }
  }
  // The interim point's shift (Algorithm 8.3): theta_interim = theta + alpha v.
  T interim(T v) const { return alpha * v; }
};

// ---- adaptive scalings ----------------------------------------------------------------

// AdaGrad, Algorithm 8.4:  r <- r + g (.) g;  dtheta = -eps g / (delta + sqrt(r)).
// torch.optim.Adagrad: the same place of delta (1e-10 there).
template <class T>
struct Adagrad {
  T delta;
  explicit Adagrad(const AdagradOptions& o) : delta(static_cast<T>(o.delta)) {}
  T operator()(T g, T& r) const {
    r = r + g * g;                     // r <- r + g (.) g
    return g / (delta + std::sqrt(r)); // g / (delta + sqrt(r))
  }
};

// RMSProp, Algorithm 8.5:  r <- rho r + (1 - rho) g (.) g;  dtheta = -eps g / sqrt(delta + r)
// (At = inside_root). torch.optim.RMSprop: g / (sqrt(r) + delta) (At = outside_root).
// Centered (Graves 2013; torch centered=True): s <- rho s + (1 - rho) g and the variance
// estimate r - s (.) s replaces r.
template <class T, Delta At>
struct Rms {
  T rho, one_minus_rho, delta;
  explicit Rms(const RmsOptions& o)
      : rho(static_cast<T>(o.rho)), one_minus_rho(static_cast<T>(1.0 - o.rho)), delta(static_cast<T>(o.delta)) {}
  T operator()(T g, T& r) const {
    r = rho * r + one_minus_rho * g * g;  // r <- rho r + (1 - rho) g (.) g
    return g / root<At>(r, delta);        // g / sqrt(delta + r)  (torch: g / (sqrt(r) + delta))
  }
  T operator()(T g, T& r, T& s) const {   // centered
    r = rho * r + one_minus_rho * g * g;  // r <- rho r + (1 - rho) g (.) g
    s = rho * s + one_minus_rho * g;      // s <- rho s + (1 - rho) g
    return g / root<At>(r - s * s, delta);  // r - s (.) s: the variance estimate
  }
};

// AdaDelta (Zeiler 2012, Algorithm 1):
//   E[g^2] <- rho E[g^2] + (1 - rho) g (.) g;  dx = sqrt(E[dx^2] + delta) / sqrt(E[g^2] + delta) g;
//   E[dx^2] <- rho E[dx^2] + (1 - rho) dx (.) dx.   torch.optim.Adadelta: the same, times lr.
template <class T>
struct Adadelta {
  T rho, one_minus_rho, delta;
  explicit Adadelta(const AdadeltaOptions& o)
      : rho(static_cast<T>(o.rho)), one_minus_rho(static_cast<T>(1.0 - o.rho)), delta(static_cast<T>(o.delta)) {}
  T operator()(T g, T& eg2, T& edx2) const {
    eg2 = rho * eg2 + one_minus_rho * g * g;                     // E[g^2] <- rho E[g^2] + (1 - rho) g^2
    const T dx = std::sqrt(edx2 + delta) / std::sqrt(eg2 + delta) * g;  // RMS[dx] / RMS[g] g
    edx2 = rho * edx2 + one_minus_rho * dx * dx;                 // E[dx^2] <- rho E[dx^2] + (1 - rho) dx^2
    return dx;
  }
};

// 1 - rho^t, the bias correction of a moment after t updates.
inline double bias_correction(double rho, std::int64_t t) { return 1.0 - std::pow(rho, static_cast<double>(t)); }

// Adam, Algorithm 8.7 (t already incremented: t <- t + 1):
//   s <- rho1 s + (1 - rho1) g;  r <- rho2 r + (1 - rho2) g (.) g
//   s_hat = s / (1 - rho1^t);  r_hat = r / (1 - rho2^t);  dtheta = -eps s_hat / (sqrt(r_hat) + delta)
// At = outside_root is the book's and torch.optim.Adam's; inside_root gives sqrt(r_hat + delta).
// AMSGrad (Reddi et al. 2018; torch amsgrad=True): r_max <- max(r_max, r) replaces r in r_hat.
template <class T, Delta At>
struct Adam {
  T rho1, one_minus_rho1, rho2, one_minus_rho2, bc1, bc2, delta;
  Adam(const AdamOptions& o, std::int64_t t)
      : rho1(static_cast<T>(o.rho1)),
        one_minus_rho1(static_cast<T>(1.0 - o.rho1)),
        rho2(static_cast<T>(o.rho2)),
        one_minus_rho2(static_cast<T>(1.0 - o.rho2)),
        bc1(static_cast<T>(bias_correction(o.rho1, t))),  // 1 - rho1^t
        bc2(static_cast<T>(bias_correction(o.rho2, t))),  // 1 - rho2^t
        delta(static_cast<T>(o.delta)) {}
  T operator()(T g, T& s, T& r) const {
    s = rho1 * s + one_minus_rho1 * g;      // s <- rho1 s + (1 - rho1) g
    r = rho2 * r + one_minus_rho2 * g * g;  // r <- rho2 r + (1 - rho2) g (.) g
    return scaled(s, r);
  }
  T operator()(T g, T& s, T& r, T& r_max) const {  // AMSGrad
    s = rho1 * s + one_minus_rho1 * g;      // s <- rho1 s + (1 - rho1) g
    r = rho2 * r + one_minus_rho2 * g * g;  // r <- rho2 r + (1 - rho2) g (.) g
    r_max = std::max(r_max, r);             // the largest r so far
    return scaled(s, r_max);
  }
  T scaled(T s, T r) const {
    const T s_hat = s / bc1;              // s_hat = s / (1 - rho1^t)
    const T r_hat = r / bc2;              // r_hat = r / (1 - rho2^t)
    return s_hat / root<At>(r_hat, delta);  // s_hat / (sqrt(r_hat) + delta)
  }
};

// Adamax (Kingma & Ba 2015, section 7.1; torch.optim.Adamax), t already incremented:
//   s <- rho1 s + (1 - rho1) g;  m <- max(rho2 m, |g| + delta);  dtheta = -eps s / ((1 - rho1^t) m)
template <class T>
struct Adamax {
  T rho1, one_minus_rho1, rho2, bc1, delta;
  Adamax(const AdamOptions& o, std::int64_t t)
      : rho1(static_cast<T>(o.rho1)),
        one_minus_rho1(static_cast<T>(1.0 - o.rho1)),
        rho2(static_cast<T>(o.rho2)),
        bc1(static_cast<T>(bias_correction(o.rho1, t))),
        delta(static_cast<T>(o.delta)) {}
  T operator()(T g, T& s, T& m) const {
    s = rho1 * s + one_minus_rho1 * g;           // s <- rho1 s + (1 - rho1) g
    m = std::max(rho2 * m, std::abs(g) + delta);  // m <- max(rho2 m, |g| + delta)
    return s / (bc1 * m);                        // s / ((1 - rho1^t) m)
  }
};

// NAdam (Dozat 2016, as torch.optim.NAdam computes it):
//   mu_t = rho1 (1 - 0.5 * 0.96^(t psi)),  P_t = prod_{i <= t} mu_i
//   s, r as in Adam;  d = sqrt(r / (1 - rho2^t)) + delta
//   dtheta = -eps ((1 - mu_t) / (1 - P_t) g / d + mu_{t+1} / (1 - P_t mu_{t+1}) s / d)
inline double nadam_mu(const NadamOptions& o, std::int64_t t) {
  return o.rho1 * (1.0 - 0.5 * std::pow(0.96, static_cast<double>(t) * o.psi));
}
template <class T>
struct Nadam {
  T rho1, one_minus_rho1, rho2, one_minus_rho2, bc2, delta, wg, ws;
  // w_g = (1 - mu_t) / (1 - P_t), w_s = mu_{t+1} / (1 - P_t mu_{t+1}): the link computes
  // them, since it keeps P_t across updates.
  Nadam(const NadamOptions& o, std::int64_t t, double w_g, double w_s)
      : rho1(static_cast<T>(o.rho1)),
        one_minus_rho1(static_cast<T>(1.0 - o.rho1)),
        rho2(static_cast<T>(o.rho2)),
        one_minus_rho2(static_cast<T>(1.0 - o.rho2)),
        bc2(static_cast<T>(bias_correction(o.rho2, t))),
        delta(static_cast<T>(o.delta)),
        wg(static_cast<T>(w_g)),
        ws(static_cast<T>(w_s)) {}
  T operator()(T g, T& s, T& r) const {
    s = rho1 * s + one_minus_rho1 * g;       // s <- rho1 s + (1 - rho1) g
    r = rho2 * r + one_minus_rho2 * g * g;   // r <- rho2 r + (1 - rho2) g (.) g
    const T d = std::sqrt(r / bc2) + delta;  // sqrt(r / (1 - rho2^t)) + delta
    return wg * g / d + ws * s / d;          // w_g g / d + w_s s / d
  }
};

}  // namespace descent::optim::rules
