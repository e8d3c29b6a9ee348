#pragma once
// Convolution and pooling over images in NCHW layout: x [B, C, H, W] (batch, channels,
// rows, columns), the layout of PyTorch's Conv2d / MaxPool2d / AvgPool2d, whose results
// these operations reproduce. Like every tape operation each one has its value, tangent,
// gradient and exact second-order (R-operator) rules, so Hessian-vector products work
// through convolutional networks (docs/autodiff.md).
//
// Sizes: an output side is floor((in + 2 padding - kernel) / stride) + 1 (no padding for
// the pools). Inputs share a dtype (f32 or f64). Shapes are checked: a wrong rank, a
// channel mismatch, a kernel larger than the (padded) input, stride < 1 or padding < 0
// throw ShapeError naming the operation and the shapes.
//
// Threads: on the im2col path the batch is split into chunks whose boundaries depend only on
// the batch size, and the weight gradient sums per-chunk partials in chunk order, so every
// result is bit-identical for any thread count. oneDNN's kernels (float32, see ConvBackend)
// give the same bits from run to run with the same thread count.
#include <cstdint>

#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// Which kernels run float32 convolutions. automatic: oneDNN's direct convolutions when
// descent was built with oneDNN (libdnnl-dev; conv_backend_has_onednn()), else im2col;
// im2col: descent's own im2col + sgemm path (float64 always takes it). Both compute the
// same sums in different orders: results agree to float rounding, not bit for bit.
// Process-wide; the default is automatic.
enum class ConvBackend { automatic, im2col };
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();
bool conv_backend_has_onednn();

struct Conv2dOptions {
  std::int64_t stride = 1;   // the same along rows and columns, >= 1
  std::int64_t padding = 0;  // zeros added on every side, >= 0
};

// One output side: floor((in + 2 padding - kernel) / stride) + 1. Throws ShapeError (naming
// `op`) when the kernel does not fit or stride < 1 or padding < 0.
std::int64_t conv_output_size(std::int64_t in, std::int64_t kernel, const Conv2dOptions& options, const char* op);

// 2-D cross-correlation (what deep-learning libraries call convolution), eq. 9.6 of the
// textbook:
//   y[n, o, i, j] = b[o] + sum_{c, u, v} x[n, c, i s - p + u, j s - p + v] w[o, c, u, v]
// with x read as 0 outside the image. x [B, C_in, H, W], w [C_out, C_in, kh, kw],
// b [C_out] or empty; y [B, C_out, H_out, W_out].
// Method: im2col per example (a [C_in kh kw, H_out W_out] matrix of input patches) and
// one GEMM w[C_out, C_in kh kw] x patches; the backward is the transposed GEMM followed by
// col2im, and the weight gradient the GEMM of gy with the patches.
// Cost: 2 B C_out C_in kh kw H_out W_out flops forward, twice that backward (GEMM near
// the BLAS peak; building the patches adds about 10%); scratch memory one patch matrix
// [C_in kh kw, H_out W_out] and one padded example per running chunk of examples, nothing
// kept on the tape beyond the inputs (the backward rebuilds the patches).
// Rules (bilinear in x and w, like linear):
//   y' = conv(x', w) + conv(x, w') + b'
//   gx += conv_transpose(gy, w) ;  gw += corr(gy, x) ;  gb += sum_{n,i,j} gy
//   R(gx) += conv_transpose(R(gy), w) + conv_transpose(gy, w')
//   R(gw) += corr(R(gy), x) + corr(gy, x') ;  R(gb) += sum_{n,i,j} R(gy)
Var conv2d(Var x, Var w, Var b = {}, const Conv2dOptions& options = {});

// Max over each kernel x kernel window, moved by `stride`, no padding:
//   y[n, c, i, j] = max_{u, v < kernel} x[n, c, i stride + u, j stride + v]
// The position of the maximum (the first one in row-major order on ties) is kept from the
// forward pass; the operation is then linear in x on that piece:
//   y' = x'[argmax] ;  gx[argmax] += gy ;  R(gx)[argmax] += R(gy)  (no second-order term)
// Cost: B C H_out W_out kernel^2 comparisons; keeps an i32 index per output.
Var max_pool2d(Var x, std::int64_t kernel, std::int64_t stride);
inline Var max_pool2d(Var x, std::int64_t kernel) { return max_pool2d(x, kernel, kernel); }

// max_pool2d(relu(x), kernel, stride) in one pass, without the ReLU's full-size tensor:
//   y[n, c, i, j] = max_{u, v < kernel} relu(x[n, c, i stride + u, j stride + v])
// (ReLU is monotone, so this is relu of the window maximum for non-NaN inputs; the pass
// takes relu of each element as it compares, so NaN is 0 as in relu). The argmax is the
// first maximum of relu(x) in row-major order, as max_pool2d's on the ReLU's output, and
// the derivative is relu's at that element, [y > 0]:
//   y' = [y > 0] x'[argmax] ;  gx[argmax] += [y > 0] gy ;  R(gx)[argmax] += [y > 0] R(gy)
// Values, tangents and gradients equal those of the two separate operations (into a fresh
// gradient, also bit for bit up to the sign of a zero; when x's gradient already holds a
// sum from elsewhere and windows overlap, the additions are grouped differently).
// nn::Sequential records it for a ReLU followed by MaxPool2d. Cost: that of max_pool2d.
// DESCENT_CONV_KERNELS=reference or =unfused in the environment records the two
// operations instead (for benchmarks, bench/cnn_ab.sh).
Var relu_max_pool2d(Var x, std::int64_t kernel, std::int64_t stride);

// relu_max_pool2d(conv2d(x, w, b, options), kernel, stride) as one node where oneDNN runs
// the convolution in its 16-channel blocked layout (float32, C_in >= 8, C_out a multiple of
// 16, an AVX-512 CPU; fuses_conv2d_relu_max_pool2d says whether): the convolution's output
// stays in that layout, unseen, and is pooled there; the backward scatters the pool's
// gradient into that layout for the convolution's backward. No NCHW copy of the
// convolution's output or of its gradient, no reorders between them. Otherwise the
// separate operations. Values, gradients and Hv are those of the separate operations
// (the same kernels, the same sums), except the bias gradient, summed from the pooled
// gradient (its nonzero terms) in another order (in double: equal to float rounding), and,
// for a 5x5 / pad 2 / stride 1 convolution with channels in multiples of 16, the forward and
// x's gradient, computed as Winograd F(2x2, 5x5) (equal to float rounding, the same for any
// thread count; DESCENT_CONV_KERNELS=direct: oneDNN's direct convolution, the same bits as
// the separate operations). The tangent rules (Hv) run on NCHW copies. nn::Sequential records it for Conv2d, ReLU,
// MaxPool2d in a row. Shape errors name conv2d or relu_max_pool2d.
// DESCENT_CONV_KERNELS=reference or =unfused: the separate operations.
bool fuses_conv2d_relu_max_pool2d(Var x, Var w, Var b, const Conv2dOptions& options);
Var conv2d_relu_max_pool2d(Var x, Var w, Var b, const Conv2dOptions& options, std::int64_t kernel, std::int64_t stride);

// Mean over each kernel x kernel window, moved by `stride`, no padding (linear):
//   y[n, c, i, j] = (1 / kernel^2) sum_{u, v < kernel} x[n, c, i stride + u, j stride + v]
Var avg_pool2d(Var x, std::int64_t kernel, std::int64_t stride);
inline Var avg_pool2d(Var x, std::int64_t kernel) { return avg_pool2d(x, kernel, kernel); }

}  // namespace descent::autodiff
