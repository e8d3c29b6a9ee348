#include "descent/tensor/arena.hpp"

#include <cstring>

namespace descent {

ParamId ParameterArena::add(const std::string& name, const Shape& shape, const ParamInfo& info) {
  if (frozen()) throw ShapeError("parameter '" + name + "': the arena is already allocated, declare parameters first");
  if (find(name).valid()) throw ShapeError("parameter '" + name + "' declared twice");
  check_new_name(name);
  entries_.push_back(ParamEntry{name, shape, size_, info});
  size_ += shape.numel();
  return ParamId{static_cast<std::int32_t>(entries_.size() - 1)};
}

BufferId ParameterArena::add_buffer(const std::string& name, const Shape& shape, double initial) {
  if (frozen()) throw ShapeError("buffer '" + name + "': the arena is already allocated, declare buffers first");
  check_new_name(name);
  buffer_entries_.push_back(BufferEntry{name, shape, buffer_size_, initial});
  buffer_size_ += shape.numel();
  return BufferId{static_cast<std::int32_t>(buffer_entries_.size() - 1)};
}

void ParameterArena::check_new_name(const std::string& name) const {
  if (find(name).valid()) throw ShapeError("'" + name + "' is already the name of a parameter");
  if (find_buffer(name).valid()) throw ShapeError("'" + name + "' is already the name of a buffer");
}

void ParameterArena::freeze() {
  if (frozen()) return;
  values_ = Tensor::zeros(Shape{size_}, dtype_);
  grads_ = Tensor::zeros(Shape{size_}, dtype_);
  buffers_ = Tensor::empty(Shape{buffer_size_}, dtype_);
  reset_buffers();
}

const BufferEntry& ParameterArena::buffer_entry(BufferId id) const {
  if (id.index < 0 || static_cast<std::size_t>(id.index) >= buffer_entries_.size()) {
    throw ShapeError("buffer id " + std::to_string(id.index) + " is not in this arena");
  }
  return buffer_entries_[static_cast<std::size_t>(id.index)];
}

BufferId ParameterArena::find_buffer(const std::string& name) const {
  for (std::size_t i = 0; i < buffer_entries_.size(); ++i) {
    if (buffer_entries_[i].name == name) return BufferId{static_cast<std::int32_t>(i)};
  }
  return BufferId{};
}

const Tensor& ParameterArena::buffers() {
  freeze();
  return buffers_;
}

Tensor ParameterArena::buffer(BufferId id) {
  const BufferEntry& e = buffer_entry(id);
  return buffers().view(e.offset, e.shape);
}

void ParameterArena::reset_buffers() {
  freeze();
  for (const BufferEntry& e : buffer_entries_) buffers_.view(e.offset, e.shape).fill(e.initial);
}

const ParamEntry& ParameterArena::entry(ParamId id) const {
  check_id(id);
  return entries_[static_cast<std::size_t>(id.index)];
}

ParamId ParameterArena::find(const std::string& name) const {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].name == name) return ParamId{static_cast<std::int32_t>(i)};
  }
  return ParamId{};
}

const Tensor& ParameterArena::values() {
  freeze();
  return values_;
}

const Tensor& ParameterArena::grads() {
  freeze();
  return grads_;
}

Tensor ParameterArena::value(ParamId id) { return slice(values(), id); }
Tensor ParameterArena::grad(ParamId id) { return slice(grads(), id); }

Tensor ParameterArena::slice(const Tensor& flat, ParamId id) const {
  const ParamEntry& e = entry(id);
  if (flat.numel() != size_ || flat.dtype() != dtype_) {
    throw ShapeError("parameter vector: expected " + std::to_string(size_) + " elements of " + dtype_name(dtype_) +
                     ", got " + flat.shape().str() + " " + dtype_name(flat.dtype()));
  }
  return flat.reshape(Shape{size_}).view(e.offset, e.shape);
}

void ParameterArena::zero_grad() {
  freeze();
  std::memset(grads_.raw(), 0, grads_.nbytes());
}

void ParameterArena::check_id(ParamId id) const {
  if (id.index < 0 || static_cast<std::size_t>(id.index) >= entries_.size()) {
    throw ShapeError("parameter id " + std::to_string(id.index) + " is not in this arena");
  }
}

}  // namespace descent
