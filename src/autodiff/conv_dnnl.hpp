#pragma once
// Float32 convolutions through oneDNN's direct convolution primitives (conv_dnnl.cpp), used
// by conv_ops.cpp when descent is built with oneDNN (DESCENT_HAVE_DNNL) and the backend is
// not set to im2col (set_conv_backend). Tensors are descent's plain NCHW / OIHW arrays; the
// primitives run in oneDNN's blocked formats (chosen for the CPU at run time: AVX-512, AVX2,
// ...) with reorders at the edges. Each call sums up to two bilinear terms, as the tape's
// value, gradient and R-rules need.
#include <cstdint>

namespace descent::autodiff::conv_dnnl {

struct Geom {
  std::int64_t batch, c_in, h, w, c_out, kh, kw, stride, pad, h_out, w_out;
};

// While one is alive, an input converted to a primitive's format (gy for both the data and
// the weight gradient, x, w) is converted once and reused: the caller promises that the
// arrays it passes do not change meanwhile (one node's backward). Not thread-safe: the tape
// runs its nodes one at a time.
class ReuseScope {
 public:
  ReuseScope();
  ~ReuseScope();
  ReuseScope(const ReuseScope&) = delete;
  ReuseScope& operator=(const ReuseScope&) = delete;
};

// Whether the oneDNN path is built in and selected.
bool active();

// Whether DESCENT_CONV_KERNELS=reference is set in the environment (read at each call): the
// kernels added for issue 20's CNN (conv_ops.cpp: the bias gradient's sums compiled per CPU
// level; ReLU and max-pool fused, see unfused_relu_pool) are off and the loops and nodes they
// replaced run, so a benchmark can alternate both in one run (bench/cnn_ab.sh).
bool reference_kernels();

// forward_blocked16 and input_grad_blocked16 run Winograd F(2x2, 5x5) (conv_winograd.hpp) for
// the shapes it supports unless DESCENT_CONV_KERNELS is direct, reference or unfused.

// Whether DESCENT_CONV_KERNELS is reference or unfused (read at each call): relu followed
// by max-pooling is recorded as two nodes, not relu_max_pool2d's one (conv_ops.cpp).
bool unfused_relu_pool();

// out = bias + sum_t conv(x[t], w[t]) (bias may be null).
void forward(const Geom& g, const float* const* w, const float* const* x, int terms, const float* bias, float* out);
// gx (beta 0: =, 1: +=) sum_t conv_transpose(gy[t], w[t]).
void input_grad(const Geom& g, const float* const* w, const float* const* gy, int terms, float* gx, double beta);
// gw (beta 0: =, 1: +=) sum_t corr(gy[t], x[t]).
void weight_grad(const Geom& g, const float* const* gy, const float* const* x, int terms, float* gw, double beta);

// The forward's output and the backward's diff_dst in oneDNN's 16-channel blocked layout
// (aBcd16b, "nChw16c": element (n, c, i, j) at ((n C/16 + c/16) H_out W_out + i W_out + j) 16
// + c % 16), for a fused consumer that reads and writes that layout itself (conv2d_relu_
// max_pool2d in conv_ops.cpp): no reorder of the output to NCHW and of gy back.
// blocked16(g): whether the primitives chose that layout for dst and diff_dst (C_out a
// multiple of 16, an AVX-512 CPU); the other three need it.
bool blocked16(const Geom& g);
// Floats of x in the format the forward and the weight gradient both read it in (so the
// forward's converted copy can be kept for the backward), 0 when x is read as it is or the
// two formats differ.
std::int64_t kept_src_size(const Geom& g);
// out_blocked = bias + conv(x, w) (bias may be null). x_kept: null, or kept_src_size(g)
// floats that receive x in the primitive's format, for weight_grad_blocked16.
void forward_blocked16(const Geom& g, const float* w, const float* x, const float* bias, float* out_blocked,
                       float* x_kept = nullptr);
// Where Winograd runs the forward (see above): y (NCHW [batch, C_out, h_out/2, w_out/2]),
// idx = relu then 2x2 / stride 2 max-pool of bias + conv(x, w) and the maximum's index in its
// h_out x w_out plane, as conv_ops.cpp's relu_max_pool_block16 pools forward_blocked16's
// output (the same bits), without writing that output; x_kept as forward_blocked16. Returns
// false, doing nothing, elsewhere.
bool forward_relu_max_pool_blocked16(const Geom& g, const float* w, const float* x, const float* bias, float* y,
                                     std::int32_t* idx, float* x_kept = nullptr);
// gx (beta 0: =, 1: +=) conv_transpose(gy_blocked, w).
void input_grad_blocked16(const Geom& g, const float* w, const float* gy_blocked, float* gx, double beta);
// gw (beta 0: =, 1: +=) corr(gy_blocked, x); x_kept: null, or what forward_blocked16 kept
// of this x (read instead of converting x again).
void weight_grad_blocked16(const Geom& g, const float* gy_blocked, const float* x, float* gw, double beta,
                           const float* x_kept = nullptr);

}  // namespace descent::autodiff::conv_dnnl
