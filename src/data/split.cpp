#include "descent/data/split.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <type_traits>

#include "descent/data/shards.hpp"
#include "descent/error.hpp"
#include "descent/tensor/parallel.hpp"
#include "../tensor/dispatch.hpp"
#include "../tensor/matmul_bf16.hpp"

namespace descent::data {
namespace {

Dataset first(const Dataset& d, std::int64_t limit) {
  if (limit <= 0 || limit >= d.size()) return d;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(limit));
  std::iota(idx.begin(), idx.end(), 0);
  return subset(d, idx);
}

void check_validation_size(const PrepareOptions& o, std::int64_t n) {
  if (o.validation_size >= n) {
    throw ConfigError("validation_size = " + std::to_string(o.validation_size) +
                      " leaves no training examples (the training file has " + std::to_string(n) + ")");
  }
}

// One row: dst[j] = values[src[j]] (a table lookup per byte, compiled per CPU level).
template <class T>
DESCENT_DISPATCH void decode_row(const std::uint8_t* src, const float* values, std::int64_t d, T* dst) {
#pragma omp simd
  for (std::int64_t j = 0; j < d; ++j) dst[j] = static_cast<T>(values[src[j]]);
}

// ---- byte decode by AVX-512 permutes ---------------------------------------------------
//
// A row decoded through the global table of 256 values by table lookups in registers: the
// table is 16 vectors of 16 floats; a byte's value is picked by 8 two-vector permutes (low 5
// bits of the byte) and 3 levels of blends (bits 5, 6, 7), 16 bytes at a time, instead of 16
// scalar loads (which GCC emits for the gather on this CPU). The same values bit for bit (a
// permute moves bits); the bf16 bits, when asked for, rounded in registers as from_float_bits.
// (The maskz forms with all lanes on: the plain ones trip GCC 12's -Wmaybe-uninitialized.)
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DESCENT_DECODE_PERMUTE 1
#define DESCENT_AVX512_DECODE __attribute__((target("avx512f,avx512bw,avx512vl")))

DESCENT_AVX512_DECODE void decode_row_permute(const std::uint8_t* src, const float* values, std::int64_t d, float* dst,
                                              std::uint16_t* dst16) {
  __m512 t[16];
  for (int q = 0; q < 16; ++q) t[q] = _mm512_loadu_ps(values + 16 * q);
  const __m512i bit5 = _mm512_set1_epi32(32), bit6 = _mm512_set1_epi32(64), bit7 = _mm512_set1_epi32(128);
  std::int64_t j = 0;
  for (; j + 16 <= d; j += 16) {
    const __m512i idx = _mm512_maskz_cvtepu8_epi32(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j)));
    const __mmask16 k5 = _mm512_test_epi32_mask(idx, bit5), k6 = _mm512_test_epi32_mask(idx, bit6),
                    k7 = _mm512_test_epi32_mask(idx, bit7);
    const __m512 r0 = _mm512_mask_blend_ps(k5, _mm512_permutex2var_ps(t[0], idx, t[1]), _mm512_permutex2var_ps(t[2], idx, t[3]));
    const __m512 r1 = _mm512_mask_blend_ps(k5, _mm512_permutex2var_ps(t[4], idx, t[5]), _mm512_permutex2var_ps(t[6], idx, t[7]));
    const __m512 r2 = _mm512_mask_blend_ps(k5, _mm512_permutex2var_ps(t[8], idx, t[9]), _mm512_permutex2var_ps(t[10], idx, t[11]));
    const __m512 r3 = _mm512_mask_blend_ps(k5, _mm512_permutex2var_ps(t[12], idx, t[13]), _mm512_permutex2var_ps(t[14], idx, t[15]));
    const __m512 v = _mm512_mask_blend_ps(k7, _mm512_mask_blend_ps(k6, r0, r1), _mm512_mask_blend_ps(k6, r2, r3));
    _mm512_storeu_ps(dst + j, v);
    if (dst16 != nullptr) {
      // from_float_bits on 16 lanes: NaN -> (u >> 16) | 0x40, else (u + 0x7fff + ((u >> 16) & 1)) >> 16
      const __m512i u = _mm512_castps_si512(v);
      const __m512i hi = _mm512_maskz_srli_epi32(0xFFFF, u, 16);
      const __m512i rounded =
          _mm512_maskz_srli_epi32(0xFFFF, _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(hi, _mm512_set1_epi32(1))), 16);
      const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
      const __m512i r = _mm512_mask_or_epi32(rounded, nan, hi, _mm512_set1_epi32(0x40));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst16 + j), _mm512_maskz_cvtepi32_epi16(0xFFFF, r));
    }
  }
  for (; j < d; ++j) {
    const float v = values[src[j]];
    dst[j] = v;
    if (dst16 != nullptr) {
      std::uint32_t u;
      std::memcpy(&u, &v, sizeof u);
      dst16[j] = kernels::bf16::from_float_bits(u);
    }
  }
}

bool decode_by_permutes() {
  static const bool on = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && std::getenv("DESCENT_DECODE_PORTABLE") == nullptr;
  return on;
}
#endif

// Rows per chunk of a batch copy: one chunk per thread from copy_parallel_below elements up
// (batches of 42 rows of 784 bytes and more: measured at 64 and 128), else the whole batch on
// the calling thread. The copy is not a pass at memory speed but a table lookup per byte (and,
// from a shuffled sampler, a jump to each row): 2 threads copied a batch of 128 shuffled rows
// in 35 us against 60 us (bench/time_to_accuracy), and train_mlp ran 1.03x at batch 64 and
// 1.025x at 128 (docs/performance.md, loop helper, session 13); waking the team for a
// batch-32 copy (25,088 bytes) cost more than it saved (6% of a 2-thread b32 step). As the
// element-wise passes, a copy under elementwise_follow_below stays on the calling thread
// after products that ran there (a small model's batch is then read by one core).
constexpr std::int64_t copy_parallel_below = std::int64_t{1} << 15;
std::int64_t copy_grain(std::int64_t n, std::int64_t d) {
  const std::int64_t threads = num_threads(), elements = n * d;
  if (threads <= 1 || n < 2 || elements < copy_parallel_below || follows_serial_products(elements)) {
    return std::max<std::int64_t>(1, n);
  }
  return (n + threads - 1) / threads;
}

// One row and its bf16 bits: dst[j] = values[src[j]], dst16[j] = bf16(dst[j]) (round to
// nearest even, kernels::bf16::from_float_bits: the bits kernels::bf16::convert writes),
// converted in registers as the row is decoded.
DESCENT_DISPATCH void decode_row_bf16(const std::uint8_t* src, const float* values, std::int64_t d, float* dst,
                                      std::uint16_t* dst16) {
#pragma omp simd
  for (std::int64_t j = 0; j < d; ++j) {
    const float v = values[src[j]];
    dst[j] = v;
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    dst16[j] = kernels::bf16::from_float_bits(u);
  }
}

// Rows of a batch are scattered over the data set (a shuffled sampler): the hardware
// prefetchers follow a row once it has started, not the jump to the next one, so each row's
// first lines were misses waited for one after another. The bytes of the row kPrefetchRows
// ahead are asked for while this one is decoded.
constexpr std::int64_t kPrefetchRows = 2;
inline void prefetch_row(const std::uint8_t* src, std::int64_t d) {
  for (std::int64_t j = 0; j < d; j += 64) __builtin_prefetch(src + j, 0, 3);
  if (d > 0) __builtin_prefetch(src + d - 1, 0, 3);  // the last line when the row does not start on one
}

// Decodes rows of byte features into `out` ([rows, d] of T): out[i, j] = values[b] or, per
// feature, values[b * d + j], for the byte b of row first + rows[i] of `bytes`; with `out16`
// (float32 only) the bf16 bits of out in the same pass.
template <class T>
void decode_rows(const std::uint8_t* bytes, std::int64_t first, const float* values, bool per_feature, std::int64_t d,
                 std::span<const std::int64_t> rows, T* out, std::uint16_t* out16 = nullptr) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
  const auto n = static_cast<std::int64_t>(rows.size());
#ifdef DESCENT_DECODE_PERMUTE
  [[maybe_unused]] const bool permute = decode_by_permutes();
#endif
  parallel_for(n, copy_grain(n, d), [&](std::int64_t i0, std::int64_t i1) {
    const auto row = [&](std::int64_t i) { return bytes + (first + rows[static_cast<std::size_t>(i)]) * d; };
    for (std::int64_t i = i0; i < std::min(i1, i0 + kPrefetchRows); ++i) prefetch_row(row(i), d);
    for (std::int64_t i = i0; i < i1; ++i) {
      if (i + kPrefetchRows < i1) prefetch_row(row(i + kPrefetchRows), d);
      const std::uint8_t* src = row(i);
      T* dst = out + i * d;
      std::uint16_t* dst16 = out16 != nullptr ? out16 + i * d : nullptr;
      if (per_feature) {
        for (std::int64_t j = 0; j < d; ++j) dst[j] = static_cast<T>(values[src[j] * d + j]);
        if constexpr (std::is_same_v<T, float>) {
          if (dst16 != nullptr) kernels::bf16::convert(dst, d, dst16);
        }
        continue;
      }
      if constexpr (std::is_same_v<T, float>) {
#ifdef DESCENT_DECODE_PERMUTE
        if (permute) {
          decode_row_permute(src, values, d, dst, dst16);
          continue;
        }
#endif
        if (dst16 != nullptr) {
          decode_row_bf16(src, values, d, dst, dst16);
          continue;
        }
      }
      decode_row(src, values, d, dst);
    }
  });
}

// x16 <- bf16 bits of the float32 tensor x (the features copied some other way).
void to_bf16(const Tensor& x, std::uint16_t* x16) { kernels::bf16::convert(x.data<float>(), x.numel(), x16); }

// A split of byte features: the rows `rows` of `d` (shared when they are one contiguous range,
// copied otherwise) with their labels.
Split byte_split(const ByteDataset& d, const std::shared_ptr<const std::vector<std::uint8_t>>& all,
                 std::span<const std::int64_t> rows, const std::shared_ptr<const std::vector<float>>& values,
                 DType dtype) {
  Split s;
  s.dtype = dtype;
  s.features = d.dim();
  s.values = values;
  const auto n = static_cast<std::int64_t>(rows.size());
  std::vector<std::int32_t> labels(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) labels[i] = d.labels[static_cast<std::size_t>(rows[i])];
  s.y = Tensor::from<std::int32_t>({n}, std::span<const std::int32_t>(labels));
  const bool contiguous = n == 0 || rows.back() - rows.front() + 1 == n;
  if (contiguous) {
    s.bytes = all;
    s.first = n == 0 ? 0 : rows.front();
    return s;
  }
  auto copy = std::make_shared<std::vector<std::uint8_t>>(rows.size() * static_cast<std::size_t>(d.dim()));
  const auto row_bytes = static_cast<std::size_t>(d.dim());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(copy->data() + i * row_bytes, all->data() + static_cast<std::size_t>(rows[i]) * row_bytes, row_bytes);
  }
  s.bytes = std::move(copy);
  return s;
}

}  // namespace

Tensor Split::rows(std::int64_t begin, std::int64_t end, Tensor& buffer) const {
  if (x.defined()) return x.rows(begin, end);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(end - begin));
  std::iota(idx.begin(), idx.end(), begin);
  copy_features(idx, buffer);
  return buffer;
}

void Split::gather(std::span<const std::int64_t> idx, Tensor& x_out, Tensor& y_out, std::uint16_t* x16) const {
  const auto b = static_cast<std::int64_t>(idx.size());
  if (!y_out.defined() || y_out.dim(0) != b) y_out = Tensor::empty({b}, DType::i32);
  const std::int32_t* ys = y.data<std::int32_t>();
  std::int32_t* yd = y_out.data<std::int32_t>();
  for (std::int64_t i = 0; i < b; ++i) yd[i] = ys[idx[static_cast<std::size_t>(i)]];
  if (stream && shard_trace_enabled()) {  // the ids, in the same walk over the shards
    const DType t = dtype;
    if (!x_out.defined() || x_out.dim(0) != b || x_out.dim(1) != dim() || x_out.dtype() != t) x_out = Tensor::empty({b, dim()}, t);
    std::vector<std::int64_t> ids;
    if (t == DType::f64) {
      stream->features(idx, x_out.data<double>(), &ids);
    } else {
      stream->features(idx, x_out.data<float>(), &ids);
    }
    trace_shard_examples(ids);
    if (x16 != nullptr) to_bf16(x_out, x16);
    return;
  }
  copy_features(idx, x_out, x16);
}

void Split::copy_features(std::span<const std::int64_t> idx, Tensor& x_out, std::uint16_t* x16) const {
  const auto b = static_cast<std::int64_t>(idx.size());
  const std::int64_t d = dim();
  const DType t = x.defined() ? x.dtype() : dtype;
  if (x16 != nullptr && t != DType::f32) {
    throw ShapeError(std::string("Split::copy_features: bf16 bits asked of ") + dtype_name(t) + " features (float32 only)");
  }
  if (!x_out.defined() || x_out.dim(0) != b || x_out.dim(1) != d || x_out.dtype() != t) x_out = Tensor::empty({b, d}, t);
  if (x16 != nullptr && !stream && !x.defined()) {  // byte features: both in one pass
    decode_rows(bytes->data(), first, values->data(), values->size() != 256, d, idx, x_out.data<float>(), x16);
    return;
  }
  if (stream) {
    if (t == DType::f64) {
      stream->features(idx, x_out.data<double>());
    } else {
      stream->features(idx, x_out.data<float>());
    }
    if (x16 != nullptr) to_bf16(x_out, x16);
    return;
  }
  if (x.defined()) {
    const std::size_t row_bytes = static_cast<std::size_t>(d) * dtype_size(t);
    auto* dst = static_cast<std::byte*>(x_out.raw());
    const auto* src = static_cast<const std::byte*>(x.raw());
    for (std::int64_t i = 0; i < b; ++i) {
      std::memcpy(dst + static_cast<std::size_t>(i) * row_bytes, src + static_cast<std::size_t>(idx[static_cast<std::size_t>(i)]) * row_bytes,
                  row_bytes);
    }
    if (x16 != nullptr) to_bf16(x_out, x16);
    return;
  }
  const bool per_feature = values->size() != 256;
  if (t == DType::f64) {
    decode_rows(bytes->data(), first, values->data(), per_feature, d, idx, x_out.data<double>());
  } else {
    decode_rows(bytes->data(), first, values->data(), per_feature, d, idx, x_out.data<float>());
  }
}

Split to_split(const Dataset& d, DType dtype) {
  Split s;
  s.dtype = dtype;
  if (d.size() == 0) return s;
  Tensor x = Tensor::from<float>({d.size(), d.dim()}, std::span<const float>(d.features.values));
  s.x = dtype == DType::f32 ? x : x.to(dtype);
  s.y = Tensor::from<std::int32_t>({d.size()}, std::span<const std::int32_t>(d.labels));
  return s;
}

Data prepare(TrainTest files, const PrepareOptions& o) {
  Dataset full = first(files.train, o.limit_train);
  Dataset test = first(files.test, o.limit_test);
  scale(full, static_cast<float>(o.scale));
  scale(test, static_cast<float>(o.scale));
  Dataset train, validation;
  if (o.validation_size > 0) {
    check_validation_size(o, full.size());
    std::tie(train, validation) = split_validation(
        std::move(full), {.validation_size = o.validation_size, .shuffle = o.validation_shuffle, .seed = o.seed});
  } else {
    train = std::move(full);
  }
  std::optional<Standardizer> standardizer;
  if (o.standardize) {
    standardizer = fit_standardizer(train, *o.standardize);
    apply(*standardizer, train);
    if (validation.size() > 0) apply(*standardizer, validation);
    apply(*standardizer, test);
  }
  Data out;
  out.standardizer = std::move(standardizer);
  out.num_classes = std::max(train.num_classes, test.num_classes);
  out.dim = train.dim();
  out.train = to_split(train, o.dtype);
  out.validation = to_split(validation, o.dtype);
  out.test = to_split(test, o.dtype);
  return out;
}

Data prepare(ByteTrainTest tt, const PrepareOptions& o) {
  const auto limit = [](ByteDataset& d, std::int64_t n) {
    if (n <= 0 || n >= d.size()) return;
    d.features.values.resize(static_cast<std::size_t>(n * d.dim()));
    d.features.values.shrink_to_fit();
    d.features.shape[0] = n;
    d.labels.resize(static_cast<std::size_t>(n));
  };
  limit(tt.train, o.limit_train);
  limit(tt.test, o.limit_test);
  const std::int64_t n = tt.train.size();
  std::vector<std::int64_t> train_rows, validation_rows;
  if (o.validation_size > 0) {
    check_validation_size(o, n);
    std::tie(train_rows, validation_rows) = validation_split_indices(
        n, {.validation_size = o.validation_size, .shuffle = o.validation_shuffle, .seed = o.seed});
  } else {
    train_rows.resize(static_cast<std::size_t>(n));
    std::iota(train_rows.begin(), train_rows.end(), 0);
  }
  const auto factor = static_cast<float>(o.scale);
  std::optional<Standardizer> standardizer;
  if (o.standardize) standardizer = fit_standardizer(tt.train, train_rows, factor, *o.standardize);  // the training part only
  const auto values = std::make_shared<const std::vector<float>>(
      byte_values(factor, standardizer ? &*standardizer : nullptr, tt.train.dim()));
  const auto train_bytes = std::make_shared<const std::vector<std::uint8_t>>(std::move(tt.train.features.values));
  const auto test_bytes = std::make_shared<const std::vector<std::uint8_t>>(std::move(tt.test.features.values));
  std::vector<std::int64_t> test_rows(static_cast<std::size_t>(tt.test.size()));
  std::iota(test_rows.begin(), test_rows.end(), 0);
  Data out;
  out.num_classes = std::max(tt.train.num_classes, tt.test.num_classes);
  out.dim = tt.train.dim();
  out.train = byte_split(tt.train, train_bytes, train_rows, values, o.dtype);
  out.validation = byte_split(tt.train, train_bytes, validation_rows, values, o.dtype);
  out.test = byte_split(tt.test, test_bytes, test_rows, values, o.dtype);
  out.standardizer = std::move(standardizer);
  return out;
}

}  // namespace descent::data
