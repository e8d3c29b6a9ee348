#pragma once
// The parameter arena (DESIGN.md, decision 1): every parameter of a model is a view into
// one flat buffer, and every gradient a view into a second flat buffer of the same layout.
// An optimizer step is then one pass over memory, an all-reduce is one call, a checkpoint
// is one write, and the diagnostics see the parameters as one vector theta.
//
//   ParameterArena arena(DType::f32);
//   ParamId w = arena.add("layers.0.weight", {256, 784}, {.fan_in = 784, .fan_out = 256});
//   arena.value(w)   // Tensor [256, 784], a view into arena.values()
//   arena.grad(w)    // the same slice of arena.grads()
//
// Parameters are declared first (add), then the buffers are allocated on first use of
// values()/grads() or by freeze(); add() after that throws. Names are unique.
//
// Non-trainable state (batch normalization's running mean and variance) lives in a third
// flat buffer, buffers(): declared with add_buffer() before freeze(), saved with the model
// and in checkpoints, but never part of values()/grads(), so no optimizer touches it and no
// gradient reaches it. Names are unique across parameters and buffers.
//
//   BufferId m = arena.add_buffer("layers.1.running_mean", {64});
//   BufferId v = arena.add_buffer("layers.1.running_var", {64}, 1.0);  // starts at 1
//   arena.buffer(v)   // Tensor [64], a view into arena.buffers()
#include <cstdint>
#include <string>
#include <vector>

#include "descent/tensor/tensor.hpp"

namespace descent {

struct ParamId {
  std::int32_t index = -1;
  bool valid() const { return index >= 0; }
  friend bool operator==(ParamId, ParamId) = default;
};

struct BufferId {
  std::int32_t index = -1;
  bool valid() const { return index >= 0; }
  friend bool operator==(BufferId, BufferId) = default;
};

// What nn::initialize does with a parameter: weight and other get the weight scheme, bias
// the constant InitSpec::bias, scale (a normalization gain) 1 and shift (a normalization
// offset) 0, whatever the InitSpec.
enum class ParamRole : std::uint8_t { weight, bias, other, scale, shift };

struct ParamInfo {
  ParamRole role = ParamRole::weight;
  std::int64_t fan_in = 0;   // incoming connections per unit (for initialization)
  std::int64_t fan_out = 0;  // units
};

struct ParamEntry {
  std::string name;
  Shape shape;
  std::int64_t offset = 0;  // in elements, into the flat buffers
  ParamInfo info;
};

struct BufferEntry {
  std::string name;
  Shape shape;
  std::int64_t offset = 0;  // in elements, into buffers()
  double initial = 0.0;     // every element's value after freeze()
};

class ParameterArena {
 public:
  explicit ParameterArena(DType dtype = DType::f32) : dtype_(dtype) {}
  ParameterArena(const ParameterArena&) = delete;
  ParameterArena& operator=(const ParameterArena&) = delete;

  // Declares a parameter. Throws ShapeError after freeze() or for a duplicate name.
  ParamId add(const std::string& name, const Shape& shape, const ParamInfo& info = {});
  // Declares a non-trainable buffer whose elements start at `initial`. Throws ShapeError
  // after freeze() or for a name already used by a parameter or a buffer.
  BufferId add_buffer(const std::string& name, const Shape& shape, double initial = 0.0);

  // Allocates the flat buffers (values zeroed, buffers at their initial values) if not
  // done yet; no add() or add_buffer() after this.
  void freeze();
  bool frozen() const { return values_.defined(); }

  DType dtype() const { return dtype_; }
  std::int64_t size() const { return size_; }  // total number of scalar parameters
  std::size_t count() const { return entries_.size(); }
  const std::vector<ParamEntry>& entries() const { return entries_; }
  const ParamEntry& entry(ParamId id) const;
  ParamId find(const std::string& name) const;  // invalid id when absent

  // Flat buffers [size()] (freeze() first if needed).
  const Tensor& values();
  const Tensor& grads();
  Tensor value(ParamId id);
  Tensor grad(ParamId id);
  // The slice of any flat vector of this arena's layout (a direction v, an Hv, a velocity).
  Tensor slice(const Tensor& flat, ParamId id) const;

  void zero_grad();

  // ---- buffers: state that is saved but not trained ----
  std::int64_t buffer_size() const { return buffer_size_; }  // total number of buffer elements
  std::size_t buffer_count() const { return buffer_entries_.size(); }
  const std::vector<BufferEntry>& buffer_entries() const { return buffer_entries_; }
  const BufferEntry& buffer_entry(BufferId id) const;
  BufferId find_buffer(const std::string& name) const;  // invalid id when absent
  // The flat buffer [buffer_size()] (freeze() first if needed) and one buffer's view of it.
  const Tensor& buffers();
  Tensor buffer(BufferId id);
  // Every buffer back to its initial value.
  void reset_buffers();

 private:
  void check_id(ParamId id) const;
  void check_new_name(const std::string& name) const;
  DType dtype_;
  std::vector<ParamEntry> entries_;
  std::int64_t size_ = 0;
  Tensor values_;
  Tensor grads_;
  std::vector<BufferEntry> buffer_entries_;
  std::int64_t buffer_size_ = 0;
  Tensor buffers_;
};

}  // namespace descent
