// The registry of optimizers and schedules (registry.hpp): each optimizer's defaults, keys and
// chain of links, each schedule's constructor, and building them from config.
#include "descent/optim/registry.hpp"

#include <algorithm>
#include <array>
#include <sstream>
#include <utility>
#include <vector>

#include "descent/error.hpp"
#include "descent/suggest.hpp"
#include "recipe.hpp"

namespace descent::optim {
namespace {

// The [optimizer] keys each optimizer reads (besides name, form and weight_decay).
constexpr std::string_view kSgdKeys[] = {"lr"};
constexpr std::string_view kMomentumKeys[] = {"lr", "momentum", "nesterov"};
constexpr std::string_view kNesterovKeys[] = {"lr", "momentum"};
constexpr std::string_view kAdagradKeys[] = {"lr", "delta"};
constexpr std::string_view kRmspropKeys[] = {"lr", "rho", "delta", "momentum", "centered"};
constexpr std::string_view kRmspropNesterovKeys[] = {"lr", "rho", "delta", "momentum"};
constexpr std::string_view kAdadeltaKeys[] = {"lr", "rho", "delta"};
constexpr std::string_view kAdamKeys[] = {"lr", "rho1", "rho2", "delta", "amsgrad"};
constexpr std::string_view kAdamFamilyKeys[] = {"lr", "rho1", "rho2", "delta"};

constexpr OptimizerDefaults kPlain{.lr = 0.01};
constexpr OptimizerDefaults kWithMomentum{.lr = 0.01, .momentum = 0.9};
constexpr OptimizerDefaults kAdamDefaults{.lr = 0.001, .delta = 1e-8};
constexpr OptimizerDefaults kAdamWDefaults{.lr = 0.001, .delta = 1e-8, .weight_decay = 0.01};
constexpr OptimizerDefaults kAdamaxDefaults{.lr = 0.002, .delta = 1e-8};

// ---- the chains: each entry's links after clipping and L2 decay (see recipe.hpp) --------
// Links before scale_by_learning_rate act on a gradient-like direction, links after it on a
// displacement of theta (docs/optimizers.md, "How an optimizer is built").

Transform rate(const ChainArgs& a) { return scale_by_learning_rate(a.schedule); }

void sgd_chain(const ChainArgs& a, ChainRecipe& r) {  // Algorithm 8.1
  if (a.alpha > 0.0) {
    std::ostringstream v;
    v << a.alpha;
    throw ConfigError("optimizer sgd: momentum must be 0 (use name = \"momentum\"), got " + v.str());
  }
  r.links.push_back(rate(a));
  r.fused.kernel = Kernel::sgd;
}

// Algorithms 8.2 and 8.3: the textbook's velocity comes after the rate, PyTorch's before it.
void momentum_chain(const ChainArgs& a, ChainRecipe& r, bool nesterov) {
  const Nesterov kind = !nesterov ? Nesterov::none : a.pytorch ? Nesterov::pytorch : Nesterov::interim;
  if (a.pytorch) {
    r.links.push_back(trace({.alpha = a.alpha, .nesterov = kind}));
    r.links.push_back(rate(a));
  } else {
    r.links.push_back(rate(a));
    r.links.push_back(trace({.alpha = a.alpha, .nesterov = kind}));
  }
  r.fused.kernel = !nesterov ? (a.pytorch ? Kernel::momentum_pytorch : Kernel::momentum)
                             : (a.pytorch ? Kernel::nesterov_pytorch : Kernel::nesterov);
}

void adagrad_chain(const ChainArgs& a, ChainRecipe& r) {  // Algorithm 8.4
  r.links.push_back(scale_by_adagrad({.delta = a.delta}));
  r.links.push_back(rate(a));
  r.fused.kernel = Kernel::adagrad;
}

// Algorithm 8.5 (with momentum when alpha > 0), or Algorithm 8.6 (Nesterov).
void rmsprop_chain(const ChainArgs& a, ChainRecipe& r, bool nesterov) {
  if (nesterov && a.pytorch) {
    throw ConfigError("optimizer rmsprop_nesterov: PyTorch has no RMSprop with Nesterov momentum; use form = \"textbook\"");
  }
  r.fused.at = a.pytorch ? Delta::outside_root : Delta::inside_root;
  r.links.push_back(scale_by_rms({.rho = a.rho, .delta = a.delta, .at = r.fused.at, .centered = a.spec.centered}));
  if (nesterov) {
    r.links.push_back(rate(a));
    r.links.push_back(trace({.alpha = a.alpha, .nesterov = Nesterov::interim}));
  } else if (a.alpha > 0.0 && a.pytorch) {
    r.links.push_back(trace({.alpha = a.alpha}));  // torch: v <- mu v + g / (sqrt(r) + delta); theta -= lr v
    r.links.push_back(rate(a));
  } else if (a.alpha > 0.0) {
    r.links.push_back(rate(a));
    r.links.push_back(trace({.alpha = a.alpha}));  // velocity form: v <- alpha v - eps g / sqrt(delta + r)
  } else {
    r.links.push_back(rate(a));
    if (!a.spec.centered) r.fused.kernel = Kernel::rms;
  }
}

void adadelta_chain(const ChainArgs& a, ChainRecipe& r) {  // the textbook form runs at rate 1
  r.links.push_back(scale_by_adadelta({.rho = a.rho, .delta = a.delta}));
  r.links.push_back(scale_by_learning_rate(a.pytorch ? a.schedule : constant(1.0)));
}

// Algorithm 8.7; AMSGrad; AdamW's decoupled decay sits between Adam and the rate.
void adam_chain(const ChainArgs& a, ChainRecipe& r, bool amsgrad, bool decoupled) {
  r.links.push_back(scale_by_adam({.rho1 = a.rho1, .rho2 = a.rho2, .delta = a.delta, .amsgrad = amsgrad}));
  if (decoupled) {
    r.links.push_back(add_decayed_weights(a.weight_decay));
    r.fused.decoupled = a.weight_decay;
  }
  r.links.push_back(rate(a));
  if (!amsgrad) r.fused.kernel = Kernel::adam;
}

void adamax_chain(const ChainArgs& a, ChainRecipe& r) {
  r.links.push_back(scale_by_adamax({.rho1 = a.rho1, .rho2 = a.rho2, .delta = a.delta}));
  r.links.push_back(rate(a));
}

void nadam_chain(const ChainArgs& a, ChainRecipe& r) {
  r.links.push_back(scale_by_nadam({.rho1 = a.rho1, .rho2 = a.rho2, .delta = a.delta}));
  r.links.push_back(rate(a));
}

const std::array<OptimizerEntry, 12> kOptimizers = {{
    {.name = "sgd", .doc = "stochastic gradient descent (Algorithm 8.1)", .keys = kSgdKeys, .textbook = kPlain,
     .pytorch = kPlain, .chain = sgd_chain},
    {.name = "momentum",
     .doc = "SGD with momentum (Algorithm 8.2); nesterov = true makes it Nesterov's",
     .keys = kMomentumKeys,
     .textbook = kWithMomentum,
     .pytorch = kWithMomentum,
     .chain = [](const ChainArgs& a, ChainRecipe& r) { momentum_chain(a, r, false); }},
    {.name = "nesterov",
     .doc = "SGD with Nesterov momentum (Algorithm 8.3)",
     .keys = kNesterovKeys,
     .textbook = kWithMomentum,
     .pytorch = kWithMomentum,
     .chain = [](const ChainArgs& a, ChainRecipe& r) { momentum_chain(a, r, true); }},
    {.name = "adagrad",
     .doc = "AdaGrad (Algorithm 8.4)",
     .keys = kAdagradKeys,
     .textbook = {.lr = 0.01, .delta = 1e-7},
     .pytorch = {.lr = 0.01, .delta = 1e-10},
     .chain = adagrad_chain},
    {.name = "rmsprop",
     .doc = "RMSProp (Algorithm 8.5), with momentum when momentum > 0",
     .keys = kRmspropKeys,
     .textbook = {.lr = 0.01, .rho = 0.9, .delta = 1e-6},
     .pytorch = {.lr = 0.01, .rho = 0.99, .delta = 1e-8},
     .chain = [](const ChainArgs& a, ChainRecipe& r) { rmsprop_chain(a, r, false); }},
    {.name = "rmsprop_nesterov",
     .doc = "RMSProp with Nesterov momentum (Algorithm 8.6)",
     .keys = kRmspropNesterovKeys,
     .textbook = {.lr = 0.001, .momentum = 0.9, .rho = 0.9, .delta = 1e-6},
     .pytorch = {.lr = 0.001, .momentum = 0.9, .rho = 0.9, .delta = 1e-6},
     .has_pytorch_form = false,
     .chain = [](const ChainArgs& a, ChainRecipe& r) { rmsprop_chain(a, r, true); }},
    {.name = "adadelta",
     .doc = "AdaDelta (Zeiler 2012); the textbook form ignores lr and the schedule",
     .keys = kAdadeltaKeys,
     .textbook = {.lr = 1.0, .rho = 0.95, .delta = 1e-6},
     .pytorch = {.lr = 1.0, .rho = 0.95, .delta = 1e-6},
     .chain = adadelta_chain},
    {.name = "adam",
     .doc = "Adam (Algorithm 8.7); amsgrad = true for AMSGrad",
     .keys = kAdamKeys,
     .textbook = kAdamDefaults,
     .pytorch = kAdamDefaults,
     .chain = [](const ChainArgs& a, ChainRecipe& r) { adam_chain(a, r, a.spec.amsgrad, false); }},
    {.name = "adamw",
     .doc = "Adam with decoupled weight decay (Loshchilov & Hutter 2019; weight_decay 0.01 by default)",
     .keys = kAdamKeys,
     .textbook = kAdamWDefaults,
     .pytorch = kAdamWDefaults,
     .decoupled_weight_decay = true,
     .chain = [](const ChainArgs& a, ChainRecipe& r) { adam_chain(a, r, a.spec.amsgrad, true); }},
    {.name = "amsgrad",
     .doc = "Adam with the AMSGrad maximum of the second moment (Reddi et al. 2018)",
     .keys = kAdamFamilyKeys,
     .textbook = kAdamDefaults,
     .pytorch = kAdamDefaults,
     .chain = [](const ChainArgs& a, ChainRecipe& r) { adam_chain(a, r, true, false); }},
    {.name = "adamax",
     .doc = "Adamax, Adam with the infinity norm (Kingma & Ba 2015)",
     .keys = kAdamFamilyKeys,
     .textbook = kAdamaxDefaults,
     .pytorch = kAdamaxDefaults,
     .chain = adamax_chain},
    {.name = "nadam",
     .doc = "Nadam, Adam with Nesterov momentum (Dozat 2016)",
     .keys = kAdamFamilyKeys,
     .textbook = kAdamaxDefaults,
     .pytorch = kAdamaxDefaults,
     .chain = nadam_chain},
}};

// What tau = 0 means: the run's planned number of updates.
std::int64_t horizon(const ScheduleConfig& s, std::int64_t total_steps) {
  return s.tau > 0 ? s.tau : std::max<std::int64_t>(1, total_steps);
}
// lr_end < 0: no floor.
double floor_of(const ScheduleConfig& s) { return s.lr_end < 0 ? 0.0 : s.lr_end; }

constexpr std::string_view kLinearKeys[] = {"lr_end", "tau"};
constexpr std::string_view kStepKeys[] = {"gamma", "every"};
constexpr std::string_view kExponentialKeys[] = {"gamma"};
constexpr std::string_view kInverseTimeKeys[] = {"decay"};
constexpr std::string_view kCosineKeys[] = {"lr_end", "tau", "warmup"};
constexpr std::string_view kPlateauKeys[] = {"factor", "patience", "lr_end"};

const std::array<ScheduleEntry, 7> kSchedules = {{
    {"constant", "eps_k = lr", {},
     [](const ScheduleConfig&, double lr, std::int64_t) { return constant(lr); }},
    {"linear",
     "the linear decay of eq. 8.14: eps_k = (1 - k/tau) lr + (k/tau) lr_end for k <= tau, then lr_end "
     "(lr_end < 0: lr / 100, the textbook's rule of thumb; tau = 0: the whole run)",
     kLinearKeys,
     [](const ScheduleConfig& s, double lr, std::int64_t total) {
       return linear_decay(lr, s.lr_end < 0 ? lr / 100.0 : s.lr_end, horizon(s, total));
     }},
    {"step", "eps_k = lr gamma^floor(k / every) (PyTorch's StepLR)", kStepKeys,
     [](const ScheduleConfig& s, double lr, std::int64_t) {
       return step_decay({.eps0 = lr, .gamma = s.gamma, .every = s.every});
     }},
    {"exponential", "eps_k = lr gamma^k (PyTorch's ExponentialLR, per update)", kExponentialKeys,
     [](const ScheduleConfig& s, double lr, std::int64_t) { return exponential_decay({.eps0 = lr, .gamma = s.gamma}); }},
    {"inverse_time", "eps_k = lr / (1 + decay k)", kInverseTimeKeys,
     [](const ScheduleConfig& s, double lr, std::int64_t) { return inverse_time({.eps0 = lr, .decay = s.decay}); }},
    {"cosine",
     "linear warmup over `warmup` updates, then a half cosine from lr down to lr_end (< 0: 0) at update tau "
     "(0: the whole run)",
     kCosineKeys,
     [](const ScheduleConfig& s, double lr, std::int64_t total) {
       return cosine({.eps0 = lr, .eps_min = floor_of(s), .warmup = s.warmup, .total = horizon(s, total)});
     }},
    {"plateau",
     "multiply the rate by `factor` when the validation metric that early_stopping.monitor names has not improved "
     "for more than `patience` epochs, down to lr_end (< 0: 0)",
     kPlateauKeys,
     [](const ScheduleConfig& s, double lr, std::int64_t) {
       return reduce_on_plateau({.eps0 = lr, .factor = s.factor, .patience = s.patience, .eps_min = floor_of(s)});
     }},
}};

template <class Entry, std::size_t N>
std::array<std::string_view, N> names_of(const std::array<Entry, N>& entries) {
  std::array<std::string_view, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = entries[i].name;
  return out;
}

std::string unknown(std::string_view what, std::string_view name, std::span<const std::string_view> names) {
  const std::string_view near = closest(name, names);
  std::string shown(name.substr(0, 60));
  return "unknown " + std::string(what) + " name \"" + shown + (name.size() > 60 ? "\"..." : "\"") + "; expected one of " +
         join(names) + (near.empty() ? "" : "; did you mean " + std::string(near) + "?");
}

bool reads(const OptimizerEntry& e, std::string_view key) { return std::ranges::find(e.keys, key) != e.keys.end(); }

}  // namespace

std::string readers_of(std::string_view key) {
  std::vector<std::string_view> names;
  for (const OptimizerEntry& e : kOptimizers)
    if (reads(e, key)) names.push_back(e.name);
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + std::string(names[i]);
  return out;
}

std::span<const OptimizerEntry> optimizers() { return kOptimizers; }
std::span<const ScheduleEntry> schedules() { return kSchedules; }

std::span<const std::string_view> optimizer_name_list() {
  static const auto names = names_of(kOptimizers);
  return names;
}
std::span<const std::string_view> schedule_name_list() {
  static const auto names = names_of(kSchedules);
  return names;
}

const OptimizerEntry* find_optimizer(std::string_view name) {
  const auto it = std::ranges::find(kOptimizers, name, &OptimizerEntry::name);
  return it == kOptimizers.end() ? nullptr : &*it;
}
const ScheduleEntry* find_schedule(std::string_view name) {
  const auto it = std::ranges::find(kSchedules, name, &ScheduleEntry::name);
  return it == kSchedules.end() ? nullptr : &*it;
}

std::string unknown_optimizer(std::string_view name) { return unknown("optimizer", name, optimizer_name_list()); }
std::string unknown_schedule(std::string_view name) { return unknown("schedule", name, schedule_name_list()); }

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names(optimizer_name_list().begin(), optimizer_name_list().end());
  return names;
}

KeyConflict check_keys(const OptimizerConfig& c) {
  const OptimizerEntry* e = find_optimizer(c.name);
  if (e == nullptr) return {"optimizer.name", unknown_optimizer(c.name)};
  const std::string name = "optimizer.name = \"" + c.name + "\"";
  if (c.form == "pytorch" && !e->has_pytorch_form)
    return {"optimizer.form", "PyTorch has no " + c.name + " (" + name + "); use form = \"textbook\""};
  if (c.name == "sgd" && c.momentum.value_or(0.0) > 0.0)
    return {"optimizer.momentum", name + " has no momentum; use name = \"momentum\" (or \"nesterov\"), or momentum = 0"};
  for (const auto& [key, on] : {std::pair<std::string_view, bool>{"centered", c.centered}, {"amsgrad", c.amsgrad}}) {
    if (on && !reads(*e, key))
      return {"optimizer." + std::string(key), "only " + readers_of(key) + " read it, not " + name + "; remove it or set it to false"};
  }
  return {};
}

OptimizerSpec optimizer_spec(const OptimizerConfig& o, const ClipConfig& clip, const AveragingConfig& averaging) {
  OptimizerSpec spec;
  spec.name = o.name == "momentum" && o.nesterov ? "nesterov" : o.name;
  spec.form = o.form;
  spec.lr = o.lr;
  spec.momentum = o.momentum;
  spec.rho = o.rho;
  spec.rho1 = o.rho1;
  spec.rho2 = o.rho2;
  spec.delta = o.delta;
  spec.weight_decay = o.weight_decay;
  spec.centered = o.centered;
  spec.amsgrad = o.amsgrad;
  spec.clip_global_norm = clip.global_norm;
  spec.clip_value = clip.value;
  spec.clip_param_norm = clip.param_norm;
  spec.averaging = averaging.kind == "arithmetic"    ? Averaging::arithmetic
                   : averaging.kind == "exponential" ? Averaging::exponential
                                                     : Averaging::none;
  spec.averaging_rho = averaging.rho;
  return spec;
}

std::shared_ptr<Schedule> make_schedule(const ScheduleConfig& schedule, double lr, std::int64_t total_steps,
                                        double lr_scale) {
  const ScheduleEntry* e = find_schedule(schedule.name);
  if (e == nullptr) throw ConfigError("schedule: " + unknown_schedule(schedule.name));
  ScheduleConfig s = schedule;
  if (s.lr_end >= 0) s.lr_end *= lr_scale;
  return e->make(s, lr * lr_scale, total_steps);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& optimizer, const ScheduleConfig& schedule,
                                          const ClipConfig& clip, const AveragingConfig& averaging,
                                          std::int64_t total_steps, double lr_scale) {
  const OptimizerSpec spec = optimizer_spec(optimizer, clip, averaging);
  return make_optimizer(spec, make_schedule(schedule, default_learning_rate(spec), total_steps, lr_scale));
}

}  // namespace descent::optim
