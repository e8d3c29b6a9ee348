#pragma once
// Modules for convolutional networks over NCHW images (autodiff/conv.hpp has the
// operations, their equations and costs). A data set row is a flat vector, so a CNN on
// MNIST-like data starts with Unflatten({1, 28, 28}) and ends its convolutional part with
// Flatten() before the fully connected layers:
//
//   nn::Sequential net(arena);
//   net.add(nn::Unflatten({1, 28, 28}));                            // [B, 784] -> [B, 1, 28, 28]
//   net.add(nn::Conv2d(1, 32, 5, {.stride = 1, .padding = 2}));    // -> [B, 32, 28, 28]
//   net.add(nn::ReLU());
//   net.add(nn::MaxPool2d(2));                                      // -> [B, 32, 14, 14]
//   net.add(nn::Flatten());                                         // -> [B, 6272]
//   net.add(nn::Linear(32 * 14 * 14, 10));
//
// Parameter names follow PyTorch's state dicts ("layers.1.weight", "layers.1.bias").
#include <cstdint>
#include <string>

#include "descent/autodiff/conv.hpp"
#include "descent/nn/module.hpp"

namespace descent::nn {

using autodiff::Conv2dOptions;

// y = conv2d(x, W, b): x [B, C_in, H, W] -> [B, C_out, H_out, W_out].
// Declares "weight" [C_out, C_in, k, k] (role weight, fan_in = C_in k^2, fan_out =
// C_out k^2, PyTorch's convention for initialization) and "bias" [C_out] (role bias).
// Throws ConfigError for non-positive channels or kernel, stride < 1 or padding < 0.
class Conv2d : public Module {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel, Conv2dOptions options = {},
         bool bias = true);
  void declare(ParameterArena& arena, const std::string& prefix) override;
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;  // "Conv2d(1 -> 32, kernel 5, stride 1, padding 2, bias)"
  std::int64_t eval_chunk() const override { return 200; }
  Shape output_shape(const Shape& input) const override;  // [C_in, H, W] -> [C_out, H_out, W_out]
  ParamId weight() const { return weight_; }
  ParamId bias() const { return bias_; }
  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }
  std::int64_t kernel() const { return kernel_; }
  const Conv2dOptions& options() const { return options_; }

 private:
  std::int64_t in_, out_, kernel_;
  Conv2dOptions options_;
  bool has_bias_;
  ParameterArena* arena_ = nullptr;
  ParamId weight_, bias_;
};

// Max over kernel x kernel windows moved by stride (default: stride = kernel, no overlap).
// Throws ConfigError for kernel or stride < 1.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(std::int64_t kernel) : MaxPool2d(kernel, kernel) {}
  MaxPool2d(std::int64_t kernel, std::int64_t stride);
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;  // "MaxPool2d(2, stride 2)"
  Shape output_shape(const Shape& input) const override;  // [C, H, W] -> [C, H_out, W_out]
  std::int64_t kernel() const { return kernel_; }
  std::int64_t stride() const { return stride_; }

 private:
  std::int64_t kernel_, stride_;
};

// Mean over kernel x kernel windows moved by stride (default: stride = kernel).
// Throws ConfigError for kernel or stride < 1.
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(std::int64_t kernel) : AvgPool2d(kernel, kernel) {}
  AvgPool2d(std::int64_t kernel, std::int64_t stride);
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;  // "AvgPool2d(2, stride 2)"
  Shape output_shape(const Shape& input) const override;  // [C, H, W] -> [C, H_out, W_out]
  std::int64_t kernel() const { return kernel_; }
  std::int64_t stride() const { return stride_; }

 private:
  std::int64_t kernel_, stride_;
};

// [B, d1, d2, ...] -> [B, d1 d2 ...] (a view: no copy). A 2-D input passes unchanged.
// Throws ShapeError for an input of fewer than 2 dimensions.
class Flatten : public Module {
 public:
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override { return "Flatten"; }
  Shape output_shape(const Shape& input) const override { return Shape{input.numel()}; }
};

// [B, d] -> [B, shape...] with d = shape.numel() (a view: no copy), e.g. Unflatten({1, 28, 28})
// turns flat MNIST rows into one-channel images. Any input [B, ...] with numel B d works.
// Throws ConfigError when `shape` is empty, has more than 3 dimensions or a non-positive
// one; forward throws ShapeError when the input does not hold B rows of shape.numel().
class Unflatten : public Module {
 public:
  explicit Unflatten(const Shape& shape);
  Var forward(Tape& tape, Var x) override;
  std::string describe() const override;  // "Unflatten([1, 28, 28])"
  Shape output_shape(const Shape& input) const override;  // any input of shape().numel() values -> shape()
  const Shape& shape() const { return shape_; }

 private:
  Shape shape_;
};

}  // namespace descent::nn
