#include "descent/diag/hessian.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "descent/autodiff/gauss_newton.hpp"
#include "descent/autodiff/tape.hpp"
#include "descent/loss/loss.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::diag {

struct HessianOperator::Chunk {
  autodiff::Tape tape;
  autodiff::Var loss;
  autodiff::Var logits;  // the loss's input: Gauss-Newton products start there
  std::int64_t begin = 0, end = 0;  // examples [begin, end)
};

HessianOperator::HessianOperator(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                                 const HessianOptions& options)
    : model_(model), arena_(arena), x_(x), labels_(labels), options_(options) {
  if (!x.defined() || x.ndim() < 1 || x.dim(0) < 1) {
    throw ShapeError("Hessian: needs at least one example, got inputs " + (x.defined() ? x.shape().str() : std::string("(none)")));
  }
  if (x.dtype() != arena.dtype()) {
    throw ShapeError(std::string("Hessian: the inputs are ") + dtype_name(x.dtype()) + ", the parameters are " +
                     dtype_name(arena.dtype()));
  }
  if (!labels.defined() || labels.dtype() != DType::i32 || labels.ndim() != 1 || labels.dim(0) != x.dim(0)) {
    throw ShapeError("Hessian: expects i32 labels [" + std::to_string(x.dim(0)) + "], got " +
                     (labels.defined() ? std::string(dtype_name(labels.dtype())) + " " + labels.shape().str() : std::string("(none)")));
  }
  if (options.chunk < 1) throw ShapeError("Hessian: chunk must be at least 1, got " + std::to_string(options.chunk));
  if (options.parallel_chunks < 1) {
    throw ShapeError("Hessian: parallel_chunks must be at least 1, got " + std::to_string(options.parallel_chunks));
  }
  arena_.freeze();
  dim_ = arena_.size();
  examples_ = x.dim(0);
  for (std::int64_t b = 0; b < examples_; b += options_.chunk) {
    auto c = std::make_unique<Chunk>();
    c->begin = b;
    c->end = std::min(examples_, b + options_.chunk);
    chunks_.push_back(std::move(c));
  }
  if (options_.record) refresh();
}

HessianOperator::~HessianOperator() = default;

DType HessianOperator::dtype() const { return arena_.dtype(); }

std::int64_t HessianOperator::chunks() const { return static_cast<std::int64_t>(chunks_.size()); }

namespace {

// o[i] += w b[i] for i in [i0, i1): the one way a chunk's buffer enters a sum, so that the
// chunk-parallel and the one-chunk-at-a-time paths give the same bits.
template <class T>
void add_weighted(const T* b, double w, double* o, std::int64_t i0, std::int64_t i1) {
#pragma omp simd
  for (std::int64_t i = i0; i < i1; ++i) o[i] += w * static_cast<double>(b[i]);
}

}  // namespace

bool HessianOperator::sequential() const {
  return chunks_.size() == 1 || num_threads() == 1 || options_.chunk * dim_ < options_.parallel_threshold;
}

double HessianOperator::weight(const Chunk& c) const {
  return static_cast<double>(c.end - c.begin) / static_cast<double>(examples_);
}

template <class F>
void HessianOperator::for_chunks_summed(F&& f, std::span<double> out) {
  std::fill(out.begin(), out.end(), 0.0);
  const auto count = static_cast<std::int64_t>(chunks_.size());
  const std::int64_t group = std::min(count, options_.parallel_chunks);
  std::vector<Tensor> buffers(static_cast<std::size_t>(group));
  for (auto& b : buffers) b = Tensor::empty(Shape{dim_}, arena_.dtype());
  for (std::int64_t g0 = 0; g0 < count; g0 += group) {
    const std::int64_t g1 = std::min(count, g0 + group);
    // One chunk per thread at a time; the kernels inside run on that thread alone (no
    // nested parallelism), so each chunk's numbers do not depend on the thread count.
    std::exception_ptr failure;
    const bool parallel = g1 - g0 > 1 && options_.chunk * dim_ >= options_.parallel_threshold;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (std::int64_t c = g0; c < g1; ++c) {
      try {
        f(*chunks_[static_cast<std::size_t>(c)], buffers[static_cast<std::size_t>(c - g0)]);
      } catch (...) {
#pragma omp critical(descent_diag_hessian_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    // The sum in chunk order: J = sum_c (n_c / n) J_c, so H = sum_c (n_c / n) H_c. Each
    // element adds its chunks in chunk order, so splitting the elements among threads
    // changes no bit.
    dispatch_float(arena_.dtype(), [&](auto zero) {
      using T = decltype(zero);
      std::vector<const T*> from;
      std::vector<double> weight;
      for (std::int64_t c = g0; c < g1; ++c) {
        const Chunk& chunk = *chunks_[static_cast<std::size_t>(c)];
        from.push_back(buffers[static_cast<std::size_t>(c - g0)].data<T>());
        weight.push_back(this->weight(chunk));
      }
      double* o = out.data();
      parallel_for(dim_, std::int64_t{1} << 15, [&](std::int64_t i0, std::int64_t i1) {
        for (std::size_t k = 0; k < from.size(); ++k) add_weighted(from[k], weight[k], o, i0, i1);
      });
    });
  }
}

void HessianOperator::record(Chunk& c) {
  c.tape.clear();
  c.logits = model_.forward(c.tape, c.tape.constant(x_.rows(c.begin, c.end)));
  c.loss = loss::cross_entropy(c.logits, labels_.rows(c.begin, c.end));
}

void HessianOperator::refresh() {
  // Forward passes one chunk after another (a module may keep per-call state, e.g. a
  // recurrent layer's list of hidden states), in evaluation mode.
  const bool was_training = model_.training();
  model_.set_training(false);
  struct Restore {
    nn::Module& model;
    bool training;
    ~Restore() { model.set_training(training); }
  } restore{model_, was_training};
  ++passes_;
  gradient_.assign(static_cast<std::size_t>(dim_), 0.0);
  double loss = 0.0;
  if (sequential()) {
    // One chunk at a time: each chunk's backward sweep follows its forward pass while its
    // examples and activations are still in cache, and its gradient enters the sum at once.
    // The same per-chunk numbers, summed in the same order, as the parallel path below.
    Tensor g = Tensor::empty(Shape{dim_}, arena_.dtype());
    for (auto& c : chunks_) {
      record(*c);
      loss += weight(*c) * c->loss.value().item();
      g.fill(0.0);  // backward accumulates
      c->tape.backward(c->loss, g);
      dispatch_float(arena_.dtype(), [&](auto zero) {
        using T = decltype(zero);
        add_weighted(g.data<T>(), weight(*c), gradient_.data(), 0, dim_);
      });
    }
    loss_ = loss;
    return;
  }
  for (auto& c : chunks_) {
    record(*c);
    loss += weight(*c) * c->loss.value().item();
  }
  loss_ = loss;
  for_chunks_summed(
      [](Chunk& c, const Tensor& g) {
        g.fill(0.0);  // backward accumulates
        c.tape.backward(c.loss, g);
      },
      gradient_);
}

void HessianOperator::apply(std::span<const double> v, std::span<double> hv) {
  if (static_cast<std::int64_t>(v.size()) != dim_ || static_cast<std::int64_t>(hv.size()) != dim_) {
    throw ShapeError("Hessian: vectors must have " + std::to_string(dim_) + " elements (the parameters), got " +
                     std::to_string(v.size()) + " and " + std::to_string(hv.size()));
  }
  // v in the model's dtype, shared read-only by every chunk.
  Tensor direction = Tensor::from<double>(Shape{dim_}, v);
  if (arena_.dtype() != DType::f64) direction = direction.to(arena_.dtype());
  for_chunks_summed(
      [&](Chunk& c, const Tensor& out) {
        out.fill(0.0);  // a parameter the loss does not use has zero rows
        if (!c.loss.valid()) throw Error("Hessian: nothing recorded yet (refresh() or adopt() first)");
        autodiff::Tape& tape = *c.loss.tape;  // the chunk's own, or an adopted one (adopt())
        if (tape.has_gradient(c.loss)) {
          // refresh() left the chunk's gradient on its tape: only the tangent sweeps run.
          tape.hvp_at_gradient(c.loss, direction, out);
        } else {
          tape.hvp(c.loss, direction, out);  // Hv alone: no parameter-gradient products
        }
      },
      hv);
  ++products_;
}

std::vector<double> HessianOperator::apply(std::span<const double> v) {
  std::vector<double> hv(v.size());
  apply(v, hv);
  return hv;
}

void HessianOperator::apply_gauss_newton(std::span<const double> v, std::span<double> gv) {
  if (static_cast<std::int64_t>(v.size()) != dim_ || static_cast<std::int64_t>(gv.size()) != dim_) {
    throw ShapeError("Gauss-Newton: vectors must have " + std::to_string(dim_) + " elements (the parameters), got " +
                     std::to_string(v.size()) + " and " + std::to_string(gv.size()));
  }
  Tensor direction = Tensor::from<double>(Shape{dim_}, v);
  if (arena_.dtype() != DType::f64) direction = direction.to(arena_.dtype());
  // G = sum_c (n_c / n) J_c^T H_Lc J_c: each chunk's product from its recorded forward pass.
  for_chunks_summed(
      [&](Chunk& c, const Tensor& out) {
        if (!c.logits.valid()) throw Error("Gauss-Newton: nothing recorded yet (refresh() or adopt() first)");
        autodiff::gauss_newton_product(*c.logits.tape, c.logits, autodiff::OutputLoss::softmax_cross_entropy,
                                       direction, out);
      },
      gv);
  ++products_;
}

void HessianOperator::adopt(autodiff::Var logits, autodiff::Var loss, double loss_value, std::span<const double> gradient) {
  if (chunks_.size() != 1) {
    throw ShapeError("Hessian: adopt() needs the examples in one chunk, there are " + std::to_string(chunks_.size()));
  }
  if (static_cast<std::int64_t>(gradient.size()) != dim_ || !loss.valid() || !logits.valid() ||
      logits.tape != loss.tape || logits.value().ndim() != 2 || logits.value().dim(0) != examples_) {
    throw ShapeError("Hessian: adopt() needs the loss and logits [" + std::to_string(examples_) +
                     ", C] of one tape and a gradient of " + std::to_string(dim_) + " values");
  }
  Chunk& c = *chunks_.front();
  c.tape.clear();  // its recording is superseded; refresh() records on it again
  c.logits = logits;
  c.loss = loss;
  loss_ = loss_value;
  gradient_.assign(gradient.begin(), gradient.end());
}

std::vector<double> dense_hessian(HessianOperator& hessian) {
  const auto n = static_cast<std::size_t>(hessian.dim());
  std::vector<double> dense(n * n), e(n, 0.0), column(n);
  for (std::size_t j = 0; j < n; ++j) {
    e[j] = 1.0;
    hessian.apply(e, column);
    e[j] = 0.0;
    for (std::size_t i = 0; i < n; ++i) dense[i * n + j] = column[i];
  }
  return dense;
}

}  // namespace descent::diag
