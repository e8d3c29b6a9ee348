#pragma once
// Sums of squares in one fixed order, shared by a pass of their own and by the optimizer's
// update pass (optim::Optimizer::step_measured), so that both give the same bits. Defined in
// src/tensor/kernels.cpp from squared_distance's own block loop.
//
// The order is kernels::squared_distance's (kernels.hpp): blocks of lane_sum_block = 4096
// elements counted from index 0, each block summed in lane_sum_lanes = 8 double lanes (lane l
// takes the elements i = l mod 8 of the block, in order), the lanes then added 0..7, then the
// block's tail (fewer than 8 elements: only the last block has one), and the block sums added
// in block order. Every square is taken in double (exact for float inputs). The order depends
// on n alone, never on the thread count or on how the blocks are shared out, so a sum is
// bit-identical with 1 and N threads (deterministic mode). For float32 squares_in_lanes(x, n)
// equals squared_distance(x, 0, n) bit for bit (tested); for float64 only to rounding (the
// compiler contracts the two loops' multiply-adds into FMAs differently).
//
// The trainer's gradient norm ||g|| and its path length's steps ||theta_{k+1} - theta_k||
// (train/trajectory.hpp) are taken in this order (docs/performance.md, "cli helper, session
// 12"); kernels::sum_squares keeps its own order (a plain sum per block).
#include <cstdint>

#include "descent/tensor/tensor.hpp"

namespace descent::kernels {

inline constexpr std::int64_t lane_sum_block = 4096;
inline constexpr int lane_sum_lanes = 8;

// sum_i x_i^2 over n elements, in the order above. The blocks are shared out over the
// threads (partials per block, added in block order) when there are more than 8 of them.
double squares_in_lanes(const float* x, std::int64_t n);
double squares_in_lanes(const double* x, std::int64_t n);
// The same over a float32 or float64 tensor's elements.
double squares_in_lanes(const Tensor& x);

}  // namespace descent::kernels
