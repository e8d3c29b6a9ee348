// The optimizer that runs a chain, its fused loops, the factory of named chains, and
// Polyak averaging. Every fused loop below must compute, element by element, what its
// chain computes link by link (transform.cpp); tests/optim/properties_test.cpp (Fused) checks it.
#include "descent/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "descent/error.hpp"
#include "descent/optim/registry.hpp"
#include "descent/tensor/fused_sums.hpp"
#include "descent/tensor/parallel.hpp"
#include "../tensor/dispatch.hpp"  // DESCENT_DISPATCH
#include "recipe.hpp"
#include "rules.hpp"

namespace descent::optim {
namespace {

std::string num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// The fused loops (Kernel, Fused: recipe.hpp). Each reads g and theta once and writes theta
// and its state once, and computes, element by element, its chain's rules (rules.hpp)
// composed in the chain's order: the arithmetic is the links' own, only the passes over
// memory are fewer.

// One chunk of a fused pass: compiled for the baseline and for AVX2/AVX-512, chosen at start-up
// (tensor/dispatch.hpp); the rule is inlined into each version.
template <class T, class Update>
DESCENT_DISPATCH void fused_chunk(T* th, const T* g, const Update& u, std::int64_t i0, std::int64_t i1) {
  const Update rule = u;  // a local copy: its scalars stay in registers (stores to th cannot alias them)
#pragma omp simd
  for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + rule(g[i], th[i], i);
}

// theta_i <- theta_i + u(g_i, theta_i, i) for i in [begin, end) of the flat buffers (all of
// them, or one parameter's slice): parallel chunks, each vectorized.
template <class T, class Update>
void fused_pass(T* th, const T* g, const Update& u, std::int64_t begin, std::int64_t end) {
  parallel_for_elements(end - begin,
                        [&](std::int64_t i0, std::int64_t i1) { fused_chunk<T>(th, g, u, begin + i0, begin + i1); });
}

// fused_pass over one parameter's slice, run the moment the backward sweep has its gradient
// (step_parameter): the product that wrote that gradient just ran, and when it ran on every
// thread each core holds part of the gradient in its cache (thread t the t-th block of rows),
// so the update splits too, into one part per thread as parallel_for_ranges splits step()'s,
// from 2 range_split_min up, below elementwise_serial_below (an MLP's 256 x 256 weight).
template <class T, class Update>
void fused_slice_pass(T* th, const T* g, const Update& u, std::int64_t begin, std::int64_t end) {
  const std::int64_t n = end - begin;
  const int parts = num_threads();
  if (parts > 1 && n >= 2 * range_split_min && !last_products_serial()) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < parts; ++t) {
      const Range p = part_of({begin, end}, t, parts);
      if (p.begin < p.end) fused_chunk<T>(th, g, u, p.begin, p.end);
    }
  } else {
    fused_pass(th, g, u, begin, end);
  }
}

// fused_chunk over [i0, i1), whose ends are block ends of kernels::lane_sum_block (or n),
// with the sums of squares of step_measured: for each block b, gsq[b] = sum g_i^2 and
// dsq[b] = sum (theta_new_i - theta_old_i)^2, each difference and square in double, in the
// order of kernels::squares_in_lanes (8 lanes, added 0..7, then the tail). The update of each
// element is fused_chunk's expression (the same bits).
template <class T, class Update>
DESCENT_DISPATCH void fused_chunk_sums(T* th, const T* g, const Update& u, std::int64_t i0, std::int64_t i1, double* gsq,
                                       double* dsq) {
  const Update rule = u;
  constexpr int lanes = kernels::lane_sum_lanes;
  for (std::int64_t b0 = i0; b0 < i1; b0 += kernels::lane_sum_block) {
    const std::int64_t b1 = std::min(i1, b0 + kernels::lane_sum_block);
    double ga[lanes] = {}, da[lanes] = {};
    std::int64_t i = b0;
    for (; i + lanes <= b1; i += lanes) {
#pragma omp simd
      for (int l = 0; l < lanes; ++l) {
        const T gi = g[i + l];
        const T old = th[i + l];
        const T next = old + rule(gi, old, i + l);
        th[i + l] = next;
        const double gd = static_cast<double>(gi);
        ga[l] += gd * gd;
        const double d = static_cast<double>(next) - static_cast<double>(old);
        da[l] += d * d;
      }
    }
    double gs = 0.0, ds = 0.0;
    for (int l = 0; l < lanes; ++l) {
      gs += ga[l];
      ds += da[l];
    }
    for (; i < b1; ++i) {
      const T gi = g[i];
      const T old = th[i];
      const T next = old + rule(gi, old, i);
      th[i] = next;
      const double gd = static_cast<double>(gi);
      gs += gd * gd;
      const double d = static_cast<double>(next) - static_cast<double>(old);
      ds += d * d;
    }
    const auto b = static_cast<std::size_t>(b0 / kernels::lane_sum_block);
    gsq[b] = gs;
    dsq[b] = ds;
  }
}
static_assert(parallel_grain % kernels::lane_sum_block == 0, "a parallel chunk must hold whole blocks of the sums");

// The thread of each kernels::lane_sum_block block of the flat buffers (n elements) for
// step_measured: the thread that updates the block's first element under parallel_for_ranges'
// split of `ranges` (consecutive from 0) into `parts`. A block is updated and summed whole by
// one thread, so its sums are those of one thread, and the update follows step()'s split but
// for the blocks that straddle a cut.
std::vector<int> block_owners(std::span<const Range> ranges, std::int64_t n, int parts) {
  const std::int64_t block = kernels::lane_sum_block;
  std::vector<int> owner(static_cast<std::size_t>((n + block - 1) / block), 0);
  std::int64_t small = 0;
  std::size_t b = 0;
  for (const Range& r : ranges) {
    const bool whole = r.end - r.begin < range_split_min;
    const int mine = whole ? static_cast<int>(small++ % parts) : 0;
    for (; b < owner.size() && static_cast<std::int64_t>(b) * block < r.end; ++b) {
      const std::int64_t i = static_cast<std::int64_t>(b) * block;
      int t = mine;
      if (!whole) {
        t = 0;
        while (t + 1 < parts && part_of(r, t + 1, parts).begin <= i) ++t;
      }
      owner[b] = t;
    }
  }
  return owner;
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
        const T* v = state_tensor<T>("trace.v");
        const rules::Trace<T, Nesterov::interim> trace(trace_options());
        parallel_for_elements(theta.numel(), [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
          for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + trace.interim(v[i]);  // theta <- theta + alpha v
        });
        return;
      }
      shift_.fill(0.0);
      chain_->interim(shift_, k);
      const T* d = shift_.data<T>();
      parallel_for_elements(theta.numel(), [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + d[i];
      });
    });
  }

  bool has_interim() const override { return interim_; }
  void discard_prepared() override { prepared_k_ = -1; }

  void step(ParameterArena& arena, std::int64_t k) override {
    start_update(arena, k);
    const Tensor& theta = arena.values();
    if (fused_.kernel != Kernel::none) {
      set_ranges(arena);
      fused_step(theta, arena.grads(), k, [this](auto* th, const auto* g, const auto& rule) {
        parallel_for_ranges(ranges_, [&](std::int64_t i0, std::int64_t i1) { fused_chunk(th, g, rule, i0, i1); });
      });
    } else {
      u_.copy_from(arena.grads());  // u <- g
      chain_->update(u_, theta, k);
      dispatch_float(theta.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* th = theta.data<T>();
        const T* u = u_.data<T>();
        parallel_for_elements(theta.numel(), [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
          for (std::int64_t i = i0; i < i1; ++i) th[i] = th[i] + u[i];  // theta <- theta + u
        });
      });
    }
    if (o_.averaging != Averaging::none) average(theta);
  }

  void step_measured(ParameterArena& arena, std::int64_t k, StepSums& sums) override {
    if (fused_.kernel == Kernel::none || (!sums.gradient && !sums.step)) {
      Optimizer::step_measured(arena, k, sums);
      return;
    }
    start_update(arena, k);
    const Tensor& theta = arena.values();
    const std::int64_t n = theta.numel();
    const auto blocks = static_cast<std::size_t>((n + kernels::lane_sum_block - 1) / kernels::lane_sum_block);
    gsq_.assign(blocks, 0.0);
    dsq_.assign(blocks, 0.0);
    // step()'s split (parallel_for_ranges: each core updates mostly the rows its product
    // wrote), in whole blocks of the sums (block_owners), under its rule for running serially
    set_ranges(arena);
    const int parts = num_threads();
    const bool serial = parts <= 1 || elementwise_on_one_thread(n);
    if (!serial) owners_ = block_owners(ranges_, n, parts);
    fused_step(theta, arena.grads(), k, [&](auto* th, const auto* g, const auto& rule) {
      if (serial) {
        fused_chunk_sums(th, g, rule, 0, n, gsq_.data(), dsq_.data());
        return;
      }
      const std::int64_t block = kernels::lane_sum_block;
#pragma omp parallel for schedule(static)
      for (int t = 0; t < parts; ++t) {
        for (std::size_t b = 0; b < blocks;) {  // each run of consecutive blocks of thread t
          if (owners_[b] != t) {
            ++b;
            continue;
          }
          std::size_t e = b + 1;
          while (e < blocks && owners_[e] == t) ++e;
          fused_chunk_sums(th, g, rule, static_cast<std::int64_t>(b) * block,
                           std::min(n, static_cast<std::int64_t>(e) * block), gsq_.data(), dsq_.data());
          b = e;
        }
      }
    });
    if (o_.averaging != Averaging::none) average(theta);
    double gs = 0.0, ds = 0.0;
    for (std::size_t b = 0; b < blocks; ++b) {
      gs += gsq_[b];
      ds += dsq_[b];
    }
    sums.gradient_squares = sums.gradient ? gs : -1.0;
    sums.step_squares = sums.step && !interim_ ? ds : -1.0;
  }

  bool measures_in_update() const override { return fused_.kernel != Kernel::none && !interim_; }

  bool steps_by_parameter() const override { return fused_.kernel != Kernel::none; }

  void begin_step(ParameterArena& arena, std::int64_t k) override {
    if (!steps_by_parameter()) Optimizer::begin_step(arena, k);
    start_update(arena, k);
    // The rule of this update (schedule read, Adam's t counted: once, as step() does), kept
    // for the slices.
    fused_step(arena.values(), arena.grads(), k, [this](auto* th, const auto* g, const auto& rule) {
      slice_step_ = [th, g, rule](std::int64_t begin, std::int64_t end) { fused_slice_pass(th, g, rule, begin, end); };
    });
    if (o_.averaging != Averaging::none) average_weight_ = next_average_weight();
    stepped_ = 0;
  }

  void step_parameter(ParameterArena& arena, ParamId id) override {
    if (!slice_step_) throw std::logic_error(name_ + ": step_parameter() outside begin_step() ... end_step()");
    const ParamEntry& e = arena.entry(id);
    const std::int64_t begin = e.offset, end = e.offset + e.shape.numel();
    slice_step_(begin, end);
    if (o_.averaging != Averaging::none) average_range(arena.values(), average_weight_, begin, end);
    stepped_ += end - begin;
  }

  void end_step() override {
    if (!slice_step_) throw std::logic_error(name_ + ": end_step() without begin_step()");
    slice_step_ = nullptr;
    if (stepped_ != size_) {
      throw std::logic_error(name_ + ": the update stepped " + std::to_string(stepped_) + " parameter values of " +
                             std::to_string(size_) + " (every parameter once between begin_step and end_step)");
    }
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

  // The state tensor (counter) the chain calls `name` ("adam.s", "adam.t"): the fused
  // loops find their state by name, as the chain's links declared it.
  std::size_t state_index(const std::vector<std::string>& names, const std::string& name) const {
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      throw std::logic_error(name_ + ": the fused loop needs state \"" + name + "\" but the chain has [" + join(names) +
                             "]");
    }
    return static_cast<std::size_t>(it - names.begin());
  }
  template <class T>
  T* state_tensor(const std::string& name) const {
    return refs_.tensors[state_index(refs_.names, name)].data<T>();
  }
  std::int64_t& counter(const std::string& name) const {
    return *refs_.counters[state_index(refs_.counter_names, name)];
  }

  // The options the chain's links were built with (make_chain passes the same values).
  TraceOptions trace_options() const { return {.alpha = fused_.alpha}; }
  AdagradOptions adagrad_options() const { return {.delta = fused_.delta}; }
  RmsOptions rms_options() const { return {.rho = fused_.rho, .delta = fused_.delta, .at = fused_.at}; }
  AdamOptions adam_options() const {
    return {.rho1 = fused_.rho1, .rho2 = fused_.rho2, .delta = fused_.delta, .at = fused_.at};
  }

  // One fused update: the chain's rules composed per element (the chains: registry.cpp),
  // handed to pass(th, g, rule), which runs fused_pass over the whole buffers (step) or keeps
  // the rule for the parameters' slices (begin_step).
  template <class Pass>
  void fused_step(const Tensor& theta, const Tensor& grads, std::int64_t k, Pass&& pass) {
    const double eps = schedules_.empty() ? 1.0 : schedules_[0]->at(k);
    dispatch_float(theta.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const auto run = [&](const auto& rule) { pass(theta.data<T>(), grads.data<T>(), rule); };
      if (fused_.l2 != 0.0) {
        fused_kernel<T, true>(eps, run);
      } else {
        fused_kernel<T, false>(eps, run);
      }
    });
  }

  template <class T, bool L2, class Run>
  void fused_kernel(double eps, const Run& run) {
    const rules::Rate<T> lr(eps);                // u <- -eps_k u
    const rules::Decay<T> decay(fused_.l2);      // u <- u + lambda theta
    auto grad = [decay](T g, T th) {             // g, or g + lambda theta with L2 decay
      if constexpr (L2) {
        return decay(g, th);
      } else {
        (void)decay;  // clang: the capture is unused without L2
        (void)th;
        return g;
      }
    };
    switch (fused_.kernel) {
      case Kernel::none:
        break;
      case Kernel::sgd:  // chain: lr
        run([=](T g, T th, std::int64_t) { return lr(grad(g, th)); });
        break;
      case Kernel::momentum:  // chain: lr, trace (Algorithm 8.2)
      case Kernel::nesterov: {  // chain: lr, trace(interim) (Algorithm 8.3; prepare() moved theta)
        T* v = state_tensor<T>("trace.v");
        rules::with_nesterov(fused_.kernel == Kernel::nesterov ? Nesterov::interim : Nesterov::none, [&](auto kind) {
          const rules::Trace<T, decltype(kind)::value> trace(trace_options());
          // u = -eps g enters after alpha v, as in the link (see rules::Trace)
          run([=](T g, T th, std::int64_t i) { return trace([=] { return lr(grad(g, th)); }, v[i]); });
        });
        break;
      }
      case Kernel::momentum_pytorch:    // chain: trace, lr (torch.optim.SGD(momentum))
      case Kernel::nesterov_pytorch: {  // chain: trace(pytorch), lr (nesterov=True)
        T* v = state_tensor<T>("trace.v");
        rules::with_nesterov(fused_.kernel == Kernel::nesterov_pytorch ? Nesterov::pytorch : Nesterov::none,
                             [&](auto kind) {
                               const rules::Trace<T, decltype(kind)::value> trace(trace_options());
                               run([=](T g, T th, std::int64_t i) { return lr(trace(grad(g, th), v[i])); });
                             });
        break;
      }
      case Kernel::adagrad: {  // chain: adagrad, lr (Algorithm 8.4)
        T* r = state_tensor<T>("adagrad.r");
        const rules::Adagrad<T> adagrad(adagrad_options());
        run([=](T g, T th, std::int64_t i) { return lr(adagrad(grad(g, th), r[i])); });
        break;
      }
      case Kernel::rms: {  // chain: rms, lr (Algorithm 8.5, or torch.optim.RMSprop)
        T* r = state_tensor<T>("rms.r");
        rules::with_delta(fused_.at, [&](auto at) {
          const rules::Rms<T, decltype(at)::value> rms(rms_options());
          run([=](T g, T th, std::int64_t i) { return lr(rms(grad(g, th), r[i])); });
        });
        break;
      }
      case Kernel::adam: {  // chain: adam[, decoupled decay], lr (Algorithm 8.7; AdamW)
        T* s = state_tensor<T>("adam.s");
        T* r = state_tensor<T>("adam.r");
        const std::int64_t t = ++counter("adam.t");  // t <- t + 1
        rules::with_delta(fused_.at, [&](auto at) {
          const rules::Adam<T, decltype(at)::value> adam(adam_options(), t);
          if (fused_.decoupled != 0.0) {
            const rules::Decay<T> decoupled(fused_.decoupled);
            run([=](T g, T th, std::int64_t i) { return lr(decoupled(adam(grad(g, th), s[i], r[i]), th)); });
          } else {
            run([=](T g, T th, std::int64_t i) { return lr(adam(grad(g, th), s[i], r[i])); });
          }
        });
        break;
      }
    }
  }

  // What every update (step, begin_step) does first: the state sized to the arena, and under
  // Nesterov the check that prepare(arena, k) moved theta to the interim point.
  void start_update(ParameterArena& arena, std::int64_t k) {
    ensure_init(arena);
    if (interim_ && prepared_k_ != k) {
      throw ConfigError(name_ + ": step(" + std::to_string(k) +
                        ") without prepare(): Nesterov momentum needs the gradient at the interim point theta + alpha v");
    }
    prepared_k_ = -1;
  }

  void average(const Tensor& theta) { average_range(theta, next_average_weight(), 0, theta.numel()); }
  // Counts the iterate and returns its weight w in bar += w (theta - bar).
  double next_average_weight() {
    ++average_count_;
    return o_.averaging == Averaging::arithmetic ? 1.0 / static_cast<double>(average_count_)
           : average_count_ == 1                 ? 1.0
                                                 : 1.0 - o_.averaging_rho;
  }
  // bar += w (theta - bar) over [begin, end) of the flat buffers.
  void average_range(const Tensor& theta, double w, std::int64_t begin, std::int64_t end) {
    dispatch_float(theta.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* th = theta.data<T>();
      T* bar = average_.data<T>();
      const T wt = static_cast<T>(w);
      parallel_for_elements(end - begin, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
        for (std::int64_t i = begin + i0; i < begin + i1; ++i) bar[i] = bar[i] + wt * (th[i] - bar[i]);
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
  // The parameters' slices of the flat buffers, end to end (step() and step_measured split them).
  void set_ranges(const ParameterArena& arena) {
    ranges_.clear();
    for (std::size_t p = 0; p < arena.count(); ++p) {
      const ParamEntry& e = arena.entry(ParamId{static_cast<std::int32_t>(p)});
      ranges_.push_back({e.offset, e.offset + e.shape.numel()});
    }
  }

  std::vector<Range> ranges_;  // step(), step_measured: the parameters' slices of the flat buffers
  std::vector<int> owners_;    // step_measured: the thread of each block of the sums (block_owners)
  DType dtype_ = DType::f32;
  StateRefs refs_;
  Tensor u_, shift_, average_;
  std::int64_t average_count_ = 0;
  std::int64_t prepared_k_ = -1;
  // Between begin_step and end_step: the update's rule over [begin, end), the weight of the
  // iterate in the average, the values stepped so far.
  std::function<void(std::int64_t, std::int64_t)> slice_step_;
  double average_weight_ = 0.0;
  std::int64_t stepped_ = 0;
  std::vector<double> gsq_, dsq_;  // step_measured's sums per block
};

// ---- the factory -------------------------------------------------------------------

bool pytorch_form(const OptimizerSpec& s) {
  if (s.form == "textbook") return false;
  if (s.form == "pytorch") return true;
  throw ConfigError("optimizer " + s.name + ": form must be \"textbook\" or \"pytorch\", got \"" + s.form + "\"");
}

// The registry entry of a spec's name (registry.cpp holds the defaults and the chains).
const OptimizerEntry& entry_of(const OptimizerSpec& s) {
  const OptimizerEntry* e = find_optimizer(s.name);
  if (e == nullptr) throw ConfigError(unknown_optimizer(s.name));
  return *e;
}

// The chain of a spec: the checks every optimizer shares, clipping and L2 decay in front,
// then what the registry entry of the name appends (registry.cpp), and its fused loop.
ChainRecipe build(const OptimizerSpec& s, std::shared_ptr<Schedule> schedule) {
  const bool pt = pytorch_form(s);
  const OptimizerEntry& e = entry_of(s);
  const OptimizerDefaults& d = pt ? e.pytorch : e.textbook;
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
  for (const auto& [key, on] : {std::pair<std::string_view, bool>{"centered", s.centered}, {"amsgrad", s.amsgrad}}) {
    if (on && std::ranges::find(e.keys, key) == e.keys.end()) {
      throw ConfigError("optimizer " + s.name + ": " + std::string(key) + " applies to " + readers_of(key) + " only");
    }
  }

  ChainRecipe r;
  if (s.clip_global_norm > 0.0) r.links.push_back(clip_by_global_norm(s.clip_global_norm));
  if (s.clip_param_norm > 0.0) r.links.push_back(clip_by_param_norm(s.clip_param_norm));
  if (s.clip_value > 0.0) r.links.push_back(clip_by_value(s.clip_value));
  if (s.clip_global_norm < 0.0 || s.clip_param_norm < 0.0 || s.clip_value < 0.0) {
    throw ConfigError("optimizer " + s.name + ": clipping thresholds must be >= 0 (0 turns clipping off)");
  }
  const bool clipped = !r.links.empty();
  const double wd = s.weight_decay == 0.0 ? d.weight_decay : s.weight_decay;
  if (wd > 0.0 && !e.decoupled_weight_decay) {
    r.links.push_back(add_decayed_weights(wd));
    r.fused.l2 = wd;
  }
  r.fused.alpha = alpha;
  r.fused.rho = rho;
  r.fused.rho1 = rho1;
  r.fused.rho2 = rho2;
  r.fused.delta = delta;
  const ChainArgs args{.spec = s,
                       .pytorch = pt,
                       .alpha = alpha,
                       .rho = rho,
                       .rho1 = rho1,
                       .rho2 = rho2,
                       .delta = delta,
                       .weight_decay = wd,
                       .schedule = std::move(schedule)};
  if (e.chain == nullptr) throw std::logic_error("optimizer " + s.name + ": its registry entry has no chain builder");
  e.chain(args, r);
  if (clipped || !s.fused) r.fused.kernel = Kernel::none;
  return r;
}

}  // namespace

void Optimizer::begin_step(ParameterArena& arena, std::int64_t k) {
  (void)arena;
  (void)k;
  throw std::logic_error(describe() + ": cannot step parameter by parameter (steps_by_parameter() is false)");
}
void Optimizer::step_parameter(ParameterArena& arena, ParamId id) {
  (void)arena;
  (void)id;
  throw std::logic_error(describe() + ": step_parameter() without begin_step()");
}
void Optimizer::end_step() { throw std::logic_error(describe() + ": end_step() without begin_step()"); }

void Optimizer::step_measured(ParameterArena& arena, std::int64_t k, StepSums& sums) {
  sums.gradient_squares = sums.gradient ? kernels::squares_in_lanes(arena.grads()) : -1.0;  // before the update
  sums.step_squares = -1.0;
  step(arena, k);
}

std::unique_ptr<Optimizer> make_optimizer(Transform c, const OptimizerOptions& options) {
  if (!c) throw ConfigError("make_optimizer: the chain is empty");
  if (options.averaging == Averaging::exponential && !(options.averaging_rho >= 0.0 && options.averaging_rho < 1.0)) {
    throw ConfigError("averaging: averaging_rho must be in [0, 1), got " + num(options.averaging_rho));
  }
  return std::make_unique<ChainOptimizer>(std::move(c), options, Fused{}, "chain");
}

Transform make_chain(const OptimizerSpec& spec, std::shared_ptr<Schedule> schedule) {
  return chain(build(spec, std::move(schedule)).links);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec, std::shared_ptr<Schedule> schedule) {
  ChainRecipe b = build(spec, std::move(schedule));
  const OptimizerOptions o{.averaging = spec.averaging, .averaging_rho = spec.averaging_rho};
  if (o.averaging == Averaging::exponential && !(o.averaging_rho >= 0.0 && o.averaging_rho < 1.0)) {
    throw ConfigError("optimizer " + spec.name + ": averaging_rho must be in [0, 1), got " + num(o.averaging_rho));
  }
  return std::make_unique<ChainOptimizer>(chain(std::move(b.links)), o, b.fused, spec.name + " (" + spec.form + ")");
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
  const bool pt = pytorch_form(spec);
  const OptimizerEntry& e = entry_of(spec);
  return spec.lr.value_or((pt ? e.pytorch : e.textbook).lr);
}

}  // namespace descent::optim
