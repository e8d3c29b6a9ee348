#include "descent/nn/conv.hpp"

#include <vector>

namespace descent::nn {

namespace {

void check_pool(std::int64_t kernel, std::int64_t stride, const char* what) {
  if (kernel < 1 || stride < 1) {
    throw ConfigError(std::string(what) + ": kernel and stride must be >= 1, got kernel " + std::to_string(kernel) +
                      ", stride " + std::to_string(stride));
  }
}

std::string pool_describe(const char* what, std::int64_t kernel, std::int64_t stride) {
  return std::string(what) + "(" + std::to_string(kernel) + ", stride " + std::to_string(stride) + ")";
}

// [C, H, W] -> [channels, H_out, W_out] by autodiff::conv_output_size; ShapeError naming
// `module` for an input that is not an image of `in_channels` channels (0: any).
Shape image_output(const Shape& input, std::int64_t in_channels, std::int64_t channels, std::int64_t kernel,
                   const Conv2dOptions& options, const std::string& module) {
  if (input.ndim() != 3 || (in_channels > 0 && input[0] != in_channels))
    throw ShapeError(module + ": expects an image [" + (in_channels > 0 ? std::to_string(in_channels) : "C") +
                     ", H, W] per example, got " + input.str());
  return Shape{channels > 0 ? channels : input[0], autodiff::conv_output_size(input[1], kernel, options, module.c_str()),
               autodiff::conv_output_size(input[2], kernel, options, module.c_str())};
}

}  // namespace

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel, Conv2dOptions options,
               bool bias)
    : in_(in_channels), out_(out_channels), kernel_(kernel), options_(options), has_bias_(bias) {
  if (in_ <= 0 || out_ <= 0 || kernel_ <= 0) {
    throw ConfigError("Conv2d: channels and kernel must be positive, got " + std::to_string(in_) + " -> " +
                      std::to_string(out_) + ", kernel " + std::to_string(kernel_));
  }
  if (options_.stride < 1 || options_.padding < 0) {
    throw ConfigError("Conv2d: stride must be >= 1 and padding >= 0, got stride " + std::to_string(options_.stride) +
                      ", padding " + std::to_string(options_.padding));
  }
}

void Conv2d::declare(ParameterArena& arena, const std::string& prefix) {
  arena_ = &arena;
  const std::int64_t area = kernel_ * kernel_;
  const ParamInfo fans{.role = ParamRole::weight, .fan_in = in_ * area, .fan_out = out_ * area};
  weight_ = arena.add(prefix + ".weight", Shape{out_, in_, kernel_, kernel_}, fans);
  if (has_bias_) {
    bias_ = arena.add(prefix + ".bias", Shape{out_}, {.role = ParamRole::bias, .fan_in = fans.fan_in, .fan_out = fans.fan_out});
  }
}

Var Conv2d::forward(Tape& tape, Var x) {
  if (arena_ == nullptr) throw ShapeError("Conv2d: parameters were never declared (add the module to a Sequential)");
  Var w = tape.param(*arena_, weight_);
  Var b = has_bias_ ? tape.param(*arena_, bias_) : Var{};
  return autodiff::conv2d(x, w, b, options_);
}

std::string Conv2d::describe() const {
  return "Conv2d(" + std::to_string(in_) + " -> " + std::to_string(out_) + ", kernel " + std::to_string(kernel_) +
         ", stride " + std::to_string(options_.stride) + ", padding " + std::to_string(options_.padding) +
         (has_bias_ ? ", bias)" : ")");
}

Shape Conv2d::output_shape(const Shape& input) const {
  return image_output(input, in_, out_, kernel_, options_, describe());
}

MaxPool2d::MaxPool2d(std::int64_t kernel, std::int64_t stride) : kernel_(kernel), stride_(stride) {
  check_pool(kernel_, stride_, "MaxPool2d");
}

Var MaxPool2d::forward(Tape&, Var x) { return autodiff::max_pool2d(x, kernel_, stride_); }

std::string MaxPool2d::describe() const { return pool_describe("MaxPool2d", kernel_, stride_); }

Shape MaxPool2d::output_shape(const Shape& input) const {
  return image_output(input, 0, 0, kernel_, {.stride = stride_, .padding = 0}, describe());
}

AvgPool2d::AvgPool2d(std::int64_t kernel, std::int64_t stride) : kernel_(kernel), stride_(stride) {
  check_pool(kernel_, stride_, "AvgPool2d");
}

Var AvgPool2d::forward(Tape&, Var x) { return autodiff::avg_pool2d(x, kernel_, stride_); }

std::string AvgPool2d::describe() const { return pool_describe("AvgPool2d", kernel_, stride_); }

Shape AvgPool2d::output_shape(const Shape& input) const {
  return image_output(input, 0, 0, kernel_, {.stride = stride_, .padding = 0}, describe());
}

Var Flatten::forward(Tape&, Var x) {
  const Shape& s = x.shape();
  if (s.ndim() < 2) throw ShapeError("Flatten: expects an input [batch, ...] of at least 2 dimensions, got " + s.str());
  if (s.ndim() == 2) return x;
  std::int64_t features = 1;
  for (int i = 1; i < s.ndim(); ++i) features *= s[i];
  return autodiff::reshape(x, Shape{s[0], features});
}

Unflatten::Unflatten(const Shape& shape) : shape_(shape) {
  bool positive = true;
  for (std::int64_t d : shape_.dims()) positive = positive && d > 0;
  if (shape_.ndim() < 1 || shape_.ndim() > Shape::max_dims - 1 || !positive) {
    throw ConfigError("Unflatten: the shape of one example must have 1 to 3 positive dimensions, got " + shape_.str());
  }
}

Var Unflatten::forward(Tape&, Var x) {
  const Shape& s = x.shape();
  const std::int64_t per_example = shape_.numel();
  if (s.ndim() < 1 || s[0] * per_example != s.numel()) {
    throw ShapeError("Unflatten: input " + s.str() + " does not hold [batch] examples of " + shape_.str() + " (" +
                     std::to_string(per_example) + " values each)");
  }
  std::vector<std::int64_t> dims{s[0]};
  for (std::int64_t d : shape_.dims()) dims.push_back(d);
  return autodiff::reshape(x, Shape(std::span<const std::int64_t>(dims)));
}

std::string Unflatten::describe() const { return "Unflatten(" + shape_.str() + ")"; }

Shape Unflatten::output_shape(const Shape& input) const {
  if (input.numel() != shape_.numel())
    throw ShapeError(describe() + ": expects " + std::to_string(shape_.numel()) + " values per example, got " +
                     input.str());
  return shape_;
}

}  // namespace descent::nn
