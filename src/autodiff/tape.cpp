#include "descent/autodiff/tape.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "descent/tensor/kernels.hpp"

namespace descent::autodiff {
namespace {

class Leaf final : public Node {
 public:
  const char* name() const override { return "leaf"; }
  Tensor tangent_seed;  // set_tangent() of a variable
  // A parameter in backward_overwrite: its slice of the gradient sink, bound as the node's
  // grad at the first contribution (beta 0), or zeroed when none comes.
  Tensor grad_slot;
};

Leaf& as_leaf(Node& n, const char* what) {
  auto* leaf = dynamic_cast<Leaf*>(&n);
  if (leaf == nullptr) throw ShapeError(std::string(what) + ": the Var is not a leaf of this tape");
  return *leaf;
}

}  // namespace

const Tensor& Var::value() const {
  if (!valid()) throw ShapeError("autodiff: use of an empty Var");
  return tape->node(id).value;
}

Var Tape::record(std::unique_ptr<Node> node) {
  if (!node->value.defined()) throw ShapeError(std::string("autodiff: node '") + node->name() + "' has no value");
  for (int i = 0; i < node->num_inputs; ++i) {
    if (nodes_[static_cast<std::size_t>(node->input[i])]->requires_grad) node->requires_grad = true;
  }
  nodes_.push_back(std::move(node));
  gradient_of_ = -1;
  return Var{this, static_cast<std::int32_t>(nodes_.size() - 1)};
}

Var Tape::constant(const Tensor& value) {
  auto leaf = std::make_unique<Leaf>();
  leaf->value = value;
  return record(std::move(leaf));
}

Var Tape::variable(const Tensor& value) {
  auto leaf = std::make_unique<Leaf>();
  leaf->value = value;
  leaf->requires_grad = true;
  return record(std::move(leaf));
}

Var Tape::param(ParameterArena& arena, ParamId id) {
  if (arena_ != nullptr && arena_ != &arena) {
    throw ShapeError("autodiff: a tape records the parameters of one arena only");
  }
  arena_ = &arena;
  for (std::int32_t node_id : params_) {
    if (node(node_id).param == id) return Var{this, node_id};
  }
  auto leaf = std::make_unique<Leaf>();
  leaf->value = arena.value(id);
  leaf->requires_grad = true;
  leaf->param = id;
  Var v = record(std::move(leaf));
  params_.push_back(v.id);
  return v;
}

Tensor Tape::grad_sink(std::int32_t id, double& beta) {
  Node& n = node(id);
  if (n.grad.defined()) {
    beta = 1.0;
  } else {
    // external_grad without a bound grad: a parameter in backward_overwrite (its slot), or one
    // whose gradient is not wanted (hvp without param_grads: a scratch buffer).
    const Tensor* slot = n.external_grad ? &static_cast<Leaf&>(n).grad_slot : nullptr;
    n.grad = slot != nullptr && slot->defined() ? *slot : Tensor::empty(n.value.shape(), n.value.dtype());
    beta = 0.0;
  }
  return n.grad;
}

Tensor Tape::grad_tangent_sink(std::int32_t id, double& beta) {
  Node& n = node(id);
  if (n.grad_tangent.defined()) {
    beta = 1.0;
  } else {
    n.grad_tangent = Tensor::empty(n.value.shape(), n.value.dtype());
    beta = 0.0;
  }
  return n.grad_tangent;
}

void Tape::reset_derivatives() {
  for (auto& n : nodes_) {
    n->grad = Tensor();
    n->grad_tangent = Tensor();
    n->external_grad = false;
    if (auto* leaf = dynamic_cast<Leaf*>(n.get())) {
      n->tangent = leaf->tangent_seed;
      leaf->grad_slot = Tensor();
    } else {
      n->tangent = Tensor();
    }
  }
}

void Tape::bind_param_sinks(const Tensor& grads, const Tensor* tangents, const Tensor* hv) {
  for (std::int32_t id : params_) {
    Node& n = node(id);
    if (grads.defined()) n.grad = arena_->slice(grads, n.param);
    n.external_grad = true;
    if (tangents != nullptr) n.tangent = arena_->slice(*tangents, n.param);
    if (hv != nullptr) n.grad_tangent = arena_->slice(*hv, n.param);
  }
}

namespace {

// A parameter leaf of backward_overwrite that no contribution reached: its slot gets zeros.
void settle(Node& n) {
  if (n.grad.defined() || !n.external_grad) return;
  const Tensor& slot = static_cast<Leaf&>(n).grad_slot;
  if (!slot.defined()) return;
  std::memset(slot.raw(), 0, slot.nbytes());
  n.grad = slot;
}

}  // namespace

void Tape::sweep(Var loss, bool with_tangents) {
  Node& out = node(loss);
  if (out.value.numel() != 1) {
    throw ShapeError("backward: the loss must have one element, got shape " + out.value.shape().str());
  }
  // The loss node is never a parameter leaf, so its grad slot is free here.
  out.grad = Tensor::full(out.value.shape(), out.value.dtype(), 1.0);
  gradient_of_ = -1;
  for (std::int32_t i = loss.id; i >= 0; --i) {
    Node& n = node(i);
    if (n.num_inputs == 0 && n.param.valid()) {
      settle(n);  // backward_overwrite: no contribution came, the gradient is 0
      if (param_ready_) param_ready_(n.param);
    }
    if (!n.requires_grad || !n.grad.defined() || n.num_inputs == 0) continue;
    n.backward(*this);
    if (with_tangents) n.tangent_backward(*this);
  }
  gradient_of_ = loss.id;
}

void Tape::tangent_forward_sweep() {
  for (auto& n : nodes_) {
    if (n->num_inputs == 0) continue;
    bool any = false;
    for (int i = 0; i < n->num_inputs; ++i) any = any || has_tangent(n->input[i]);
    if (any) n->tangent_forward(*this);
  }
}

void Tape::backward(Var loss) {
  if (arena_ != nullptr) {
    backward(loss, arena_->grads());
  } else {
    backward(loss, Tensor());
  }
}

void Tape::backward(Var loss, const Tensor& param_grads) {
  if (loss.tape != this) throw ShapeError("backward: the loss belongs to another tape");
  reset_derivatives();
  if (arena_ != nullptr) bind_param_sinks(param_grads, nullptr, nullptr);
  sweep(loss, false);
}

void Tape::backward_overwrite(Var loss, const Tensor& param_grads) {
  if (loss.tape != this) throw ShapeError("backward: the loss belongs to another tape");
  if (arena_ == nullptr) {
    backward(loss, param_grads);
    return;
  }
  if (!param_grads.defined()) throw ShapeError("backward_overwrite: param_grads is an undefined Tensor");
  reset_derivatives();
  // The arena's parameters never recorded here get zeros now; the recorded ones get their slot.
  std::vector<char> recorded(arena_->count(), 0);
  for (std::int32_t id : params_) {
    auto& leaf = static_cast<Leaf&>(node(id));
    leaf.grad_slot = arena_->slice(param_grads, leaf.param);
    leaf.external_grad = true;
    recorded[static_cast<std::size_t>(leaf.param.index)] = 1;
  }
  for (std::size_t i = 0; i < recorded.size(); ++i) {
    if (recorded[i] != 0) continue;
    const Tensor slot = arena_->slice(param_grads, ParamId{static_cast<std::int32_t>(i)});
    std::memset(slot.raw(), 0, slot.nbytes());
  }
  sweep(loss, false);
  for (std::int32_t id : params_) settle(node(id));  // those recorded after the loss
}

namespace {

// True when the bytes of a and b overlap (views of one storage, or the same view).
bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a.raw());
  const auto b0 = reinterpret_cast<std::uintptr_t>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_flat(const Tensor& t, const ParameterArena& arena, const char* what) {
  if (!t.defined()) {
    throw ShapeError(std::string("hvp: ") + what + " is an undefined Tensor; pass a flat vector of the arena's " +
                     std::to_string(arena.size()) + " parameters (e.g. Tensor::empty({arena.size()}, arena.dtype()))");
  }
  if (t.numel() != arena.size()) {
    throw ShapeError(std::string("hvp: ") + what + " has " + std::to_string(t.numel()) + " elements, the arena has " +
                     std::to_string(arena.size()) + " parameters");
  }
  if (t.dtype() != arena.dtype()) {
    throw ShapeError(std::string("hvp: ") + what + " is " + dtype_name(t.dtype()) + ", the arena is " +
                     dtype_name(arena.dtype()));
  }
}

}  // namespace

void Tape::hvp(Var loss, const Tensor& v, const Tensor& hv, const Tensor& param_grads) {
  if (loss.tape != this) throw ShapeError("hvp: the loss belongs to another tape");
  Tensor direction = v;
  Tensor grads = param_grads;
  if (arena_ != nullptr) {
    check_flat(v, *arena_, "v");
    check_flat(hv, *arena_, "hv");
    if (grads.defined()) {
      check_flat(grads, *arena_, "param_grads");
      if (overlaps(hv, grads)) throw ShapeError("hvp: hv and param_grads share memory; pass two separate buffers");
      if (overlaps(grads, arena_->values())) {
        throw ShapeError("hvp: param_grads shares memory with the parameter values (arena.values())");
      }
    }
    if (overlaps(hv, arena_->values())) throw ShapeError("hvp: hv shares memory with the parameter values (arena.values())");
    // Both outputs are zeroed before the sweeps read v: an input that shares memory with
    // either (hvp(loss, w, w), or Hg by hvp(loss, arena.grads(), hg, arena.grads())) is
    // copied first, so the product is always with v as it was on entry.
    if (overlaps(v, hv) || overlaps(v, grads)) direction = v.clone();
  }
  reset_derivatives();
  if (arena_ != nullptr) {
    std::memset(hv.raw(), 0, hv.nbytes());
    if (grads.defined()) std::memset(grads.raw(), 0, grads.nbytes());
    bind_param_sinks(grads, &direction, &hv);
  }
  // Hv alone: the parameters' gradients are not wanted (wants_grad), so the products that
  // only feed them are skipped; an operation that computes one anyway gets a scratch sink.
  struct Skip {
    bool& flag;
    ~Skip() { flag = false; }
  } skip{skip_param_grads_};
  skip_param_grads_ = arena_ != nullptr && !grads.defined();
  tangent_forward_sweep();
  sweep(loss, true);
}

void Tape::seed_tangents_at_gradient(Var loss, const Tensor& v, const Tensor* hv, const char* what) {
  if (loss.tape != this) throw ShapeError(std::string(what) + ": the loss belongs to another tape");
  if (gradient_of_ != loss.id) {
    throw Error(std::string(what) + ": no gradient of this loss on the tape (call backward() or hvp() first, "
                "after the last operation was recorded)");
  }
  Tensor direction = v;
  if (arena_ != nullptr) {
    check_flat(v, *arena_, "v");
    if (hv != nullptr) {
      check_flat(*hv, *arena_, "hv");
      if (overlaps(*hv, arena_->values())) throw ShapeError("hvp: hv shares memory with the parameter values (arena.values())");
      if (overlaps(v, *hv)) direction = v.clone();
    }
  }
  // Only the tangent quantities are reset; every node keeps its gradient.
  for (auto& n : nodes_) {
    n->grad_tangent = Tensor();
    if (auto* leaf = dynamic_cast<Leaf*>(n.get())) {
      n->tangent = leaf->tangent_seed;
    } else {
      n->tangent = Tensor();
    }
  }
  if (arena_ != nullptr) {
    if (hv != nullptr) std::memset(hv->raw(), 0, hv->nbytes());
    for (std::int32_t id : params_) {
      Node& n = node(id);
      n.tangent = arena_->slice(direction, n.param);
      if (hv != nullptr) n.grad_tangent = arena_->slice(*hv, n.param);
    }
  }
  tangent_forward_sweep();
}

void Tape::hvp_at_gradient(Var loss, const Tensor& v, const Tensor& hv) {
  seed_tangents_at_gradient(loss, v, &hv, "hvp_at_gradient");
  for (std::int32_t i = loss.id; i >= 0; --i) {
    Node& n = node(i);
    if (!n.requires_grad || !n.grad.defined() || n.num_inputs == 0) continue;
    n.tangent_backward(*this);
  }
}

std::optional<double> Tape::vhv_at_gradient(Var loss, const Tensor& v) {
  seed_tangents_at_gradient(loss, v, nullptr, "vhv_at_gradient");
  double total = 0.0;
  for (std::int32_t i = 0; i <= loss.id; ++i) {
    Node& n = node(i);
    if (n.num_inputs == 0 || !n.grad.defined() || !n.tangent.defined()) continue;  // gy = 0 or x' = 0: no term
    const std::string_view op = n.name();
    if (op == "relu" || op == "reshape" || op == "add" || op == "sub" || op == "mul_scalar") continue;  // f'' = 0
    if (op == "linear") {
      // y = x w^T + b:  S = 2 x' w'^T
      const Node& x = node(n.input[0]);
      const Node& w = node(n.input[1]);
      if (!x.tangent.defined() || !w.tangent.defined()) continue;
      Tensor s = Tensor::empty(n.value.shape(), n.value.dtype());
      kernels::gemm(x.tangent, false, w.tangent, true, s);
      total += 2.0 * kernels::dot(n.grad, s);
    } else if (op == "tanh") {
      // S = f''(x) x'^2,  f''(x) = -2 y (1 - y^2)
      const Node& x = node(n.input[0]);
      total += dispatch_float(n.value.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const T* y = n.value.data<T>();
        const T* xt = x.tangent.data<T>();
        const T* gy = n.grad.data<T>();
        double s = 0.0;
        for (std::int64_t k = 0; k < n.value.numel(); ++k) {
          const double yk = static_cast<double>(y[k]), t = static_cast<double>(xt[k]);
          s += static_cast<double>(gy[k]) * (-2.0 * yk * (1.0 - yk * yk)) * t * t;
        }
        return s;
      });
    } else if (op == "softmax_cross_entropy") {
      // L = mean_i lse(z_i) - z_i,y_i:  S = (1/B) sum_i [ sum_c p z'^2 - (sum_c p z')^2 ]
      const Node& z = node(n.input[0]);
      total += static_cast<double>(n.grad.at(0)) * dispatch_float(n.value.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const std::int64_t rows = z.value.dim(0), cols = z.value.dim(1);
        const T* zv = z.value.data<T>();
        const T* zt = z.tangent.data<T>();
        double s = 0.0;
        for (std::int64_t r = 0; r < rows; ++r) {
          const T* row = zv + r * cols;
          const T* trow = zt + r * cols;
          double m = static_cast<double>(row[0]);
          for (std::int64_t c = 1; c < cols; ++c) m = std::max(m, static_cast<double>(row[c]));
          double sum = 0.0, pz = 0.0, pz2 = 0.0;
          for (std::int64_t c = 0; c < cols; ++c) {
            const double e = std::exp(static_cast<double>(row[c]) - m), t = static_cast<double>(trow[c]);
            sum += e;
            pz += e * t;
            pz2 += e * t * t;
          }
          pz /= sum;
          pz2 /= sum;
          s += pz2 - pz * pz;
        }
        return s / static_cast<double>(rows);
      });
    } else {
      return std::nullopt;  // no second-order rule here: the caller takes the full product
    }
  }
  return total;
}

Tensor Tape::jvp(Var output, const Tensor& v) {
  if (output.tape != this) throw ShapeError("jvp: the output belongs to another tape");
  if (arena_ != nullptr) check_flat(v, *arena_, "v");
  // Only the tangents are reset; every node keeps its gradient (and gradient_of_ stands).
  for (auto& n : nodes_) {
    if (auto* leaf = dynamic_cast<Leaf*>(n.get())) {
      n->tangent = leaf->tangent_seed;
    } else {
      n->tangent = Tensor();
    }
  }
  if (arena_ != nullptr) {
    for (std::int32_t id : params_) node(id).tangent = arena_->slice(v, node(id).param);
  }
  for (std::int32_t i = 0; i <= output.id; ++i) {
    Node& n = node(i);
    if (n.num_inputs == 0) continue;
    bool any = false;
    for (int k = 0; k < n.num_inputs; ++k) any = any || has_tangent(n.input[k]);
    if (any) n.tangent_forward(*this);
  }
  const Node& out = node(output);
  return out.tangent.defined() ? out.tangent.clone() : Tensor::zeros(out.value.shape(), out.value.dtype());
}

void Tape::vjp(Var output, const Tensor& seed, const Tensor& param_grads) {
  if (output.tape != this) throw ShapeError("vjp: the output belongs to another tape");
  Node& out = node(output);
  check_same_shape(out.value, seed, "vjp");
  check_same_dtype(out.value, seed, "vjp");
  if (arena_ != nullptr) check_flat(param_grads, *arena_, "param_grads");
  reset_derivatives();
  if (arena_ != nullptr) bind_param_sinks(param_grads, nullptr, nullptr);
  gradient_of_ = -1;
  // An output that is a parameter leaf: its gradient is the seed itself.
  if (out.num_inputs == 0) {
    if (out.param.valid()) kernels::axpby(1.0, seed, 1.0, out.grad);
    return;
  }
  out.grad = seed.clone();
  for (std::int32_t i = output.id; i >= 0; --i) {
    Node& n = node(i);
    if (!n.requires_grad || !n.grad.defined() || n.num_inputs == 0) continue;
    n.backward(*this);
  }
}

void Tape::set_tangent(Var v, const Tensor& tangent) {
  Leaf& leaf = as_leaf(node(v), "set_tangent");
  check_same_shape(leaf.value, tangent, "set_tangent");
  check_same_dtype(leaf.value, tangent, "set_tangent");
  leaf.tangent_seed = tangent;
  leaf.tangent = tangent;
}

const Tensor& Tape::grad(Var v) {
  Node& n = node(v);
  if (!n.grad.defined()) n.grad = Tensor::zeros(n.value.shape(), n.value.dtype());
  return n.grad;
}

const Tensor& Tape::grad_tangent(Var v) {
  Node& n = node(v);
  if (!n.grad_tangent.defined()) n.grad_tangent = Tensor::zeros(n.value.shape(), n.value.dtype());
  return n.grad_tangent;
}

void Tape::clear() {
  gradient_of_ = -1;
  nodes_.clear();
  params_.clear();
  arena_ = nullptr;
}

}  // namespace descent::autodiff
