#pragma once
// Gradient transformations (DESIGN.md, decision 2; the design of DeepMind's Optax).
//
// A transformation turns a gradient into an update, link by link:
//
//   u <- g;   for each link: link.update(u, theta, k);   theta <- theta + u
//
// Each link owns explicit state: flat tensors of the arena's size and dtype (a velocity v,
// accumulators r and s, ...) plus integer counters (Adam's t, how often a clip fired), all
// reachable through collect() so that an optimizer can save and restore them exactly.
// `chain(a, b, c)` composes links; the textbook algorithms are named chains (see
// optimizer.hpp, make_chain), e.g.
//
//   adam     = chain(scale_by_adam({.rho1, .rho2, .delta}), scale_by_learning_rate(schedule))
//   momentum = chain(scale_by_learning_rate(schedule), trace({.alpha}))       // Algorithm 8.2
//   clipped  = chain(clip_by_global_norm(1.0), <any of the above>)
//
// Convention: links before scale_by_learning_rate emit a direction "like a gradient"
// (descent subtracts it); scale_by_learning_rate multiplies by -eps_k; links after it work
// on a displacement of theta. All arithmetic runs in the arena's dtype, hyperparameters
// are converted to it once per update.
//
// Every factory throws ConfigError naming the link and the hyperparameter when a value is
// out of range (rho outside [0, 1), delta <= 0, a negative rate or threshold).
// Cost of an update: one pass over the n parameters per link (clip_by_global_norm: two).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "descent/optim/schedule.hpp"
#include "descent/tensor/arena.hpp"

namespace descent::optim {

// Views of a chain's state, in chain order: the tensors alias the state (writing into them
// changes it), the counters point at it.
struct StateRefs {
  std::vector<std::string> names;       // "adam.s", "adam.r", ...
  std::vector<Tensor> tensors;          // each [n], the arena's dtype
  std::vector<std::string> counter_names;
  std::vector<std::int64_t*> counters;  // "adam.t", "clip_by_global_norm.fired", ...
};

class GradientTransform {
 public:
  virtual ~GradientTransform() = default;
  // Allocates the state for this arena (zeros; counters 0). Called once before the first
  // update; calling it again resets the state.
  virtual void init(const ParameterArena& arena) = 0;
  // u: [n] the update so far (read and overwritten); theta: [n] the current parameters
  // (read only); k: the number of updates before this one (for schedules).
  virtual void update(const Tensor& u, const Tensor& theta, std::int64_t k) = 0;
  // Nesterov's interim point (Algorithm 8.3): adds to `shift` the displacement at which
  // the next gradient must be evaluated; the optimizer moves theta there before the
  // gradient. Links without an interim point leave it alone.
  virtual bool has_interim_point() const { return false; }
  virtual void interim(const Tensor& shift, std::int64_t k) {
    (void)shift;
    (void)k;
  }
  virtual std::string describe() const = 0;
  virtual void collect(StateRefs& refs) { (void)refs; }
  // How often a clipping link changed the update (0 for the others; chains sum).
  virtual std::int64_t clip_count() const { return 0; }
  // The schedules inside (to forward observe() and checkpoint their state).
  virtual void schedules(std::vector<std::shared_ptr<Schedule>>& out) const { (void)out; }
};

using Transform = std::unique_ptr<GradientTransform>;

// ---- composition -------------------------------------------------------------------
Transform chain(std::vector<Transform> links);
template <class... Links>
Transform chain(Transform first, Links... rest) {
  std::vector<Transform> links;
  links.push_back(std::move(first));
  (links.push_back(std::move(rest)), ...);
  return chain(std::move(links));
}

// ---- learning rate -----------------------------------------------------------------
// u <- -eps_k u.
Transform scale_by_learning_rate(std::shared_ptr<Schedule> schedule);

// ---- momentum ----------------------------------------------------------------------
enum class Nesterov : std::uint8_t {
  none,     // v <- alpha v + u;  u <- v
  interim,  // Algorithm 8.3: the gradient is taken at theta + alpha v (see interim());
            //   v <- alpha v + u;  u <- v - alpha v_old   so theta_interim + u = theta + v
  pytorch,  // torch.optim.SGD(nesterov=True): v <- alpha v + u;  u <- u + alpha v
};
// After scale_by_learning_rate this is the textbook's velocity (Algorithm 8.2:
// v <- alpha v - eps g; theta <- theta + v). Before it, it is PyTorch's form
// (v <- mu v + g; theta <- theta - lr v): the rate outside the velocity. The two agree
// under a constant rate and differ under a schedule (docs/optimizers.md).
struct TraceOptions {
  double alpha = 0.9;  // in [0, 1)
  Nesterov nesterov = Nesterov::none;
};
Transform trace(const TraceOptions& options = {});

// ---- weight decay ------------------------------------------------------------------
// u <- u + lambda theta. Before the scaling links: L2 regularization (the gradient of
// lambda/2 |theta|^2). After scale_by_adam and before the rate: decoupled weight decay
// (AdamW, Loshchilov & Hutter 2019): theta <- theta - eps (adam(g) + lambda theta).
Transform add_decayed_weights(double lambda);

// ---- adaptive scalings -------------------------------------------------------------
// Where delta sits: added to the root (sqrt(r) + delta) or inside it (sqrt(r + delta)).
enum class Delta : std::uint8_t { outside_root, inside_root };

// AdaGrad, Algorithm 8.4:
//   r <- r + g (.) g
//   dtheta = -eps / (delta + sqrt(r)) (.) g         delta = 1e-7 (torch.optim.Adagrad: 1e-10)
// Emits g / (delta + sqrt(r)). r0: the accumulator's start (torch: initial_accumulator_value).
struct AdagradOptions {
  double delta = 1e-7;  // > 0
  double r0 = 0.0;      // >= 0
};
Transform scale_by_adagrad(const AdagradOptions& options = {});

// RMSProp, Algorithm 8.5:
//   r <- rho r + (1 - rho) g (.) g
//   dtheta = -eps / sqrt(delta + r) (.) g            textbook: delta = 1e-6 inside the root
// Delta::outside_root gives torch.optim.RMSprop: g / (sqrt(r) + delta), delta = 1e-8.
// centered (Graves 2013, torch centered=True): s <- rho s + (1 - rho) g, and r - s (.) s
// replaces r. Emits g / sqrt(delta + r) (or the chosen form).
struct RmsOptions {
  double rho = 0.9;     // in [0, 1)
  double delta = 1e-6;  // > 0
  Delta at = Delta::inside_root;
  bool centered = false;
};
Transform scale_by_rms(const RmsOptions& options = {});

// AdaDelta (Zeiler 2012, Algorithm 1):
//   E[g^2]  <- rho E[g^2] + (1 - rho) g (.) g
//   dx      = sqrt(E[dx^2] + delta) / sqrt(E[g^2] + delta) (.) g
//   E[dx^2] <- rho E[dx^2] + (1 - rho) dx (.) dx
// Emits dx; the chain applies theta <- theta - eps dx with eps = 1 (the paper has no rate;
// torch.optim.Adadelta multiplies by lr, default 1.0, and accumulates dx before it).
struct AdadeltaOptions {
  double rho = 0.95;    // in [0, 1)
  double delta = 1e-6;  // > 0 (the paper's epsilon)
};
Transform scale_by_adadelta(const AdadeltaOptions& options = {});

// Adam, Algorithm 8.7:
//   t <- t + 1
//   s <- rho1 s + (1 - rho1) g;   r <- rho2 r + (1 - rho2) g (.) g
//   s_hat = s / (1 - rho1^t);     r_hat = r / (1 - rho2^t)
//   dtheta = -eps s_hat / (sqrt(r_hat) + delta)         delta outside the root, as torch.optim.Adam
// Delta::inside_root gives s_hat / sqrt(r_hat + delta). amsgrad (Reddi et al. 2018, torch
// amsgrad=True): r_max <- max(r_max, r) replaces r in r_hat. Emits s_hat / (sqrt(r_hat) + delta).
struct AdamOptions {
  double rho1 = 0.9;    // in [0, 1)
  double rho2 = 0.999;  // in [0, 1)
  double delta = 1e-8;  // > 0
  Delta at = Delta::outside_root;
  bool amsgrad = false;
};
Transform scale_by_adam(const AdamOptions& options = {});

// Adamax (Kingma & Ba 2015, section 7.1; torch.optim.Adamax):
//   t <- t + 1;  s <- rho1 s + (1 - rho1) g;  m <- max(rho2 m, |g| + delta)
// Emits s / ((1 - rho1^t) m).
Transform scale_by_adamax(const AdamOptions& options = {});

// NAdam (Dozat 2016, as torch.optim.NAdam computes it), psi = momentum decay 0.004:
//   mu_t = rho1 (1 - 0.5 * 0.96^(t psi)),  P_t = prod_{i <= t} mu_i
//   s, r as in Adam;  d = sqrt(r / (1 - rho2^t)) + delta
// Emits (1 - mu_t) / (1 - P_t) g / d + mu_{t+1} / (1 - P_t mu_{t+1}) s / d.
struct NadamOptions {
  double rho1 = 0.9;    // in [0, 1)
  double rho2 = 0.999;  // in [0, 1)
  double delta = 1e-8;  // > 0
  double psi = 4e-3;    // >= 0
};
Transform scale_by_nadam(const NadamOptions& options = {});

// ---- clipping (a link in front of any chain) ----------------------------------------
// clip_by_global_norm(c): if |u| > c then u <- u c / |u|; counts the updates it scaled.
// clip_by_value(c): u_i <- min(max(u_i, -c), c); counts the updates where any element moved.
// clip_by_param_norm(c): the same as the global norm, separately for each parameter tensor
// of the arena (its entries); counts the (update, tensor) pairs it scaled.
// Throws ConfigError unless c > 0.
Transform clip_by_global_norm(double c);
Transform clip_by_value(double c);
Transform clip_by_param_norm(double c);

}  // namespace descent::optim
