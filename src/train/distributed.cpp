#include "descent/train/distributed.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef DESCENT_HAVE_MPI
#include <mpi.h>
#endif

#include "descent/error.hpp"
#include "descent/loss/loss.hpp"
#include "descent/data/shards.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/fused_sums.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/train/config.hpp"
#include "descent/train/monitors.hpp"
#include "descent/train/second_order_loop.hpp"
#include "descent/train/trainer.hpp"

namespace descent::train {
namespace {

using Clock = std::chrono::steady_clock;

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

#ifdef DESCENT_HAVE_MPI
void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// An MPI call that failed: a rank died or the network broke. One line, naming the call.
void check(int rc, const char* what, int rank, int size) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw IoError("rank " + std::to_string(rank) + " of " + std::to_string(size) + ": " + what + " failed (" +
                std::string(text, static_cast<std::size_t>(length)) + "): another rank has probably ended");
}
#endif

std::int64_t next_power_of_two(std::int64_t n) {
  std::int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

bool power_of_two(std::int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

// MPI counts are ints: a buffer of n elements goes as pieces of at most 2^30, f(offset, count).
template <class F>
void in_mpi_counts(std::int64_t n, F&& f) {
  constexpr std::int64_t chunk = std::int64_t{1} << 30;
  for (std::int64_t i = 0; i < n; i += chunk) f(i, static_cast<int>(std::min(chunk, n - i)));
}

}  // namespace

bool built_with_mpi() {
#ifdef DESCENT_HAVE_MPI
  return true;
#else
  return false;
#endif
}

Communicator::Communicator() {
#ifdef DESCENT_HAVE_MPI
  if (!launched_by_mpirun()) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    std::atexit(finalize_mpi);
  }
  // Errors come back as codes (a clear message), not MPI's default abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
#else
  if (launched_by_mpirun()) {
    throw ConfigError("descent was started by mpirun but built without MPI (install libopenmpi-dev and rebuild): "
                      "every process would train on its own");
  }
#endif
}

Communicator& Communicator::world() {
  static Communicator c;
  return c;
}

void Communicator::allreduce_sum(float* data, std::int64_t n) {
  if (size_ <= 1) return;
#ifdef DESCENT_HAVE_MPI
  const auto t0 = Clock::now();
  in_mpi_counts(n, [&](std::int64_t i, int count) {
    check(MPI_Allreduce(MPI_IN_PLACE, data + i, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce of the gradient",
          rank_, size_);
  });
  bytes_ += n * static_cast<std::int64_t>(sizeof(float));
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
#else
  (void)data;
  (void)n;
#endif
}

void Communicator::allreduce_sum(double* data, std::int64_t n) {
  if (size_ <= 1) return;
#ifdef DESCENT_HAVE_MPI
  const auto t0 = Clock::now();
  check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce of the step's figures", rank_, size_);
  bytes_ += n * static_cast<std::int64_t>(sizeof(double));
  ++calls_;  // once per step
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
#else
  (void)data;
  (void)n;
#endif
}

void Communicator::allreduce_figures(double* data, std::int64_t n) {
  if (size_ <= 1) return;
#ifdef DESCENT_HAVE_MPI
  check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce of an evaluation's figures", rank_, size_);
#else
  (void)data;
  (void)n;
#endif
}

int Communicator::allreduce_max(int value) {
  if (size_ <= 1) return value;
#ifdef DESCENT_HAVE_MPI
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce", rank_, size_);
#endif
  return value;
}

#ifdef DESCENT_HAVE_MPI
namespace {
std::vector<MPI_Request> g_requests;  // the started non-blocking all-reduces (one communicator: the world)
}  // namespace
#endif

void Communicator::start_allreduce_sum(float* data, std::int64_t n) {
  if (size_ <= 1) return;
#ifdef DESCENT_HAVE_MPI
  const auto t0 = Clock::now();
  in_mpi_counts(n, [&](std::int64_t i, int count) {
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Iallreduce(MPI_IN_PLACE, data + i, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request),
          "MPI_Iallreduce of the gradient", rank_, size_);
    g_requests.push_back(request);
  });
  bytes_ += n * static_cast<std::int64_t>(sizeof(float));
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
#else
  (void)data;
  (void)n;
#endif
}

void Communicator::progress() {
#ifdef DESCENT_HAVE_MPI
  if (g_requests.empty()) return;
  const auto t0 = Clock::now();
  int done = 0;
  check(MPI_Testall(static_cast<int>(g_requests.size()), g_requests.data(), &done, MPI_STATUSES_IGNORE),
        "MPI_Testall of the gradient's all-reduces", rank_, size_);
  if (done != 0) g_requests.clear();
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
#endif
}

void Communicator::wait_all() {
#ifdef DESCENT_HAVE_MPI
  if (g_requests.empty()) return;
  const auto t0 = Clock::now();
  const int rc = MPI_Waitall(static_cast<int>(g_requests.size()), g_requests.data(), MPI_STATUSES_IGNORE);
  g_requests.clear();
  check(rc, "MPI_Waitall of the gradient's all-reduces", rank_, size_);
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
#endif
}

void Communicator::exchange(int partner, const float* send, float* receive, std::int64_t n) {
#ifdef DESCENT_HAVE_MPI
  const auto t0 = Clock::now();
  check(MPI_Sendrecv(send, static_cast<int>(n), MPI_FLOAT, partner, 7, receive, static_cast<int>(n), MPI_FLOAT, partner,
                     7, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "MPI_Sendrecv of the gradient", rank_, size_);
  bytes_ += n * static_cast<std::int64_t>(sizeof(float));
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
#else
  (void)partner;
  (void)send;
  (void)receive;
  (void)n;
#endif
}

void Communicator::broadcast(std::string& text) {
  if (size_ <= 1) return;
#ifdef DESCENT_HAVE_MPI
  long long n = static_cast<long long>(text.size());
  check(MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast", rank_, size_);
  text.resize(static_cast<std::size_t>(n));
  check(MPI_Bcast(text.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast", rank_, size_);
#else
  (void)text;
#endif
}

void Communicator::barrier() {
  if (size_ <= 1) return;
#ifdef DESCENT_HAVE_MPI
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", rank_, size_);
#endif
}

void check_parallel_config(const TrainConfig& config, nn::Module& net) {
  Communicator& w = Communicator::world();
  const auto* seq = dynamic_cast<nn::Sequential*>(&net);
  bool rng = false;
  if (seq != nullptr) {
    for (std::size_t i = 0; i < seq->size(); ++i) rng = rng || const_cast<nn::Sequential*>(seq)->at(i).has_rng();
  }
  const bool batch_norm = net.min_batch_size() > 1;
  const std::string where = config.source + ": ";
  if (config.deterministic) {
    if (!power_of_two(w.size())) {
      throw ConfigError(where + "deterministic: needs a power-of-two number of processes, not mpirun -np " +
                        std::to_string(w.size()));
    }
    if (batch_norm || rng) {
      throw ConfigError(where + "deterministic: the model has " + (batch_norm ? "batch normalization" : "dropout") +
                        ", whose " + (batch_norm ? "batch statistics" : "masks") +
                        " would depend on the blocks; set deterministic = false");
    }
  }
  if (w.distributed() && batch_norm) {
    throw ConfigError(where + "model: batch normalization is not supported under mpirun (each rank would keep its own "
                      "running statistics); train it in one process");
  }
  if (w.distributed() && config.data.format == "sharded" && is_second_order(config)) {
    throw ConfigError(where + "optimizer: a second-order method needs its whole batch on every rank; under mpirun each "
                      "rank of a sharded set holds only its own shard groups' examples: train it in one process");
  }
  if (needs_batch_gradient(config) && Monitors::any(config.diagnostics)) {
    throw ConfigError(where + "diagnostics: the monitors need the whole batch on one tape: not with deterministic = "
                      "true or under mpirun; turn them off or train without");
  }
}

bool needs_batch_gradient(const TrainConfig& config) {
  return config.deterministic || Communicator::world().distributed();
}

namespace {

// Copies step scalars in, reduces them, and applies an agreed stop request: a SIGINT/SIGTERM
// seen by any rank stops every rank after the same update.
void agree_on_stop(std::vector<double>& figures) {
  const int mine = stop_requested();
  figures.push_back(static_cast<double>(mine));
  Communicator::world().allreduce_sum(figures.data(), static_cast<std::int64_t>(figures.size()));
  const double total = figures.back();
  figures.pop_back();
  if (mine == 0 && total > 0) request_stop(total < 64 ? static_cast<int>(total) : 15);
}

// The forward and backward pass of rows [r0, r1) of x, y: arena.grads() += d(mean loss)/dθ.
void piece(nn::Module& net, autodiff::Tape& tape, const Tensor& x, const Tensor& y, std::int64_t r0, std::int64_t r1,
           Gradient& g) {
  tape.clear();
  const Tensor xs = x.rows(r0, r1), ys = y.rows(r0, r1);
  g.logits = net.forward(tape, tape.constant(xs));
  g.loss = loss::cross_entropy(g.logits, ys);
  tape.backward(g.loss);
  g.loss_value = g.loss.value().item();
}

// The gradient's all-reduce in buckets started during the backward pass. The buckets are cut
// from the arena's layout alone (whole parameters, from the end of the flat buffer down, each
// at least `bucket` elements but the last), so every rank starts the same sequence; bucket j
// starts once every parameter in it and above it is final (the tape's set_param_ready), after
// scaling it by this rank's share of the batch.
class BucketedReduce {
 public:
  BucketedReduce(ParameterArena& arena, double share, std::int64_t bucket)
      : arena_(arena), share_(share), ready_(arena.count(), false) {
    for (std::size_t i = 0; i < arena.count(); ++i) by_offset_.push_back(static_cast<std::int32_t>(i));
    std::sort(by_offset_.begin(), by_offset_.end(), [&](std::int32_t a, std::int32_t b) {
      return arena.entry(ParamId{a}).offset < arena.entry(ParamId{b}).offset;
    });
    std::int64_t hi = arena.size();
    for (std::size_t j = by_offset_.size(); j-- > 0;) {
      const std::int64_t lo = j == 0 ? 0 : arena.entry(ParamId{by_offset_[j]}).offset;
      if (hi - lo >= bucket || j == 0) {
        bounds_.push_back(lo);
        hi = lo;
      }
    }
    if (bounds_.empty() || bounds_.back() != 0) bounds_.push_back(0);
    frontier_pos_ = by_offset_.size();
  }

  // A parameter's gradient is final: start every bucket that is now complete.
  void ready(ParamId id) {
    ready_[static_cast<std::size_t>(id.index)] = true;
    while (frontier_pos_ > 0 && ready_[static_cast<std::size_t>(by_offset_[frontier_pos_ - 1])]) --frontier_pos_;
    const std::int64_t frontier =
        frontier_pos_ == by_offset_.size() ? arena_.size() : arena_.entry(ParamId{by_offset_[frontier_pos_]}).offset;
    while (next_ < bounds_.size() && bounds_[next_] >= frontier) start_next();
    Communicator::world().progress();
  }

  // Starts the buckets not started yet (all of them on a rank without rows) and waits for all.
  void finish() {
    while (next_ < bounds_.size()) start_next();
    Communicator::world().wait_all();
  }

 private:
  void start_next() {
    const std::int64_t lo = bounds_[next_], hi = next_ == 0 ? arena_.size() : bounds_[next_ - 1];
    ++next_;
    if (hi <= lo) return;
    Tensor part = arena_.grads().view(lo, Shape{hi - lo});
    if (share_ != 1.0) kernels::axpby(share_, part, 0.0, part);
    Communicator::world().start_allreduce_sum(part.data<float>(), hi - lo);
  }

  ParameterArena& arena_;
  double share_;
  std::vector<bool> ready_;
  std::vector<std::int32_t> by_offset_;  // parameter indices by offset
  std::vector<std::int64_t> bounds_;     // bucket j: [bounds_[j], bounds_[j-1] or size), from the top down
  std::size_t frontier_pos_ = 0;         // by_offset_[frontier_pos_..] are all final
  std::size_t next_ = 0;                 // the next bucket to start
};

// The rows of the batch rank r of p computes: [b r / p, b (r+1) / p), or with shard groups
// (pieces: G + 1 offsets of the groups' examples in the batch) the rows of its own groups
// [r G / p, (r+1) G / p), the only rows it has read (data/shards.hpp).
std::pair<std::int64_t, std::int64_t> rank_rows(std::int64_t b, std::span<const std::int64_t> pieces, std::int64_t r,
                                                std::int64_t p) {
  if (pieces.empty()) return {b * r / p, b * (r + 1) / p};
  const auto g = static_cast<std::int64_t>(pieces.size()) - 1;
  if (g % p != 0 || pieces.back() != b) throw ShapeError("batch_gradient: the batch's shard groups do not fit the ranks");
  return {pieces[static_cast<std::size_t>(g * r / p)], pieces[static_cast<std::size_t>(g * (r + 1) / p)]};
}

// Each rank a contiguous range of rows; the local mean gradient scaled by its share, summed:
// one all-reduce after the backward pass, or (bucket > 0 elements, more than one rank)
// buckets started during it.
Gradient plain_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                        const Tensor& x, const Tensor& y, std::int64_t k, std::int64_t bucket,
                        std::span<const std::int64_t> pieces) {
  Communicator& w = Communicator::world();
  const std::int64_t b = y.dim(0);
  const auto [r0, r1] = rank_rows(b, pieces, w.rank(), w.size());
  arena.zero_grad();
  optimizer.prepare(arena, k);
  Gradient g;
  std::vector<double> figures = {0.0, 0.0};
  const double share = static_cast<double>(r1 - r0) / static_cast<double>(b);
  if (bucket > 0 && w.distributed()) {
    BucketedReduce reduce(arena, share, bucket);
    if (r1 > r0) {
      tape.set_param_ready([&reduce](ParamId id) { reduce.ready(id); });
      struct Unhook {
        autodiff::Tape& tape;
        ~Unhook() { tape.set_param_ready({}); }
      } unhook{tape};
      piece(net, tape, x, y, r0, r1, g);
      figures = {g.loss_value * share, static_cast<double>(loss::count_errors(g.logits.value(), y.rows(r0, r1)))};
    }
    reduce.finish();
  } else {
    if (r1 > r0) {
      piece(net, tape, x, y, r0, r1, g);
      kernels::axpby(share, arena.grads(), 0.0, arena.grads());
      figures = {g.loss_value * share, static_cast<double>(loss::count_errors(g.logits.value(), y.rows(r0, r1)))};
    }
    w.allreduce_sum(arena.grads().data<float>(), arena.size());
  }
  agree_on_stop(figures);
  g.loss_value = figures[0];
  g.errors = static_cast<std::int64_t>(figures[1]);
  g.grad_norm = std::sqrt(kernels::squares_in_lanes(arena.grads()));  // the trainer's order (tensor/fused_sums.hpp)
  return g;
}

// Fixed blocks, a fixed tree (see the header). The batch is G pieces (the shard groups'
// examples, pieces: G + 1 offsets; without them one piece, the whole batch), each cut into
// blocks of `block` rows; every piece gets S slots (S the next power of two of the most
// blocks any piece has), so slot s = g S + j is block j of piece g (absent past the piece's
// end) and the tree has T = G S leaves. Rank r owns slots [r T / p, (r+1) T / p): with shard
// groups exactly the slots of its own groups (p divides G), the rows it has read.
Gradient deterministic_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer,
                                autodiff::Tape& tape, const Tensor& x, const Tensor& y, std::int64_t k,
                                std::int64_t block, std::span<const std::int64_t> pieces) {
  Communicator& w = Communicator::world();
  const std::int64_t b = y.dim(0), n = arena.size();
  std::vector<std::int64_t> bounds(pieces.begin(), pieces.end());
  if (bounds.empty()) bounds = {0, b};
  const auto groups = static_cast<std::int64_t>(bounds.size()) - 1;
  std::int64_t most = 1;
  for (std::int64_t g = 0; g < groups; ++g) {
    const std::int64_t rows = bounds[static_cast<std::size_t>(g) + 1] - bounds[static_cast<std::size_t>(g)];
    most = std::max(most, (rows + block - 1) / block);
  }
  const std::int64_t per_piece = next_power_of_two(most);
  const std::int64_t slots = groups * per_piece;
  const std::int64_t p = w.size(), r = w.rank();
  if (!power_of_two(slots) || (!pieces.empty() && (groups % p != 0 || bounds.back() != b)))
    throw ShapeError("batch_gradient: the batch's shard groups do not fit the ranks and the tree");
  // Slot s belongs to rank s * p / slots: a whole aligned subtree per rank (or one leaf, or
  // none, when there are fewer slots than ranks).
  std::int64_t s0 = 0, s1 = 0;
  {
    bool first = true;
    for (std::int64_t s = 0; s < slots; ++s) {
      if (s * p / slots != r) continue;
      if (first) s0 = s, first = false;
      s1 = s + 1;
    }
  }
  const bool kept_determinism = kernels::deterministic_products();
  kernels::set_deterministic_products(true);
  optimizer.prepare(arena, k);
  Gradient g;
  std::vector<double> figures(static_cast<std::size_t>(2 * slots), 0.0);
  // Slot s's rows, [e0, e1): empty when the block lies past its piece's end.
  const auto rows_of = [&](std::int64_t s) {
    const auto piece = static_cast<std::size_t>(s / per_piece);
    const std::int64_t e0 = std::min(bounds[piece + 1], bounds[piece] + (s % per_piece) * block);
    return std::pair{e0, std::min(bounds[piece + 1], e0 + block)};
  };
  // A leaf: its block's mean gradient scaled by its share of the batch (undefined when absent).
  const auto leaf = [&](std::int64_t s) {
    const auto [e0, e1] = rows_of(s);
    if (e1 <= e0) return Tensor();
    arena.zero_grad();
    piece(net, tape, x, y, e0, e1, g);
    const double share = static_cast<double>(e1 - e0) / static_cast<double>(b);
    Tensor t = arena.grads().clone();
    kernels::axpby(share, t, 0.0, t);
    figures[static_cast<std::size_t>(2 * s)] = g.loss_value * static_cast<double>(e1 - e0);
    figures[static_cast<std::size_t>(2 * s + 1)] = static_cast<double>(loss::count_errors(g.logits.value(), y.rows(e0, e1)));
    return t;
  };
  // The subtree over slots [lo, hi) (a power of two, aligned), depth first: left + right,
  // an absent side passing the other through. At most log2(hi - lo) + 1 sums held at once.
  const auto subtree = [&](const auto& self, std::int64_t lo, std::int64_t hi) -> Tensor {
    if (hi - lo == 1) return leaf(lo);
    const std::int64_t mid = lo + (hi - lo) / 2;
    Tensor left = self(self, lo, mid);
    Tensor right = self(self, mid, hi);
    if (!left.defined()) return right;
    if (right.defined()) kernels::axpby(1.0, right, 1.0, left);
    return left;
  };
  Tensor mine = s1 > s0 ? subtree(subtree, s0, s1) : Tensor();
  kernels::set_deterministic_products(kept_determinism);
  // Recursive doubling over the ranks: at distance d, ranks r and r ^ d add their subtrees.
  float* out = arena.grads().data<float>();
  if (mine.defined()) {
    std::copy(mine.data<float>(), mine.data<float>() + n, out);
  }
  bool present = mine.defined();
  if (p > 1) {
    std::vector<float> other(static_cast<std::size_t>(n));
    for (std::int64_t d = 1; d < p; d *= 2) {
      const int partner = static_cast<int>(r ^ d);
      float flag_out = present ? 1.0f : 0.0f, flag_in = 0.0f;
      w.exchange(partner, &flag_out, &flag_in, 1);
      w.exchange(partner, out, other.data(), n);
      if (flag_in != 0.0f) {
        if (present) {
          for (std::int64_t i = 0; i < n; ++i) out[i] = out[i] + other[static_cast<std::size_t>(i)];
        } else {
          std::copy(other.begin(), other.end(), out);
        }
        present = true;
      }
    }
  }
  agree_on_stop(figures);  // each entry comes from one rank: the sum is exact
  double loss_sum = 0.0;
  std::int64_t errors = 0;
  for (std::int64_t s = 0; s < slots; ++s) {
    loss_sum += figures[static_cast<std::size_t>(2 * s)];
    errors += static_cast<std::int64_t>(figures[static_cast<std::size_t>(2 * s + 1)]);
  }
  g.loss_value = loss_sum / static_cast<double>(b);
  g.errors = errors;
  g.grad_norm = std::sqrt(kernels::squares_in_lanes(arena.grads()));  // the trainer's order (tensor/fused_sums.hpp)
  return g;
}

}  // namespace

Gradient batch_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                        const Tensor& x, const Tensor& y, std::int64_t k, const TrainConfig& config,
                        std::span<const std::int64_t> pieces) {
  if (arena.dtype() != DType::f32) throw ConfigError(config.source + ": deterministic / mpirun: float32 models only");
  if (config.deterministic)
    return deterministic_gradient(net, arena, optimizer, tape, x, y, k, config.deterministic_block, pieces);
  return plain_gradient(net, arena, optimizer, tape, x, y, k, config.allreduce_bucket_kb * 1024 / 4, pieces);
}

Evaluation evaluate_shared(nn::Module& net, const data::Split& split, std::int64_t batch) {
  Communicator& w = Communicator::world();
  if (split.stream && split.stream->groups() > 1) {  // shard groups: chunks per group, by the group's owner
    const data::ShardStream& s = *split.stream;
    std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
    std::size_t c0 = 0, c1 = 0;
    for (std::int64_t g = 0; g < s.groups(); ++g) {
      if (g == s.first_group()) c0 = chunks.size();
      for (std::int64_t b0 = s.group_start(g); b0 < s.group_start(g + 1); b0 += batch)
        chunks.emplace_back(b0, std::min(s.group_start(g + 1), b0 + batch));
      if (g + 1 == s.end_group()) c1 = chunks.size();
    }
    std::vector<double> sums(2 * chunks.size(), 0.0);
    evaluate_ranges(net, split, std::span(chunks).subspan(c0, c1 - c0), sums.data() + 2 * c0);
    w.allreduce_figures(sums.data(), static_cast<std::int64_t>(sums.size()));  // nothing to do in one process
    return evaluation_from_chunks(sums, split.size());
  }
  if (!w.distributed()) return evaluate(net, split, batch);
  const std::int64_t n = split.size();
  if (n == 0) return Evaluation{};
  const std::int64_t chunks = (n + batch - 1) / batch;
  const std::int64_t c0 = chunks * w.rank() / w.size(), c1 = chunks * (w.rank() + 1) / w.size();
  std::vector<double> sums(static_cast<std::size_t>(2 * chunks), 0.0);
  evaluate_chunks(net, split, batch, c0, c1, sums.data() + 2 * c0);
  // Each entry is non-zero on one rank at most: the sum over ranks is exact.
  w.allreduce_figures(sums.data(), static_cast<std::int64_t>(sums.size()));
  return evaluation_from_chunks(sums, n);
}

namespace {
char g_stop_message[2048] = {};
std::atomic<bool> g_stop_message_set{false};
}  // namespace

const char* distributed_stop_message() noexcept {
  return g_stop_message_set.load(std::memory_order_acquire) ? g_stop_message : nullptr;
}

void set_stop_message(const std::filesystem::path& run_dir) {
  Communicator& w = Communicator::world();
  if (!w.distributed()) return;
  const std::string p = std::to_string(w.size());
  const std::string text =
      "\ndescent: rank " + std::to_string(w.rank()) + " of " + p +
      " got a stop signal (mpirun sends SIGTERM to every rank when one rank has died or the job is stopped): if "
      "every rank is alive they all stop after the current step and write a checkpoint; otherwise the last "
      "checkpoint in " + run_dir.string() + " is intact. Continue with: mpirun -np " + p + " descent resume " +
      run_dir.string() + "\n";
  const std::size_t n = std::min(text.size(), sizeof g_stop_message - 1);
  std::copy(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(n), g_stop_message);
  g_stop_message[n] = '\0';
  g_stop_message_set.store(true, std::memory_order_release);
}

std::filesystem::path worker_scratch_dir() {
  const char* tmp = std::getenv("TMPDIR");
  const std::filesystem::path base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  return base / ("descent-rank" + std::to_string(Communicator::world().rank()) + "-" + std::to_string(::getpid()));
}

}  // namespace descent::train
