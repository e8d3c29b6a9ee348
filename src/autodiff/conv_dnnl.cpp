#include "conv_dnnl.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "conv_winograd.hpp"
#include "descent/autodiff/conv.hpp"

#ifdef DESCENT_HAVE_DNNL
#include <dnnl.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "descent/tensor/parallel.hpp"
#endif

namespace descent::autodiff {
namespace {
std::atomic<ConvBackend> g_backend{ConvBackend::automatic};
}  // namespace

void set_conv_backend(ConvBackend backend) { g_backend.store(backend); }
ConvBackend conv_backend() { return g_backend.load(); }
bool conv_backend_has_onednn() {
#ifdef DESCENT_HAVE_DNNL
  return true;
#else
  return false;
#endif
}

namespace conv_dnnl {

bool reference_kernels() {
  const char* v = std::getenv("DESCENT_CONV_KERNELS");
  return v != nullptr && std::strcmp(v, "reference") == 0;
}

bool unfused_relu_pool() {
  const char* v = std::getenv("DESCENT_CONV_KERNELS");
  return v != nullptr && (std::strcmp(v, "reference") == 0 || std::strcmp(v, "unfused") == 0);
}

#ifndef DESCENT_HAVE_DNNL
ReuseScope::ReuseScope() = default;
ReuseScope::~ReuseScope() = default;
bool active() { return false; }
void forward(const Geom&, const float* const*, const float* const*, int, const float*, float*) {}
void input_grad(const Geom&, const float* const*, const float* const*, int, float*, double) {}
void weight_grad(const Geom&, const float* const*, const float* const*, int, float*, double) {}
bool blocked16(const Geom&) { return false; }
std::int64_t kept_src_size(const Geom&) { return 0; }
void forward_blocked16(const Geom&, const float*, const float*, const float*, float*, float*) {}
bool forward_relu_max_pool_blocked16(const Geom&, const float*, const float*, const float*, float*, std::int32_t*,
                                     float*) {
  return false;
}
void input_grad_blocked16(const Geom&, const float*, const float*, float*, double) {}
void weight_grad_blocked16(const Geom&, const float*, const float*, float*, double, const float*) {}
#else

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// The primitives of one convolution shape, built once: forward (with bias), backward data,
// backward weights (no bias: descent sums the bias gradient itself), with the plain user
// descriptors and scratch memories in the primitives' own formats.
struct Plan {
  memory::desc user_src, user_wei, user_dst, bias_md;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_d_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_w_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_d;
  dnnl::convolution_backward_weights bwd_w;
  std::vector<float> zero_bias;
};

using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       std::int64_t, std::int64_t>;

Plan& plan_for(const Geom& g) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Plan>> plans;
  const Key key{g.batch, g.c_in, g.h, g.w, g.c_out, g.kh, g.kw, g.stride, g.pad};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  const memory::dims src{g.batch, g.c_in, g.h, g.w}, wei{g.c_out, g.c_in, g.kh, g.kw}, dst{g.batch, g.c_out, g.h_out, g.w_out};
  const memory::dims strides{g.stride, g.stride}, pad{g.pad, g.pad};
  p->user_src = memory::desc(src, dt::f32, tag::nchw);
  p->user_wei = memory::desc(wei, dt::f32, tag::oihw);
  p->user_dst = memory::desc(dst, dt::f32, tag::nchw);
  p->bias_md = memory::desc({g.c_out}, dt::f32, tag::x);
  const memory::desc any_src(src, dt::f32, tag::any), any_wei(wei, dt::f32, tag::any), any_dst(dst, dt::f32, tag::any);
  p->fwd_pd = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, any_src,
                                      any_wei, p->bias_md, any_dst, strides, pad, pad),
      engine());
  p->bwd_d_pd = dnnl::convolution_backward_data::primitive_desc(
      dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, any_src, any_wei, any_dst, strides, pad, pad),
      engine(), p->fwd_pd);
  p->bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, any_src, any_wei, any_dst, strides, pad,
                                               pad),
      engine(), p->fwd_pd);
  p->fwd = dnnl::convolution_forward(p->fwd_pd);
  p->bwd_d = dnnl::convolution_backward_data(p->bwd_d_pd);
  p->bwd_w = dnnl::convolution_backward_weights(p->bwd_w_pd);
  p->zero_bias.assign(static_cast<std::size_t>(g.c_out), 0.0f);
  return *plans.emplace(key, std::move(p)).first->second;
}

// Conversions kept while a ReuseScope is alive.
struct Converted {
  const float* data;
  memory::desc want;
  memory copy;
};
int reuse_depth = 0;
std::vector<Converted> reused;

// `user` (plain, wrapping descent's array) in the format `want`: itself, or a reordered copy.
memory in_format(dnnl::stream& s, const memory::desc& user_md, const float* data, const memory::desc& want) {
  memory user(user_md, engine(), const_cast<float*>(data));
  if (user_md == want) return user;
  if (reuse_depth > 0) {
    for (const Converted& c : reused) {
      if (c.data == data && c.want == want) return c.copy;
    }
  }
  memory converted(want, engine());
  dnnl::reorder(user, converted).execute(s, user, converted);
  if (reuse_depth > 0) reused.push_back({data, want, converted});
  return converted;
}

// dst (plain, n elements) = result (beta 0) or dst += result (beta 1), result in `have`'s format.
void out_to_user(dnnl::stream& s, memory result, const memory::desc& user_md, float* dst, double beta) {
  const std::size_t n = user_md.get_size() / sizeof(float);
  if (beta == 0.0) {
    memory user(user_md, engine(), dst);
    if (result.get_desc() == user_md) {
      if (result.get_data_handle() != dst) {
        const float* r = static_cast<const float*>(result.get_data_handle());
        std::copy(r, r + n, dst);
      }
      return;
    }
    dnnl::reorder(result, user).execute(s, result, user);
    s.wait();
    return;
  }
  const float* r = nullptr;
  memory plain;
  if (result.get_desc() == user_md) {
    r = static_cast<const float*>(result.get_data_handle());
  } else {
    plain = memory(user_md, engine());
    dnnl::reorder(result, plain).execute(s, result, plain);
    s.wait();
    r = static_cast<const float*>(plain.get_data_handle());
  }
  parallel_for(static_cast<std::int64_t>(n), parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
    for (std::int64_t i = i0; i < i1; ++i) dst[i] += r[i];
  });
}

}  // namespace

ReuseScope::ReuseScope() { ++reuse_depth; }
ReuseScope::~ReuseScope() {
  if (--reuse_depth == 0) reused.clear();
}

bool active() { return conv_backend() != ConvBackend::im2col; }

void forward(const Geom& g, const float* const* w, const float* const* x, int terms, const float* bias, float* out) {
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  memory dst(p.fwd_pd.dst_desc(), engine());
  memory b(p.bias_md, engine(), const_cast<float*>(bias != nullptr ? bias : p.zero_bias.data()));
  memory zero(p.bias_md, engine(), p.zero_bias.data());
  for (int t = 0; t < terms; ++t) {
    memory src = in_format(s, p.user_src, x[t], p.fwd_pd.src_desc());
    memory wei = in_format(s, p.user_wei, w[t], p.fwd_pd.weights_desc());
    p.fwd.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, t == 0 ? b : zero}, {DNNL_ARG_DST, dst}});
    s.wait();
    out_to_user(s, dst, p.user_dst, out, t == 0 ? 0.0 : 1.0);
  }
  if (terms == 0) {  // only the bias
    for (std::int64_t n = 0; n < g.batch; ++n) {
      for (std::int64_t o = 0; o < g.c_out; ++o) {
        float* y = out + (n * g.c_out + o) * g.h_out * g.w_out;
        std::fill(y, y + g.h_out * g.w_out, bias != nullptr ? bias[o] : 0.0f);
      }
    }
  }
}

void input_grad(const Geom& g, const float* const* w, const float* const* gy, int terms, float* gx, double beta) {
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  memory diff_src(p.bwd_d_pd.diff_src_desc(), engine());
  for (int t = 0; t < terms; ++t) {
    memory diff_dst = in_format(s, p.user_dst, gy[t], p.bwd_d_pd.diff_dst_desc());
    memory wei = in_format(s, p.user_wei, w[t], p.bwd_d_pd.weights_desc());
    p.bwd_d.execute(s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, diff_src}});
    s.wait();
    out_to_user(s, diff_src, p.user_src, gx, t == 0 ? beta : 1.0);
  }
}

void weight_grad(const Geom& g, const float* const* gy, const float* const* x, int terms, float* gw, double beta) {
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  memory diff_wei(p.bwd_w_pd.diff_weights_desc(), engine());
  for (int t = 0; t < terms; ++t) {
    memory diff_dst = in_format(s, p.user_dst, gy[t], p.bwd_w_pd.diff_dst_desc());
    memory src = in_format(s, p.user_src, x[t], p.bwd_w_pd.src_desc());
    p.bwd_w.execute(s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_WEIGHTS, diff_wei}});
    s.wait();
    out_to_user(s, diff_wei, p.user_wei, gw, t == 0 ? beta : 1.0);
  }
}

namespace {
memory::desc blocked16_desc(const Geom& g) {
  return memory::desc({g.batch, g.c_out, g.h_out, g.w_out}, dt::f32, tag::aBcd16b);
}
memory::desc src_blocked16_desc(const Geom& g) {
  return memory::desc({g.batch, g.c_in, g.h, g.w}, dt::f32, tag::aBcd16b);
}
// The forward, the input gradient and the weight gradient of the blocked entry points through
// Winograd F(2x2, 5x5) (conv_winograd.hpp) unless DESCENT_CONV_KERNELS=direct (or reference, unfused).
bool use_winograd(const Geom& g) {
  return !conv_winograd::disabled_by_env() &&
         conv_winograd::supports(g.c_in, g.h, g.w, g.c_out, g.kh, g.kw, g.stride, g.pad);
}
conv_winograd::Geom winograd_geom(const Geom& g) { return {g.batch, g.c_in, g.h, g.w, g.c_out}; }
// x in the 16-channel blocked layout for Winograd: into x_kept when that is the forward's
// format (kept for the weight gradient), else a new memory (and x_kept, if any, filled in the
// forward's format).
memory winograd_src(dnnl::stream& s, Plan& p, const Geom& g, const float* x, float* x_kept) {
  const memory::desc want = src_blocked16_desc(g);
  memory user(p.user_src, engine(), const_cast<float*>(x));
  memory src = x_kept != nullptr && p.fwd_pd.src_desc() == want ? memory(want, engine(), x_kept) : memory(want, engine());
  dnnl::reorder(user, src).execute(s, user, src);
  if (x_kept != nullptr && !(p.fwd_pd.src_desc() == want)) {
    memory kept(p.fwd_pd.src_desc(), engine(), x_kept);
    dnnl::reorder(user, kept).execute(s, user, kept);
  }
  s.wait();
  return src;
}
}  // namespace

bool blocked16(const Geom& g) {
  if (g.c_out % 16 != 0) return false;
  Plan& p = plan_for(g);
  const memory::desc want = blocked16_desc(g);
  return p.fwd_pd.dst_desc() == want && p.bwd_d_pd.diff_dst_desc() == want && p.bwd_w_pd.diff_dst_desc() == want;
}

std::int64_t kept_src_size(const Geom& g) {
  Plan& p = plan_for(g);
  if (p.fwd_pd.src_desc() == p.user_src || !(p.fwd_pd.src_desc() == p.bwd_w_pd.src_desc())) return 0;
  return static_cast<std::int64_t>(p.fwd_pd.src_desc().get_size() / sizeof(float));
}

void forward_blocked16(const Geom& g, const float* w, const float* x, const float* bias, float* out_blocked,
                       float* x_kept) {
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  if (use_winograd(g)) {  // x in the 16-channel blocked layout (into x_kept when it is that format), then ours
    memory src = winograd_src(s, p, g, x, x_kept);
    conv_winograd::forward(winograd_geom(g), w, static_cast<const float*>(src.get_data_handle()), bias, out_blocked);
    return;
  }
  memory dst(p.fwd_pd.dst_desc(), engine(), out_blocked);
  memory b(p.bias_md, engine(), const_cast<float*>(bias != nullptr ? bias : p.zero_bias.data()));
  memory src;
  if (x_kept != nullptr) {
    memory user(p.user_src, engine(), const_cast<float*>(x));
    src = memory(p.fwd_pd.src_desc(), engine(), x_kept);
    dnnl::reorder(user, src).execute(s, user, src);
  } else {
    src = in_format(s, p.user_src, x, p.fwd_pd.src_desc());
  }
  memory wei = in_format(s, p.user_wei, w, p.fwd_pd.weights_desc());
  p.fwd.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}});
  s.wait();
}

bool forward_relu_max_pool_blocked16(const Geom& g, const float* w, const float* x, const float* bias, float* y,
                                     std::int32_t* idx, float* x_kept) {
  if (!use_winograd(g)) return false;
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  memory src = winograd_src(s, p, g, x, x_kept);
  conv_winograd::forward_relu_max_pool(winograd_geom(g), w, static_cast<const float*>(src.get_data_handle()), bias, y,
                                       idx);
  return true;
}

void input_grad_blocked16(const Geom& g, const float* w, const float* gy_blocked, float* gx, double beta) {
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  if (use_winograd(g)) {
    memory diff_src(src_blocked16_desc(g), engine());
    conv_winograd::input_grad(winograd_geom(g), w, gy_blocked, static_cast<float*>(diff_src.get_data_handle()));
    out_to_user(s, diff_src, p.user_src, gx, beta);
    return;
  }
  memory diff_src(p.bwd_d_pd.diff_src_desc(), engine());
  memory diff_dst(p.bwd_d_pd.diff_dst_desc(), engine(), const_cast<float*>(gy_blocked));
  memory wei = in_format(s, p.user_wei, w, p.bwd_d_pd.weights_desc());
  p.bwd_d.execute(s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, diff_src}});
  s.wait();
  out_to_user(s, diff_src, p.user_src, gx, beta);
}

void weight_grad_blocked16(const Geom& g, const float* gy_blocked, const float* x, float* gw, double beta,
                           const float* x_kept) {
  Plan& p = plan_for(g);
  dnnl::stream s(engine());
  if (use_winograd(g)) {  // x in the 16-channel blocked layout: what the forward kept, or converted now
    const memory::desc want = src_blocked16_desc(g);
    memory src;
    if (x_kept != nullptr && p.fwd_pd.src_desc() == want) {
      src = memory(want, engine(), const_cast<float*>(x_kept));
    } else {
      memory user(p.user_src, engine(), const_cast<float*>(x));
      src = memory(want, engine());
      dnnl::reorder(user, src).execute(s, user, src);
      s.wait();
    }
    memory diff_wei(p.user_wei, engine());
    conv_winograd::weight_grad(winograd_geom(g), gy_blocked, static_cast<const float*>(src.get_data_handle()),
                               static_cast<float*>(diff_wei.get_data_handle()));
    out_to_user(s, diff_wei, p.user_wei, gw, beta);
    return;
  }
  memory diff_wei(p.bwd_w_pd.diff_weights_desc(), engine());
  memory diff_dst(p.bwd_w_pd.diff_dst_desc(), engine(), const_cast<float*>(gy_blocked));
  memory src = x_kept != nullptr ? memory(p.bwd_w_pd.src_desc(), engine(), const_cast<float*>(x_kept))
                                 : in_format(s, p.user_src, x, p.bwd_w_pd.src_desc());
  p.bwd_w.execute(s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_WEIGHTS, diff_wei}});
  s.wait();
  out_to_user(s, diff_wei, p.user_wei, gw, beta);
}

#endif

}  // namespace conv_dnnl
}  // namespace descent::autodiff
