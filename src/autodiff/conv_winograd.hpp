#pragma once
// Winograd F(2x2, 5x5) convolution, float32, on oneDNN's 16-channel blocked layout
// (aBcd16b, "nChw16c"), for the 5x5 / stride 1 / pad 2 convolutions of the CNN
// (conv_winograd.cpp). Each 2x2 output tile comes from a 6x6 input tile: 36 products per
// channel pair instead of 100, batched as, for each of the 36 tile positions, a matrix
// product [tiles x C_in] x [C_in x C_out] (an AVX-512 kernel of ours). Used by conv_dnnl.cpp
// for the forward and the input gradient (a pad-2 5x5 stride-1 convolution with the kernel
// flipped and the channels swapped); the weight gradient stays on oneDNN's direct
// convolution. Each output element is computed by one thread in a fixed order, so results do
// not depend on the thread count; they differ from the direct convolution at float rounding
// (the transforms' constants: points 0, +-1, +-2, infinity).
#include <cstdint>

namespace descent::autodiff::conv_winograd {

struct Geom {
  std::int64_t batch, c_in, h, w, c_out;  // 5x5 kernel, stride 1, pad 2: the output is h x w
};

// Whether this build and CPU (AVX-512) run the kernels, and a convolution of this shape can
// take them: 5x5, stride 1, pad 2, h and w even, channels multiples of 16.
bool supports(std::int64_t c_in, std::int64_t h, std::int64_t w, std::int64_t c_out, std::int64_t kh, std::int64_t kw,
              std::int64_t stride, std::int64_t pad);

// Whether DESCENT_CONV_KERNELS asks for the direct convolution (direct, reference, unfused;
// read at each call), so a benchmark can alternate both in one run (bench/cnn_ab.sh).
bool disabled_by_env();

// out (blocked, C_out) = bias + conv(x (blocked, C_in), w (OIHW [C_out, C_in, 5, 5])); bias may be null.
void forward(const Geom& g, const float* w, const float* x_blocked, const float* bias, float* out_blocked);

// The forward followed by relu and a 2x2 / stride 2 max-pool, the output never written:
// y (NCHW [batch, C_out, h/2, w/2]) = max over each 2x2 tile of relu(bias + conv(x, w)) and
// idx = the maximum's index in its h x w plane (the first of equals, in the order (0, 0),
// (0, 1), (1, 0), (1, 1); relu(NaN) = 0): what conv_ops.cpp's relu_max_pool_block16 computes
// from forward's output.
void forward_relu_max_pool(const Geom& g, const float* w, const float* x_blocked, const float* bias, float* y,
                           std::int32_t* idx);

// gx (blocked, C_in) = conv_transpose(gy (blocked, C_out), w (OIHW [C_out, C_in, 5, 5])).
void input_grad(const Geom& g, const float* w, const float* gy_blocked, float* gx_blocked);

// gw (OIHW [C_out, C_in, 5, 5], overwritten) = corr(gy (blocked, C_out), x (blocked, C_in)):
// Mw[p][c][o] = sum over tiles of V[p][.][c] (x's input transform) times (A gy_tile AT)[p][o],
// then gw = GT Mw G; summed in at most 8 fixed chunks of examples, added in chunk order.
void weight_grad(const Geom& g, const float* gy_blocked, const float* x_blocked, float* gw);

}  // namespace descent::autodiff::conv_winograd
