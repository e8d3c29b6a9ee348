#pragma once
// Monitors during training (issue 14; Goodfellow et al. 2016, section 8.2): callbacks of the
// loop (train/callback.hpp) that the [diagnostics] config section turns on. Each writes one
// kind of record into metrics.jsonl (docs/metrics.md); docs/diagnostics.md says what each
// figure means.
//
//   curvature (8.2.1)  every diagnostics.curvature_every updates, on the step's minibatch,
//                      before the update, at the point the gradient was taken:
//                        g'g, g'Hg (one exact Hessian-vector product through the step's tape),
//                        ratio = lr g'Hg / (2 g'g),
//                        predicted_change = -lr g'g + lr^2 g'Hg / 2   (eq. 8.10: the plain
//                        gradient step -lr g in the second-order Taylor model),
//                      and, when asked, the update the optimizer actually made, d = theta_1 -
//                      theta_0 (momentum, Adam, clipping, weight decay make d != -lr g):
//                        update_predicted_change = d'g + d'Hd / 2   (one more product),
//                      set against observed_change = L(theta_1) - L(theta_0) on the same
//                      minibatch; lambda_max of the minibatch Hessian every lambda_max_every
//                      updates by a few Lanczos steps warm-started from the last Ritz vector.
//   layers             per-parameter gradient and weight norms (names as in model.safetensors).
//   cliff (8.2.4)      ||g|| > factor x the median of the last W norms; whether clipping acted.
//   recurrent (8.2.5)  per epoch: eigenvalues and singular values of each gate's block of each
//                      W_hh, ||dL/dh_t|| for t = 1..T and its fitted growth factor per step.
// Their cost is measured (seconds per record, and per monitor in the final record).
//
// Every figure is also a function below, tested on its own against an independent
// computation (tests/train/monitors_test.cpp).
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "descent/autodiff/tape.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/config.hpp"

namespace descent::train {

// ---- the figures ----------------------------------------------------------------------

struct CurvatureFigures {
  double gTg = 0, gHg = 0, lr = 0;
  double ratio = 0;             // lr g'Hg / (2 g'g); NaN when g = 0
  double predicted_change = 0;  // -lr g'g + lr^2 g'Hg / 2 (eq. 8.10)
};

// At the point where `tape` recorded `loss` (arena.values() must still hold it): g'g and g'Hg
// for the gradient g (a flat vector of the arena's layout), exactly: when the tape holds the
// loss's gradient (the step's backward), g'Hg by Tape::vhv_at_gradient (one tangent-forward
// sweep, no reverse sweep), else by one product H g into `hv` (a flat scratch vector of the
// arena's layout). Sums in double precision.
CurvatureFigures curvature_figures(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena, const Tensor& g,
                                   double lr, const Tensor& hv);

// d'g + d'Hd / 2 for a step d (the second-order change of the loss along d), d'Hd exactly
// as g'Hg above (`hv` the scratch of the fallback); the same precondition. Exact when the loss is quadratic.
double step_prediction(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena, const Tensor& g,
                       const Tensor& d, const Tensor& hv);

// The largest Ritz value of `steps` Lanczos steps (full reorthogonalization, diag/lanczos.hpp)
// on the Hessian of `loss` through its tape, the same precondition, from `start` (arena.size()
// values, not zero): a lower bound of lambda_max, exact once steps reach the dimension or an
// invariant subspace. With `ritz`, also its unit Ritz vector (the next run's warm start).
double lanczos_lambda_max(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena,
                          std::span<const double> start, int steps, std::vector<double>* ritz = nullptr);

// ||slice|| of each parameter in a flat vector of the arena's layout, in the arena's order,
// named as the arena (and model.safetensors) names them.
std::vector<std::pair<std::string, double>> parameter_norms(const ParameterArena& arena, const Tensor& flat);

// Cliffs (section 8.2.4): a gradient norm that exceeds factor x the median of the last
// `window` norms. Nothing counts as a cliff until the window is full. Every norm enters the
// window, cliffs included (the median is robust to them).
class CliffDetector {
 public:
  CliffDetector(double factor, std::int64_t window);
  // Compares `norm` with the running median, then adds it to the window. Returns the median
  // it was compared with when norm > factor x median, nothing otherwise.
  std::optional<double> observe(double norm);
  double median() const;  // of the window as it is (NaN when empty)
  bool full() const { return static_cast<std::int64_t>(ring_.size()) == window_; }
  // The window, exactly (bit patterns), for checkpoints.
  nlohmann::json save() const;
  void load(const nlohmann::json& state);

 private:
  double factor_;
  std::int64_t window_;
  std::vector<double> ring_;  // the last norms, oldest at next_ once full
  std::size_t next_ = 0;
};

// The growth factor per time step of ||dL/dh_t||, t = 1..T, going back in time:
// exp(-b) with b the least-squares slope of ln ||dL/dh_t|| against t. > 1: the gradient grows
// as it travels back (exploding), < 1: it shrinks (vanishing). Zero norms (steps a truncated
// backprop does not reach) are left out of the fit; nothing with fewer than two left.
std::optional<double> growth_rate(std::span<const double> norms);

// One gate's block of a recurrent matrix W_hh (section 8.2.5).
struct RecurrentMatrix {
  std::string name;  // the parameter, e.g. "layers.0.weight_hh"
  std::string gate;  // "" (RNN), "i" "f" "g" "o" (LSTM), "r" "z" "n" (GRU)
  double spectral_radius = 0, singular_max = 0, singular_min = 0;
};
// Each gate's H x H block of each recurrent layer's W_hh, by LAPACK (dgeev, dgesvd).
std::vector<RecurrentMatrix> recurrent_matrices(nn::Sequential& net);

// ||dL/dh_t|| for t = 1..T of each recurrent layer of `net` (outer: the layers in order), for
// the mean cross-entropy on x, y with the model in evaluation mode (restored after); the
// arena's gradient buffer is not touched.
std::vector<std::vector<double>> time_gradient_norms(nn::Sequential& net, ParameterArena& arena, const Tensor& x,
                                                     const Tensor& y);

// ---- the callback ---------------------------------------------------------------------

class Monitors final : public Callback {
 public:
  Monitors(const DiagnosticsConfig& config, nn::Sequential& net, ParameterArena& arena);
  ~Monitors() override;
  // Whether `config` turns any monitor on.
  static bool any(const DiagnosticsConfig& config);

  void before_update(const StepContext& c) override;
  bool on_step(const StepContext& c) override;
  bool on_epoch_end(const EpochContext& c) override;
  void final_fields(nlohmann::json& record) const override;
  // The cliff window, the counts, the seconds, lambda_max's warm start.
  std::string state_key() const override { return "monitors"; }
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace descent::train
