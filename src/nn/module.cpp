#include "descent/nn/module.hpp"

#include <algorithm>
#include <sstream>

#include "descent/autodiff/conv.hpp"
#include "descent/autodiff/linear_relu.hpp"
#include "descent/nn/conv.hpp"

namespace descent::nn {

Shape Module::output_shape(const Shape& input) const {
  throw ShapeError(describe() + ": does not say its output shape (for the input " + input.str() + ")");
}

Linear::Linear(std::int64_t in_features, std::int64_t out_features, bool bias)
    : in_(in_features), out_(out_features), has_bias_(bias) {
  if (in_ <= 0 || out_ <= 0) {
    throw ConfigError("Linear: sizes must be positive, got " + std::to_string(in_) + " -> " + std::to_string(out_));
  }
}

void Linear::declare(ParameterArena& arena, const std::string& prefix) {
  arena_ = &arena;
  weight_ = arena.add(prefix + ".weight", Shape{out_, in_}, {.role = ParamRole::weight, .fan_in = in_, .fan_out = out_});
  if (has_bias_) bias_ = arena.add(prefix + ".bias", Shape{out_}, {.role = ParamRole::bias, .fan_in = in_, .fan_out = out_});
}

Var Linear::forward(Tape& tape, Var x) {
  if (arena_ == nullptr) throw ShapeError("Linear: parameters were never declared (add the module to a Sequential)");
  Var w = tape.param(*arena_, weight_);
  Var b = has_bias_ ? tape.param(*arena_, bias_) : Var{};
  return autodiff::linear(x, w, b);
}

std::string Linear::describe() const {
  return "Linear(" + std::to_string(in_) + " -> " + std::to_string(out_) + (has_bias_ ? ", bias)" : ")");
}

Shape Linear::output_shape(const Shape& input) const {
  if (input.ndim() != 1 || input[0] != in_)
    throw ShapeError(describe() + ": expects an input [" + std::to_string(in_) + "] per example, got " + input.str());
  return Shape{out_};
}

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "softmax") return Activation::softmax;
  if (name == "log_softmax") return Activation::log_softmax;
  if (name == "identity" || name == "linear" || name == "none") return Activation::identity;
  throw ConfigError("unknown activation '" + name + "' (expected relu, tanh, sigmoid, softmax, log_softmax or identity)");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::softmax: return "softmax";
    case Activation::log_softmax: return "log_softmax";
    case Activation::identity: return "identity";
  }
  return "?";
}

Var apply(Activation a, Var x) {
  switch (a) {
    case Activation::relu: return autodiff::relu(x);
    case Activation::tanh: return autodiff::tanh(x);
    case Activation::sigmoid: return autodiff::sigmoid(x);
    case Activation::softmax: return autodiff::softmax(x);
    case Activation::log_softmax: return autodiff::log_softmax(x);
    case Activation::identity: return x;
  }
  return x;
}

Sequential::Sequential(ParameterArena& arena, std::string prefix) : arena_(&arena), prefix_(std::move(prefix)) {}

void Sequential::append(std::unique_ptr<Module> module) {
  module->declare(*arena_, prefix_ + "." + std::to_string(modules_.size()));
  module->set_training(training_);
  modules_.push_back(std::move(module));
}

void Sequential::set_training(bool training) {
  training_ = training;
  for (auto& m : modules_) m->set_training(training);
}

std::int64_t Sequential::min_batch_size() const {
  std::int64_t m = 1;
  for (const auto& module : modules_) m = std::max(m, module->min_batch_size());
  return m;
}

std::int64_t Sequential::eval_chunk() const {
  std::int64_t chunk = 0;
  for (const auto& module : modules_) {
    const std::int64_t c = module->eval_chunk();
    if (c > 0 && (chunk == 0 || c < chunk)) chunk = c;
  }
  return chunk;
}

Var Sequential::forward(Tape& tape, Var x) {
  for (std::size_t i = 0; i < modules_.size(); ++i) {
    // mixed precision: a Linear followed by ReLU is one bf16 product (autodiff/linear_relu.hpp)
    if (i + 1 < modules_.size() && autodiff::fuses_linear_relu(x)) {
      auto* linear = dynamic_cast<Linear*>(modules_[i].get());
      auto* act = dynamic_cast<ActivationModule*>(modules_[i + 1].get());
      if (linear != nullptr && act != nullptr && act->activation() == Activation::relu) {
        Var w = tape.param(*arena_, linear->weight());
        Var b = linear->bias().valid() ? tape.param(*arena_, linear->bias()) : Var{};
        x = autodiff::linear_relu(x, w, b);
        ++i;
        continue;
      }
    }
    // Conv2d, ReLU, MaxPool2d: one node where the convolution runs in oneDNN's blocked layout
    // (autodiff/conv.hpp, conv2d_relu_max_pool2d); a ReLU followed by max-pooling: one pass
    // (relu_max_pool2d). The same values and gradients either way.
    if (i + 2 < modules_.size()) {
      auto* conv = dynamic_cast<Conv2d*>(modules_[i].get());
      auto* act = dynamic_cast<ActivationModule*>(modules_[i + 1].get());
      auto* pool = dynamic_cast<MaxPool2d*>(modules_[i + 2].get());
      if (conv != nullptr && act != nullptr && pool != nullptr && act->activation() == Activation::relu) {
        Var w = tape.param(*arena_, conv->weight());
        Var b = conv->bias().valid() ? tape.param(*arena_, conv->bias()) : Var{};
        x = autodiff::conv2d_relu_max_pool2d(x, w, b, conv->options(), pool->kernel(), pool->stride());
        i += 2;
        continue;
      }
    }
    if (i + 1 < modules_.size()) {
      auto* act = dynamic_cast<ActivationModule*>(modules_[i].get());
      auto* pool = dynamic_cast<MaxPool2d*>(modules_[i + 1].get());
      if (act != nullptr && pool != nullptr && act->activation() == Activation::relu) {
        x = autodiff::relu_max_pool2d(x, pool->kernel(), pool->stride());
        ++i;
        continue;
      }
    }
    x = modules_[i]->forward(tape, x);
  }
  return x;
}

std::string Sequential::describe() const {
  std::ostringstream out;
  out << "Sequential(";
  for (std::size_t i = 0; i < modules_.size(); ++i) out << (i ? ", " : "") << modules_[i]->describe();
  out << ")";
  return out.str();
}

Shape Sequential::output_shape(const Shape& input) const {
  Shape shape = input;
  for (const auto& m : modules_) shape = m->output_shape(shape);
  return shape;
}

Sequential mlp(ParameterArena& arena, const std::vector<std::int64_t>& sizes, Activation hidden) {
  if (sizes.size() < 2) throw ConfigError("mlp: needs at least an input and an output size");
  Sequential net(arena);
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    net.add(Linear(sizes[i], sizes[i + 1]));
    if (i + 2 < sizes.size() && hidden != Activation::identity) net.add(ActivationModule(hidden));
  }
  return net;
}

}  // namespace descent::nn
