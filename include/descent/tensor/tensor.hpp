#pragma once
// Dense row-major tensors of float32, float64 (and int32 for labels), up to 4 dimensions.
//
// A Tensor is a view: shared storage, an element offset and a shape. Views are always
// contiguous, which keeps every kernel a flat loop: reshape() and rows(begin, end) (a
// minibatch of a dataset, a block of the parameter arena) share storage without a copy.
// Storage comes from a caching allocator (storage.hpp), so the buffers of one training
// step are reused by the next without calls to malloc.
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "descent/error.hpp"

namespace descent {

enum class DType : std::uint8_t { f32, f64, i32 };

constexpr std::size_t dtype_size(DType t) { return t == DType::f64 ? 8 : 4; }
const char* dtype_name(DType t);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }
template <>
constexpr DType dtype_of<std::int32_t>() { return DType::i32; }

class Shape {
 public:
  static constexpr int max_dims = 4;
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims);
  explicit Shape(std::span<const std::int64_t> dims);

  int ndim() const { return ndim_; }
  std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  std::int64_t numel() const;
  std::span<const std::int64_t> dims() const { return {dims_.data(), static_cast<std::size_t>(ndim_)}; }
  std::string str() const;  // "[32, 784]"
  bool operator==(const Shape& other) const;

 private:
  std::array<std::int64_t, max_dims> dims_{};
  int ndim_ = 0;
};

struct Storage;

class Tensor {
 public:
  Tensor() = default;

  // Uninitialized storage (from the caching allocator).
  static Tensor empty(const Shape& shape, DType dtype);
  static Tensor zeros(const Shape& shape, DType dtype);
  static Tensor full(const Shape& shape, DType dtype, double value);
  // A copy of `values` with the given shape (numel must match).
  template <class T>
  static Tensor from(const Shape& shape, std::span<const T> values);
  template <class T>
  static Tensor from(const Shape& shape, std::initializer_list<T> values) {
    return from<T>(shape, std::span<const T>(values.begin(), values.size()));
  }

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  std::int64_t dim(int i) const { return shape_[i]; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  // Typed access; throws ShapeError when T does not match the dtype.
  template <class T>
  T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <class T>
  std::span<T> span() const {
    return {data<T>(), static_cast<std::size_t>(numel())};
  }
  void* raw() const;

  // Element i of the flat view, converted to double (tests, diagnostics; not for hot loops).
  double at(std::int64_t i) const;
  double item() const;  // the single element of a one-element tensor

  // Views (no copy). reshape: same numel. rows: [begin, end) along dimension 0.
  // view: `shape.numel()` elements starting at flat element `offset` of this tensor.
  Tensor reshape(const Shape& shape) const;
  Tensor rows(std::int64_t begin, std::int64_t end) const;
  Tensor view(std::int64_t offset, const Shape& shape) const;

  Tensor clone() const;
  // Copies values from `src` (same numel and dtype) into this tensor's storage.
  void copy_from(const Tensor& src) const;
  void fill(double value) const;
  Tensor to(DType dtype) const;  // converting copy (float <-> double)

  // True when both views cover the same bytes of the same storage.
  bool same_view(const Tensor& other) const;

 private:
  void check_dtype(DType expected) const;
  std::shared_ptr<Storage> storage_;
  std::int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Throws ShapeError("<what>: expected <a>, got <b>") when the shapes differ.
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* what);

// Calls f(T{}) with T the C++ type of a floating dtype; throws ShapeError for i32.
template <class F>
decltype(auto) dispatch_float(DType t, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  throw ShapeError("operation needs a floating-point tensor (f32 or f64), got i32");
}

}  // namespace descent
