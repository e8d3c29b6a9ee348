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

enum class ParamRole : std::uint8_t { weight, bias, other };

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

class ParameterArena {
 public:
  explicit ParameterArena(DType dtype = DType::f32) : dtype_(dtype) {}
  ParameterArena(const ParameterArena&) = delete;
  ParameterArena& operator=(const ParameterArena&) = delete;

  // Declares a parameter. Throws ShapeError after freeze() or for a duplicate name.
  ParamId add(const std::string& name, const Shape& shape, const ParamInfo& info = {});

  // Allocates the flat buffers (values zeroed) if not done yet; no add() after this.
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

 private:
  void check_id(ParamId id) const;
  DType dtype_;
  std::vector<ParamEntry> entries_;
  std::int64_t size_ = 0;
  Tensor values_;
  Tensor grads_;
};

}  // namespace descent
