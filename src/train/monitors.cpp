// Monitors during training (train/monitors.hpp; docs/diagnostics.md, docs/metrics.md).
#include "descent/train/monitors.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "descent/diag/lanczos.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/error.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::train {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::uint64_t bits(double v) { return std::bit_cast<std::uint64_t>(v); }
double from_bits(const nlohmann::json& j) { return std::bit_cast<double>(j.get<std::uint64_t>()); }

// A figure for metrics.jsonl: null when not finite.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// Tensors <-> double vectors (the Lanczos operator works in double).
void to_tensor(std::span<const double> v, const Tensor& t) {
  dispatch_float(t.dtype(), [&]<class T>(T) {
    T* p = t.data<T>();
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<T>(v[i]);
  });
}
void from_tensor(const Tensor& t, std::span<double> v) {
  dispatch_float(t.dtype(), [&]<class T>(T) {
    const T* p = t.data<T>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(p[i]);
  });
}

// Base64 (RFC 4648) of raw bytes: lambda_max's warm start in a checkpoint's JSON state.
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
std::string base64(std::span<const unsigned char> in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::uint32_t b0 = in[i], b1 = i + 1 < in.size() ? in[i + 1] : 0, b2 = i + 2 < in.size() ? in[i + 2] : 0;
    const std::uint32_t w = (b0 << 16) | (b1 << 8) | b2;
    out += kB64[(w >> 18) & 63];
    out += kB64[(w >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(w >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kB64[w & 63] : '=';
  }
  return out;
}
std::vector<unsigned char> unbase64(const std::string& in) {
  std::array<int, 256> value{};
  value.fill(-1);
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(kB64[i])] = i;
  if (in.size() % 4 != 0) throw DataError("monitors state: a base64 text whose length is not a multiple of 4");
  std::vector<unsigned char> out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    std::uint32_t w = 0;
    int pad = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char ch = in[i + k];
      int v = 0;
      if (ch == '=' && i + 4 == in.size() && k >= 2) {
        ++pad;
      } else {
        v = value[static_cast<unsigned char>(ch)];
        if (v < 0 || pad > 0) throw DataError("monitors state: not base64 text");
      }
      w = (w << 6) | static_cast<std::uint32_t>(v);
    }
    out.push_back(static_cast<unsigned char>(w >> 16));
    if (pad < 2) out.push_back(static_cast<unsigned char>(w >> 8));
    if (pad < 1) out.push_back(static_cast<unsigned char>(w));
  }
  return out;
}

// Whether evaluation mode computes another function than training mode (dropout, batch
// normalization): then the observed change is measured in evaluation mode on both sides.
bool mode_matters(nn::Sequential& net, ParameterArena& arena) {
  if (arena.buffer_size() > 0) return true;
  for (std::size_t i = 0; i < net.size(); ++i) {
    if (net.at(i).has_rng()) return true;
  }
  return false;
}

// The mean cross-entropy of `net` on x, y in evaluation mode (restored after), on `tape`.
double eval_loss(nn::Sequential& net, autodiff::Tape& tape, const Tensor& x, const Tensor& y) {
  const bool training = net.training();
  net.set_training(false);
  tape.clear();
  double loss = 0.0;
  try {
    loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), y).value().item();
  } catch (...) {
    net.set_training(training);
    tape.clear();
    throw;
  }
  net.set_training(training);
  tape.clear();
  return loss;
}

// hv <- H v on the step's tape: the tangent sweeps alone when the tape holds this loss's
// gradient (the trainer's backward, or an earlier product), else a full hvp.
void product(autodiff::Tape& tape, autodiff::Var loss, const Tensor& v, const Tensor& hv) {
  if (tape.has_gradient(loss)) {
    tape.hvp_at_gradient(loss, v, hv);
  } else {
    tape.hvp(loss, v, hv);
  }
}

// v' H v on the step's tape: the second-order forward terms alone when the tape holds this
// loss's gradient and every node on its path has such a rule (Tape::vhv_at_gradient: no
// reverse sweep), else v . (H v).
double curvature_along(autodiff::Tape& tape, autodiff::Var loss, const Tensor& v, const Tensor& hv) {
  if (tape.has_gradient(loss)) {
    if (const std::optional<double> q = tape.vhv_at_gradient(loss, v)) return *q;
  }
  product(tape, loss, v, hv);
  return kernels::dot(v, hv);
}

}  // namespace

// ---- the figures ----------------------------------------------------------------------

CurvatureFigures curvature_figures(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena, const Tensor& g,
                                   double lr, const Tensor& hv) {
  (void)arena;  // the tape knows the arena of its parameters
  CurvatureFigures f;
  f.lr = lr;
  f.gTg = kernels::sum_squares(g);
  f.gHg = curvature_along(tape, loss, g, hv);
  f.ratio = f.gTg > 0 ? lr * f.gHg / (2.0 * f.gTg) : std::numeric_limits<double>::quiet_NaN();
  f.predicted_change = -lr * f.gTg + 0.5 * lr * lr * f.gHg;
  return f;
}

double step_prediction(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena, const Tensor& g,
                       const Tensor& d, const Tensor& hv) {
  (void)arena;
  return kernels::dot(d, g) + 0.5 * curvature_along(tape, loss, d, hv);
}

double lanczos_lambda_max(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena,
                          std::span<const double> start, int steps, std::vector<double>* ritz) {
  const auto n = static_cast<std::size_t>(arena.size());
  Tensor vt = Tensor::empty(Shape{arena.size()}, arena.dtype());
  Tensor ht = Tensor::empty(Shape{arena.size()}, arena.dtype());
  diag::LinearOperator op;
  op.dim = arena.size();
  op.apply = [&](std::span<const double> v, std::span<double> out) {
    to_tensor(v, vt);
    product(tape, loss, vt, ht);
    from_tensor(ht, out);
  };
  const diag::LanczosRun run = diag::lanczos(op, start, steps, /*keep_basis=*/ritz != nullptr);
  const diag::Eigen e = diag::tridiagonal_eigen(run.alpha, run.beta, /*vectors=*/ritz != nullptr);
  if (ritz != nullptr) {
    // The Ritz vector of the largest Ritz value: Q u, u the last column of T's eigenvectors.
    const auto m = static_cast<std::size_t>(run.steps);
    ritz->assign(n, 0.0);
    for (std::size_t j = 0; j < m; ++j) {
      const double u = e.vectors[(m - 1) * m + j];
      const std::vector<double>& q = run.basis[j];
      for (std::size_t i = 0; i < n; ++i) (*ritz)[i] += u * q[i];
    }
  }
  return e.values.back();
}

std::vector<std::pair<std::string, double>> parameter_norms(const ParameterArena& arena, const Tensor& flat) {
  std::vector<std::pair<std::string, double>> out;
  out.reserve(arena.count());
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    out.emplace_back(arena.entry(id).name, std::sqrt(kernels::sum_squares(arena.slice(flat, id))));
  }
  return out;
}

CliffDetector::CliffDetector(double factor, std::int64_t window) : factor_(factor), window_(window) {
  if (window < 1) throw ConfigError("cliff detector: the window must hold at least one norm");
  ring_.reserve(static_cast<std::size_t>(window));
}

double CliffDetector::median() const {
  if (ring_.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> v = ring_;
  const std::size_t n = v.size(), mid = n / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  const double upper = v[mid];
  if (n % 2 == 1) return upper;
  const double lower = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
  return 0.5 * (lower + upper);
}

std::optional<double> CliffDetector::observe(double norm) {
  std::optional<double> cliff;
  if (full()) {
    const double m = median();
    if (norm > factor_ * m) cliff = m;
  }
  if (!full()) {
    ring_.push_back(norm);
  } else {
    ring_[next_] = norm;
    next_ = (next_ + 1) % ring_.size();
  }
  return cliff;
}

nlohmann::json CliffDetector::save() const {
  nlohmann::json norms = nlohmann::json::array();
  for (const double v : ring_) norms.push_back(bits(v));
  return {{"norms", norms}, {"next", next_}};
}

void CliffDetector::load(const nlohmann::json& state) {
  std::vector<double> ring;
  for (const auto& v : state.at("norms")) ring.push_back(from_bits(v));
  const auto next = state.at("next").get<std::size_t>();
  if (static_cast<std::int64_t>(ring.size()) > window_ || (next != 0 && next >= ring.size()))
    throw DataError("monitors state: the cliff window does not fit diagnostics.cliff_window");
  ring_ = std::move(ring);
  next_ = next;
}

std::optional<double> growth_rate(std::span<const double> norms) {
  double st = 0, sy = 0, stt = 0, sty = 0, n = 0;
  for (std::size_t i = 0; i < norms.size(); ++i) {
    if (!(norms[i] > 0) || !std::isfinite(norms[i])) continue;
    const double t = static_cast<double>(i + 1), y = std::log(norms[i]);
    st += t;
    sy += y;
    stt += t * t;
    sty += t * y;
    n += 1;
  }
  if (n < 2) return std::nullopt;
  const double slope = (n * sty - st * sy) / (n * stt - st * st);
  return std::exp(-slope);
}

std::vector<RecurrentMatrix> recurrent_matrices(nn::Sequential& net) {
  std::vector<RecurrentMatrix> out;
  ParameterArena& arena = net.arena();
  for (nn::Recurrent* r : nn::recurrent_layers(net)) {
    const Tensor w = arena.value(r->recurrent_weight());  // [G*H, H]
    const std::int64_t h = r->hidden_size();
    for (int g = 0; g < r->gates(); ++g) {
      std::vector<double> block(static_cast<std::size_t>(h * h));
      for (std::int64_t i = 0; i < h * h; ++i) block[static_cast<std::size_t>(i)] = w.at(g * h * h + i);
      RecurrentMatrix m;
      m.name = arena.entry(r->recurrent_weight()).name;
      m.gate = nn::gate_name(r->kind(), g);
      m.spectral_radius = diag::general_eigenvalues(block, h).spectral_radius();
      const std::vector<double> s = diag::singular_values(block, h, h);
      m.singular_max = s.front();
      m.singular_min = s.back();
      out.push_back(std::move(m));
    }
  }
  return out;
}

std::vector<std::vector<double>> time_gradient_norms(nn::Sequential& net, ParameterArena& arena, const Tensor& x,
                                                     const Tensor& y) {
  const std::vector<nn::Recurrent*> layers = nn::recurrent_layers(net);
  if (layers.empty()) return {};
  const bool training = net.training();
  autodiff::Tape tape;
  const auto restore = [&] {
    for (nn::Recurrent* r : layers) r->set_record_states(false);
    net.set_training(training);
  };
  std::vector<std::vector<double>> out;
  try {
    for (nn::Recurrent* r : layers) r->set_record_states(true);
    net.set_training(false);
    const autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), y);
    const Tensor sink = Tensor::zeros(Shape{arena.size()}, arena.dtype());  // not the training gradient
    tape.backward(loss, sink);
    for (nn::Recurrent* r : layers) out.push_back(r->state_gradient_norms(tape));
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return out;
}

// ---- the callback ---------------------------------------------------------------------

struct Monitors::Impl {
  Impl(const DiagnosticsConfig& c, nn::Sequential& n, ParameterArena& a)
      : config(c), net(n), arena(a), cliffs(c.cliff_factor, c.cliff_window), eval_mode(mode_matters(n, a)) {}

  const DiagnosticsConfig& config;
  nn::Sequential& net;
  ParameterArena& arena;
  CliffDetector cliffs;
  const bool eval_mode;  // the observed change is measured in evaluation mode on both sides
  autodiff::Tape eval_tape;
  Tensor hv, g0, theta0, d, theta1;

  // The step in progress (before_update -> on_step).
  bool curvature_due = false;
  nlohmann::json curvature;  // the record being filled
  double curvature_seconds = 0;
  double loss_before = 0;
  std::int64_t clips_before = 0;
  double grad_norm = 0;

  // Checkpointed state.
  std::int64_t cliff_count = 0;
  std::vector<double> warm;  // lambda_max's last Ritz vector (rounded to the model's dtype)
  std::array<double, 4> seconds{};  // curvature, layers, cliff, recurrent

  static constexpr std::array<const char*, 4> kNames = {"curvature", "layers", "cliff", "recurrent"};

  bool due(std::int64_t every, std::int64_t step) const { return every > 0 && step % every == 0; }

  // The flat vectors the curvature monitor needs, allocated on its first record.
  void ensure_buffers() {
    if (hv.defined()) return;
    const Shape s{arena.size()};
    hv = Tensor::empty(s, arena.dtype());
    g0 = Tensor::empty(s, arena.dtype());
    if (config.observed_change || config.curvature_update) theta0 = Tensor::empty(s, arena.dtype());
    if (config.curvature_update) {
      d = Tensor::empty(s, arena.dtype());
      theta1 = Tensor::empty(s, arena.dtype());
    }
  }

  // A few Lanczos steps on the minibatch Hessian through the step's tape, from the last Ritz
  // vector (the gradient the first time). Returns lambda_max (NaN when g = 0 and no start).
  double lambda_max(autodiff::Tape& tape, autodiff::Var loss, const Tensor& g) {
    const auto n = static_cast<std::size_t>(arena.size());
    std::vector<double> start = warm;
    if (start.size() != n) {
      start.assign(n, 0.0);
      from_tensor(g, start);
    }
    double norm2 = 0;
    for (const double v : start) norm2 += v * v;
    if (!(norm2 > 0) || !std::isfinite(norm2)) return std::numeric_limits<double>::quiet_NaN();
    std::vector<double> y;
    const double top = lanczos_lambda_max(tape, loss, arena, start, static_cast<int>(config.lanczos_steps), &y);
    // Rounded to the model's dtype, so a resumed run (the vector saved in that dtype) starts
    // the next run from the same vector.
    if (arena.dtype() == DType::f32) {
      for (double& v : y) v = static_cast<double>(static_cast<float>(v));
    }
    warm = std::move(y);
    return top;
  }

  nlohmann::json record(const char* kind, std::int64_t step, std::int64_t epoch, Run& run) const {
    return {{"kind", kind}, {"step", step}, {"epoch", epoch}, {"wall_s", run.wall_seconds()}};
  }
};

Monitors::Monitors(const DiagnosticsConfig& config, nn::Sequential& net, ParameterArena& arena)
    : impl_(std::make_unique<Impl>(config, net, arena)) {}
Monitors::~Monitors() = default;

bool Monitors::any(const DiagnosticsConfig& c) {
  return c.curvature_every > 0 || c.lambda_max_every > 0 || c.layers_every > 0 || c.cliff_factor > 0 ||
         c.recurrent_every_epochs > 0;
}

void Monitors::before_update(const StepContext& c) {
  Impl& m = *impl_;
  const DiagnosticsConfig& cfg = m.config;
  ParameterArena& arena = m.arena;
  const Tensor& g = arena.grads();

  // Cliffs: the norm of the gradient before any clipping; whether clipping acted is known
  // after the update (on_step).
  if (cfg.cliff_factor > 0) {
    m.clips_before = c.run.optimizer().clip_count();
    m.grad_norm = c.gradient.grad_norm >= 0 ? c.gradient.grad_norm : std::sqrt(kernels::sum_squares(g));
  }

  if (m.due(cfg.layers_every, c.step)) {
    const auto t0 = Clock::now();
    nlohmann::json grads = nlohmann::json::object(), weights = nlohmann::json::object();
    for (const auto& [name, norm] : parameter_norms(arena, g)) grads[name] = num(norm);
    for (const auto& [name, norm] : parameter_norms(arena, arena.values())) weights[name] = num(norm);
    nlohmann::json r = m.record("layers", c.step, c.epoch, c.run);
    r["grad_norms"] = std::move(grads);
    r["weight_norms"] = std::move(weights);
    const double s = seconds_since(t0);
    r["seconds"] = s;
    c.run.metrics().write(r);
    m.seconds[1] += s;
  }

  m.curvature_due = m.due(cfg.curvature_every, c.step) || m.due(cfg.lambda_max_every, c.step);
  if (!m.curvature_due) return;
  const auto t0 = Clock::now();
  m.ensure_buffers();
  m.g0.copy_from(g);  // the optimizer may clip or decay arena.grads() in place
  const CurvatureFigures f = curvature_figures(c.tape, c.gradient.loss, arena, m.g0, c.lr, m.hv);
  m.curvature = m.record("curvature", c.step, c.epoch, c.run);
  m.curvature["gTg"] = num(f.gTg);
  m.curvature["gHg"] = num(f.gHg);
  m.curvature["lr"] = num(f.lr);
  m.curvature["ratio"] = num(f.ratio);
  m.curvature["predicted_change"] = num(f.predicted_change);
  m.curvature["loss"] = num(c.gradient.loss_value);
  if (m.due(cfg.lambda_max_every, c.step)) {
    m.curvature["lambda_max"] = num(m.lambda_max(c.tape, c.gradient.loss, m.g0));
    m.curvature["lanczos_steps"] = cfg.lanczos_steps;
  }
  if (cfg.observed_change || cfg.curvature_update) m.theta0.copy_from(arena.values());
  if (cfg.observed_change) {
    m.loss_before = m.eval_mode ? eval_loss(m.net, m.eval_tape, c.x, c.y) : c.gradient.loss_value;
  }
  m.curvature_seconds = seconds_since(t0);
}

bool Monitors::on_step(const StepContext& c) {
  Impl& m = *impl_;
  const DiagnosticsConfig& cfg = m.config;
  ParameterArena& arena = m.arena;

  if (m.curvature_due) {
    m.curvature_due = false;
    const auto t0 = Clock::now();
    nlohmann::json& r = m.curvature;
    if (cfg.observed_change) {
      // The same minibatch at the updated parameters: one forward, in evaluation mode (the
      // same function as training mode for a model without dropout or batch normalization;
      // with them, loss_before was also taken in evaluation mode).
      const double after = eval_loss(m.net, m.eval_tape, c.x, c.y);
      r["observed_change"] = num(after - m.loss_before);
      r["observed_mode"] = m.eval_mode ? "eval" : "train";
      r["loss_after"] = num(after);
    } else {
      r["observed_change"] = nullptr;
    }
    if (cfg.curvature_update) {
      // d = theta_1 - theta_0; d'Hd through the step's tape, which reads the parameters in
      // place: put theta_0 back for the product, then theta_1.
      m.theta1.copy_from(arena.values());
      m.d.copy_from(m.theta1);
      kernels::axpby(-1.0, m.theta0, 1.0, m.d);
      arena.values().copy_from(m.theta0);
      double predicted = 0;
      try {
        predicted = step_prediction(c.tape, c.gradient.loss, arena, m.g0, m.d, m.hv);
      } catch (...) {
        arena.values().copy_from(m.theta1);
        throw;
      }
      arena.values().copy_from(m.theta1);
      r["update_predicted_change"] = num(predicted);
      r["update_norm"] = num(std::sqrt(kernels::sum_squares(m.d)));
    }
    const double s = m.curvature_seconds + seconds_since(t0);
    r["seconds"] = s;
    m.seconds[0] += s;
    c.run.metrics().write(r);
  }

  if (cfg.cliff_factor > 0) {
    const auto t0 = Clock::now();
    const std::optional<double> median = m.cliffs.observe(m.grad_norm);
    if (median) {
      ++m.cliff_count;
      nlohmann::json r = m.record("cliff", c.step, c.epoch, c.run);
      r["grad_norm"] = num(m.grad_norm);
      r["median"] = num(*median);
      r["factor"] = cfg.cliff_factor;
      r["clipped"] = c.run.optimizer().clip_count() > m.clips_before;
      c.run.metrics().write(r);
    }
    m.seconds[2] += seconds_since(t0);
  }
  return false;
}

bool Monitors::on_epoch_end(const EpochContext& c) {
  Impl& m = *impl_;
  const DiagnosticsConfig& cfg = m.config;
  if (cfg.recurrent_every_epochs <= 0 || c.epoch % cfg.recurrent_every_epochs != 0) return false;
  if (nn::recurrent_layers(m.net).empty()) return false;
  const auto t0 = Clock::now();
  nlohmann::json r = m.record("recurrent", c.step, c.epoch, c.run);
  nlohmann::json matrices = nlohmann::json::array();
  for (const RecurrentMatrix& x : recurrent_matrices(m.net)) {
    matrices.push_back({{"name", x.name},
                        {"gate", x.gate},
                        {"spectral_radius", num(x.spectral_radius)},
                        {"singular_max", num(x.singular_max)},
                        {"singular_min", num(x.singular_min)}});
  }
  r["matrices"] = std::move(matrices);
  // ||dL/dh_t|| on the first N training examples, in evaluation mode.
  const data::Split& train = c.run.data().train;
  const std::int64_t n = std::min(cfg.recurrent_examples, train.size());
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
  Tensor x, y;
  train.gather(idx, x, y);
  const std::vector<std::vector<double>> norms = time_gradient_norms(m.net, m.arena, x, y);
  // The first recurrent layer's (the gradient that travels furthest); every layer's by name.
  nlohmann::json first = nlohmann::json::array(), by_layer = nlohmann::json::object();
  const std::vector<nn::Recurrent*> layers = nn::recurrent_layers(m.net);
  for (std::size_t l = 0; l < norms.size(); ++l) {
    nlohmann::json a = nlohmann::json::array();
    for (const double v : norms[l]) a.push_back(num(v));
    by_layer[m.arena.entry(layers[l]->recurrent_weight()).name] = a;
    if (l == 0) first = a;
  }
  r["time_grad_norms"] = first;
  const std::optional<double> rate = norms.empty() ? std::nullopt : growth_rate(norms[0]);
  r["growth_rate"] = rate ? num(*rate) : nlohmann::json(nullptr);
  r["time_grad_norms_by_layer"] = by_layer;
  r["examples"] = n;
  const double s = seconds_since(t0);
  r["seconds"] = s;
  m.seconds[3] += s;
  c.run.metrics().write(r);
  return false;
}

void Monitors::final_fields(nlohmann::json& record) const {
  const Impl& m = *impl_;
  if (m.config.cliff_factor > 0) record["cliffs"] = m.cliff_count;
  nlohmann::json seconds = nlohmann::json::object();
  double total = 0;
  for (std::size_t i = 0; i < m.seconds.size(); ++i) {
    seconds[Impl::kNames[i]] = m.seconds[i];
    total += m.seconds[i];
  }
  seconds["total"] = total;
  record["monitor_seconds"] = seconds;
}

nlohmann::json Monitors::save_state() const {
  const Impl& m = *impl_;
  nlohmann::json seconds = nlohmann::json::array();
  for (const double s : m.seconds) seconds.push_back(bits(s));
  nlohmann::json state = {{"cliffs", m.cliffs.save()}, {"cliff_count", m.cliff_count}, {"seconds", seconds}};
  if (!m.warm.empty()) {
    // In the model's dtype: the vector's values are rounded to it (Impl::lambda_max).
    std::vector<unsigned char> raw;
    if (m.arena.dtype() == DType::f32) {
      raw.resize(m.warm.size() * sizeof(float));
      for (std::size_t i = 0; i < m.warm.size(); ++i) {
        const auto f = static_cast<float>(m.warm[i]);
        std::memcpy(raw.data() + i * sizeof(float), &f, sizeof(float));
      }
    } else {
      raw.resize(m.warm.size() * sizeof(double));
      std::memcpy(raw.data(), m.warm.data(), raw.size());
    }
    state["warm_start"] = base64(raw);
  }
  return state;
}

void Monitors::load_state(const nlohmann::json& state) {
  Impl& m = *impl_;
  m.cliffs.load(state.at("cliffs"));
  m.cliff_count = state.at("cliff_count").get<std::int64_t>();
  const nlohmann::json& seconds = state.at("seconds");
  for (std::size_t i = 0; i < m.seconds.size() && i < seconds.size(); ++i) m.seconds[i] = from_bits(seconds[i]);
  m.warm.clear();
  if (state.contains("warm_start")) {
    const std::vector<unsigned char> raw = unbase64(state.at("warm_start").get<std::string>());
    const auto n = static_cast<std::size_t>(m.arena.size());
    const bool f32 = m.arena.dtype() == DType::f32;
    if (raw.size() != n * (f32 ? sizeof(float) : sizeof(double)))
      throw DataError("monitors state: lambda_max's warm start does not fit the model");
    m.warm.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (f32) {
        float f = 0;
        std::memcpy(&f, raw.data() + i * sizeof(float), sizeof(float));
        m.warm[i] = f;
      } else {
        std::memcpy(&m.warm[i], raw.data() + i * sizeof(double), sizeof(double));
      }
    }
  }
}

}  // namespace descent::train
