#pragma once
// Modules: building blocks whose forward pass records on a tape.
//
// A module declares its parameters in a ParameterArena (one flat buffer for the whole
// model) under a name prefix, then reads them from there in forward(). Sequential names
// its children "layers.<i>", so parameters are called "layers.0.weight", "layers.0.bias",
// as in PyTorch's state dicts (safetensors files line up).
//
//   ParameterArena arena(DType::f32);
//   nn::Sequential net(arena);
//   net.add(nn::Linear(784, 256)); net.add(nn::ReLU());
//   net.add(nn::Linear(256, 10));
//   autodiff::Tape tape;
//   autodiff::Var logits = net.forward(tape, tape.constant(x));
#include <memory>
#include <string>
#include <vector>

#include "descent/autodiff/ops.hpp"
#include "descent/tensor/arena.hpp"

namespace descent::nn {

using autodiff::Tape;
using autodiff::Var;

class Module {
 public:
  virtual ~Module() = default;
  // Declares this module's parameters in `arena`, named "<prefix>.<name>".
  virtual void declare(ParameterArena& arena, const std::string& prefix) {
    (void)arena;
    (void)prefix;
  }
  virtual Var forward(Tape& tape, Var x) = 0;
  // One line, e.g. "Linear(784 -> 256, bias)".
  virtual std::string describe() const = 0;
  // The shape of one example's output for one example's input (neither has the batch
  // dimension), e.g. [784] -> [256] for Linear(784 -> 256). Throws ShapeError when the input
  // does not fit, and (the default) for a module that does not say.
  virtual Shape output_shape(const Shape& input) const;
  // Training mode (the default) or evaluation mode. BatchNorm normalizes with the batch's
  // statistics and updates its running estimates in training, and uses the running
  // estimates in evaluation; Dropout drops units in training and is the identity in
  // evaluation. Containers pass the mode on to their children.
  virtual void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  // What a trainer needs to know of a module without knowing its type (train/ never casts):
  // The smallest minibatch it can train on (BatchNorm: 2, the variance of one value is
  // undefined). Containers give the largest of their children's.
  virtual std::int64_t min_batch_size() const { return 1; }
  // How many examples it prefers to evaluate at once, 0 for no preference (Conv2d: 200, its
  // activations for 1,000 images are hundreds of MB). Containers give the smallest preference.
  virtual std::int64_t eval_chunk() const { return 0; }
  // Whether it draws random numbers in training (Dropout's masks). Its generator's state is
  // then part of a checkpoint: rng_state() saves it, set_rng_state() restores it.
  virtual bool has_rng() const { return false; }
  virtual std::string rng_state() const { return {}; }
  virtual void set_rng_state(const std::string& state) { (void)state; }

 protected:
  bool training_ = true;
};

// y = x W^T + b; W [out, in] (row i: the incoming weights of unit i), b [out].
class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true);
  void declare(ParameterArena& arena, const std::string& prefix) override;
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;  // [in] -> [out]
  ParamId weight() const { return weight_; }
  ParamId bias() const { return bias_; }
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }

 private:
  std::int64_t in_, out_;
  bool has_bias_;
  ParameterArena* arena_ = nullptr;
  ParamId weight_, bias_;
};

// Elementwise activations and the row-wise softmax family: no parameters.
enum class Activation { relu, tanh, sigmoid, softmax, log_softmax, identity };
Activation parse_activation(const std::string& name);  // ConfigError listing valid names
const char* activation_name(Activation a);
Var apply(Activation a, Var x);

class ActivationModule : public Module {
 public:
  explicit ActivationModule(Activation a) : a_(a) {}
  Var forward(Tape&, Var x) override { return apply(a_, x); }
  std::string describe() const override { return activation_name(a_); }
  Shape output_shape(const Shape& input) const override { return input; }
  Activation activation() const { return a_; }

 private:
  Activation a_;
};
struct ReLU : ActivationModule { ReLU() : ActivationModule(Activation::relu) {} };
struct Tanh : ActivationModule { Tanh() : ActivationModule(Activation::tanh) {} };
struct Sigmoid : ActivationModule { Sigmoid() : ActivationModule(Activation::sigmoid) {} };
struct Softmax : ActivationModule { Softmax() : ActivationModule(Activation::softmax) {} };
struct LogSoftmax : ActivationModule { LogSoftmax() : ActivationModule(Activation::log_softmax) {} };

class Sequential : public Module {
 public:
  explicit Sequential(ParameterArena& arena, std::string prefix = "layers");
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;
  Sequential(Sequential&&) = default;

  // Appends a module, declaring its parameters as "<prefix>.<index>.<name>".
  template <class M>
  M& add(M module) {
    auto owned = std::make_unique<M>(std::move(module));
    M& ref = *owned;
    append(std::move(owned));
    return ref;
  }
  // Appends a module (it takes this container's training mode).
  void append(std::unique_ptr<Module> module);

  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;  // through every module in turn
  void set_training(bool training) override;
  std::int64_t min_batch_size() const override;
  std::int64_t eval_chunk() const override;
  std::size_t size() const { return modules_.size(); }
  Module& at(std::size_t i) { return *modules_.at(i); }
  ParameterArena& arena() { return *arena_; }

 private:
  ParameterArena* arena_;
  std::string prefix_;
  std::vector<std::unique_ptr<Module>> modules_;
};

// A multilayer perceptron: Linear(sizes[0] -> sizes[1]), activation, ..., Linear(-> sizes.back()),
// no activation after the last layer (it gives logits).
Sequential mlp(ParameterArena& arena, const std::vector<std::int64_t>& sizes, Activation hidden = Activation::relu);

}  // namespace descent::nn
