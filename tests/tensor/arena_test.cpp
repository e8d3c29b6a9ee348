// The arena's non-trainable buffers: a flat allocation of their own, initial values,
// names unique across parameters and buffers, declared before freeze().
#include <gtest/gtest.h>

#include "descent/tensor/arena.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent {
namespace {

TEST(ArenaBuffers, AreViewsOfTheirOwnFlatBufferWithInitialValues) {
  ParameterArena arena(DType::f64);
  ParamId w = arena.add("layers.0.weight", {2, 3});
  BufferId mean = arena.add_buffer("layers.1.running_mean", {3});
  BufferId var = arena.add_buffer("layers.1.running_var", {3}, 1.0);
  ParamId b = arena.add("layers.1.bias", {3});
  EXPECT_EQ(arena.size(), 9);  // parameters only
  EXPECT_EQ(arena.count(), 2u);
  EXPECT_EQ(arena.buffer_size(), 6);
  EXPECT_EQ(arena.buffer_count(), 2u);
  EXPECT_EQ(arena.buffer_entry(var).offset, 3);
  EXPECT_EQ(arena.buffer_entry(var).initial, 1.0);
  EXPECT_EQ(arena.find_buffer("layers.1.running_var"), var);
  EXPECT_FALSE(arena.find_buffer("layers.0.weight").valid());  // a parameter, not a buffer
  EXPECT_FALSE(arena.find("layers.1.running_mean").valid());   // a buffer, not a parameter
  // Allocated on first use with their initial values; values are zero.
  const Tensor& flat = arena.buffers();
  ASSERT_EQ(flat.numel(), 6);
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_EQ(flat.at(i), i < 3 ? 0.0 : 1.0);
  EXPECT_EQ(kernels::sum(arena.values()), 0.0);
  EXPECT_EQ(arena.values().numel(), 9);
  // Views: writing a buffer writes the flat buffer, and nothing else.
  arena.buffer(mean).fill(5.0);
  EXPECT_EQ(arena.buffers().at(2), 5.0);
  EXPECT_EQ(arena.buffers().at(3), 1.0);
  EXPECT_EQ(kernels::sum(arena.values()), 0.0);
  EXPECT_EQ(arena.buffer(var).shape(), Shape({3}));
  arena.value(w).fill(1.0);
  arena.value(b).fill(2.0);
  arena.zero_grad();
  EXPECT_EQ(kernels::sum(arena.buffers()), 18.0);
  // reset_buffers: back to the initial values.
  arena.reset_buffers();
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_EQ(arena.buffers().at(i), i < 3 ? 0.0 : 1.0);
  EXPECT_EQ(kernels::sum(arena.values()), 12.0);
}

TEST(ArenaBuffers, NamesAreUniqueAcrossParametersAndBuffers) {
  ParameterArena arena(DType::f32);
  arena.add("a", {2});
  arena.add_buffer("b", {2});
  EXPECT_THROW(arena.add_buffer("a", {1}), ShapeError);
  EXPECT_THROW(arena.add_buffer("b", {1}), ShapeError);
  EXPECT_THROW(arena.add("b", {1}), ShapeError);
  EXPECT_THROW(arena.add("a", {1}), ShapeError);
  try {
    arena.add("b", {1});
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("'b' is already the name of a buffer"), std::string::npos) << e.what();
  }
}

TEST(ArenaBuffers, DeclaredBeforeFreezeOnly) {
  ParameterArena arena(DType::f32);
  arena.add_buffer("m", {4}, 2.0);
  arena.freeze();
  EXPECT_THROW(arena.add_buffer("late", {1}), ShapeError);
  EXPECT_EQ(arena.buffer(BufferId{0}).at(3), 2.0);
  EXPECT_THROW(arena.buffer(BufferId{1}), ShapeError);
  EXPECT_THROW(arena.buffer(BufferId{}), ShapeError);
}

TEST(ArenaBuffers, AnArenaWithoutBuffersHasAnEmptyBuffer) {
  ParameterArena arena(DType::f64);
  arena.add("w", {3});
  EXPECT_EQ(arena.buffer_size(), 0);
  EXPECT_EQ(arena.buffers().numel(), 0);
  EXPECT_EQ(arena.buffer_count(), 0u);
  arena.reset_buffers();
}

}  // namespace
}  // namespace descent
