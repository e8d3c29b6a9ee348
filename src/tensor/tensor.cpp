#include "descent/tensor/tensor.hpp"

#include <cstring>
#include <limits>
#include <sstream>

#include "descent/tensor/storage.hpp"

namespace descent {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
  }
  return "?";
}

Shape::Shape(std::initializer_list<std::int64_t> dims) : Shape(std::span<const std::int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const std::int64_t> dims) {
  if (dims.size() > static_cast<std::size_t>(max_dims)) {
    throw ShapeError("tensor shape: at most 4 dimensions are supported, got " + std::to_string(dims.size()));
  }
  ndim_ = static_cast<int>(dims.size());
  std::int64_t total = 1;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) throw ShapeError("tensor shape: negative dimension " + std::to_string(dims[i]));
    if (dims[i] != 0 && total > std::numeric_limits<std::int64_t>::max() / dims[i]) {
      throw ShapeError("tensor shape: the number of elements overflows");
    }
    total *= dims[i];
    dims_[i] = dims[i];
  }
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[static_cast<std::size_t>(i)];
  return n;
}

std::string Shape::str() const {
  std::ostringstream out;
  out << '[';
  for (int i = 0; i < ndim_; ++i) out << (i ? ", " : "") << dims_[static_cast<std::size_t>(i)];
  out << ']';
  return out.str();
}

bool Shape::operator==(const Shape& other) const {
  if (ndim_ != other.ndim_) return false;
  for (int i = 0; i < ndim_; ++i) {
    if ((*this)[i] != other[i]) return false;
  }
  return true;
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = allocate_storage(static_cast<std::size_t>(shape.numel()) * dtype_size(dtype));
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, DType dtype, double value) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

template <class T>
Tensor Tensor::from(const Shape& shape, std::span<const T> values) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
    throw ShapeError("Tensor::from: shape " + shape.str() + " needs " + std::to_string(shape.numel()) +
                     " values, got " + std::to_string(values.size()));
  }
  Tensor t = empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size_bytes());
  return t;
}
template Tensor Tensor::from<float>(const Shape&, std::span<const float>);
template Tensor Tensor::from<double>(const Shape&, std::span<const double>);
template Tensor Tensor::from<std::int32_t>(const Shape&, std::span<const std::int32_t>);

void* Tensor::raw() const {
  if (!storage_) return nullptr;
  return static_cast<std::byte*>(storage_->data) + offset_ * static_cast<std::int64_t>(dtype_size(dtype_));
}

void Tensor::check_dtype(DType expected) const {
  if (dtype_ != expected) {
    throw ShapeError(std::string("tensor dtype: expected ") + dtype_name(expected) + ", got " + dtype_name(dtype_));
  }
}

double Tensor::at(std::int64_t i) const {
  if (i < 0 || i >= numel()) throw ShapeError("Tensor::at: index " + std::to_string(i) + " out of " + shape_.str());
  switch (dtype_) {
    case DType::f32: return static_cast<const float*>(raw())[i];
    case DType::f64: return static_cast<const double*>(raw())[i];
    case DType::i32: return static_cast<const std::int32_t*>(raw())[i];
  }
  return 0.0;
}

double Tensor::item() const {
  if (numel() != 1) throw ShapeError("Tensor::item: expected one element, got shape " + shape_.str());
  return at(0);
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape.numel() != numel()) {
    throw ShapeError("reshape: cannot view " + shape_.str() + " as " + shape.str());
  }
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t end) const {
  if (ndim() == 0 || begin < 0 || end < begin || end > dim(0)) {
    throw ShapeError("rows: range [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of " + shape_.str());
  }
  std::array<std::int64_t, Shape::max_dims> dims{};
  for (int i = 0; i < ndim(); ++i) dims[static_cast<std::size_t>(i)] = dim(i);
  const std::int64_t row_size = dim(0) == 0 ? 0 : numel() / dim(0);
  dims[0] = end - begin;
  Tensor t = *this;
  t.shape_ = Shape(std::span<const std::int64_t>(dims.data(), static_cast<std::size_t>(ndim())));
  t.offset_ = offset_ + begin * row_size;
  return t;
}

Tensor Tensor::view(std::int64_t offset, const Shape& shape) const {
  if (offset < 0 || offset + shape.numel() > numel()) {
    throw ShapeError("view: " + shape.str() + " at offset " + std::to_string(offset) + " out of " + shape_.str());
  }
  Tensor t = *this;
  t.shape_ = shape;
  t.offset_ = offset_ + offset;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_);
  if (nbytes() > 0) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) const {
  if (src.numel() != numel()) {
    throw ShapeError("copy_from: " + src.shape_.str() + " into " + shape_.str());
  }
  check_same_dtype(*this, src, "copy_from");
  if (nbytes() > 0 && raw() != src.raw()) std::memmove(raw(), src.raw(), nbytes());
}

void Tensor::fill(double value) const {
  const std::int64_t n = numel();
  switch (dtype_) {
    case DType::f32: {
      float* p = data<float>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(value);
      break;
    }
    case DType::f64: {
      double* p = data<double>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = value;
      break;
    }
    case DType::i32: {
      std::int32_t* p = data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<std::int32_t>(value);
      break;
    }
  }
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor t = empty(shape_, dtype);
  const std::int64_t n = numel();
  if (dtype_ == DType::f32 && dtype == DType::f64) {
    const float* s = data<float>();
    double* d = t.data<double>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = s[i];
  } else if (dtype_ == DType::f64 && dtype == DType::f32) {
    const double* s = data<double>();
    float* d = t.data<float>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      if (dtype == DType::i32) {
        t.data<std::int32_t>()[i] = static_cast<std::int32_t>(at(i));
      } else if (dtype == DType::f32) {
        t.data<float>()[i] = static_cast<float>(at(i));
      } else {
        t.data<double>()[i] = at(i);
      }
    }
  }
  return t;
}

bool Tensor::same_view(const Tensor& other) const {
  return storage_ == other.storage_ && offset_ == other.offset_ && dtype_ == other.dtype_ && numel() == other.numel();
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  if (!(a.shape() == b.shape())) {
    throw ShapeError(std::string(what) + ": shapes differ, " + a.shape().str() + " and " + b.shape().str());
  }
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* what) {
  if (a.dtype() != b.dtype()) {
    throw ShapeError(std::string(what) + ": dtypes differ, " + dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()));
  }
}

}  // namespace descent
