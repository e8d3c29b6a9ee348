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
// level) are off and the loops they replaced run, so a benchmark can alternate both in one
// run (bench/cnn_ab.sh).
bool reference_kernels();

// out = bias + sum_t conv(x[t], w[t]) (bias may be null).
void forward(const Geom& g, const float* const* w, const float* const* x, int terms, const float* bias, float* out);
// gx (beta 0: =, 1: +=) sum_t conv_transpose(gy[t], w[t]).
void input_grad(const Geom& g, const float* const* w, const float* const* gy, int terms, float* gx, double beta);
// gw (beta 0: =, 1: +=) sum_t corr(gy[t], x[t]).
void weight_grad(const Geom& g, const float* const* gy, const float* const* x, int terms, float* gw, double beta);

}  // namespace descent::autodiff::conv_dnnl
