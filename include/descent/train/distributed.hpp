#pragma once
// Data-parallel training over MPI (docs/distributed.md) and the deterministic gradient
// (config key `deterministic`).
//
//   mpirun -np 2 descent train CONFIG.toml
//
// Every process (rank) runs the same training loop on the same data with the same sampler
// (the same seed), so every rank draws the same global minibatch of `sampler.batch_size`
// examples. Each rank computes the gradient of its share of the rows, one all-reduce sums
// the flat gradient buffers (ParameterArena::grads()), and every rank applies the same
// update: the parameters stay identical on every rank. Rank 0 writes the run folder; the
// other ranks train in a private scratch folder that they remove at the end.
//
// A sharded set read in G shard groups (data.shard_groups): rank r reads only its own groups
// [r G / P, (r+1) G / P) and computes the rows of the batch that come from them.
//
// Deterministic mode: the batch is cut into fixed blocks of `deterministic_block` examples,
// each block's gradient is computed on its own (matrix products in fixed tiles, each on one
// thread), and the blocks are added in a fixed binary tree over 2^ceil(log2 blocks) slots.
// A rank owns a whole subtree (P a power of two), the ranks add their subtrees by recursive
// doubling, so the sum is the same tree whatever P and the thread count: bit-identical.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "descent/autodiff/tape.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/train/evaluate.hpp"
#include "descent/train/step.hpp"

namespace descent::train {

struct TrainConfig;

// The process group: MPI's world when this build has MPI and the process was started by
// mpirun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the environment), else one process.
// MPI is initialized on the first call and finalized at exit.
class Communicator {
 public:
  static Communicator& world();
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }

  // In place, over every rank (MPI_Allreduce with MPI_SUM / MPI_MAX).
  void allreduce_sum(float* data, std::int64_t n);
  void allreduce_sum(double* data, std::int64_t n);
  int allreduce_max(int value);
  // allreduce_sum of doubles outside the training steps (evaluations): not in the traffic figures.
  void allreduce_figures(double* data, std::int64_t n);
  // Non-blocking all-reduce (MPI_Iallreduce, sum, in place) of n floats: started now,
  // finished by wait_all(); progress() lets MPI move the started ones meanwhile (OpenMPI
  // moves a non-blocking collective only inside MPI calls). Every rank starts the same
  // sequence of them.
  void start_allreduce_sum(float* data, std::int64_t n);
  void progress();
  void wait_all();
  // Sends n floats to `partner` and receives n from it (MPI_Sendrecv).
  void exchange(int partner, const float* send, float* receive, std::int64_t n);
  void broadcast(std::string& text);  // from rank 0
  void barrier();

  // Traffic of the steps' reductions so far (this rank): payload bytes, seconds (waiting for
  // the other ranks included), and calls (one per training step).
  std::int64_t bytes() const { return bytes_; }
  double seconds() const { return seconds_; }
  std::int64_t calls() const { return calls_; }

 private:
  Communicator();
  int rank_ = 0, size_ = 1;
  std::int64_t bytes_ = 0, calls_ = 0;
  double seconds_ = 0;
};

// True when this build has MPI (DESCENT_MPI, libopenmpi-dev found).
bool built_with_mpi();

// Throws ConfigError when the run cannot go data-parallel / deterministic as configured
// (names the key): deterministic needs a power-of-two number of ranks and a model without
// batch normalization or dropout; P > 1 needs a model without batch normalization.
void check_parallel_config(const TrainConfig& config, nn::Module& net);

// Surrogate and 0-1 loss of `net` on a split like train::evaluate (chunks of `batch`
// examples), the chunks shared out over the ranks (rank r: chunks [C r / P, C (r+1) / P))
// and their sums reduced: every rank gets the same figures, bit-identical to one process's
// (each chunk's figures come from one rank and are added in chunk order). Every rank must call it.
// A sharded training split read in shard groups is cut into chunks group by group, and each
// group's chunks are evaluated by the rank that owns the group (the one that can read it): the
// figures do not depend on the number of ranks either.
Evaluation evaluate_shared(nn::Module& net, const data::Split& split, std::int64_t batch);

// True when the trainer must use batch_gradient (deterministic, or more than one rank).
bool needs_batch_gradient(const TrainConfig& config);

// The gradient of the mean cross-entropy over the whole global batch x [b, d], y [b], on
// every rank, in arena.grads() (identical on every rank): each rank's share (a contiguous
// range of rows, or of blocks when deterministic), one all-reduce, or with
// config.allreduce_bucket_kb > 0 (not deterministic) non-blocking all-reduces of buckets of
// the gradient started from the tape's set_param_ready callback during the backward pass. Gradient::loss_value
// and ::errors cover the whole batch; ::logits and ::loss are this rank's last piece (for
// the callbacks' per-step figures only). Prepares the optimizer's interim point once.
//
// pieces (data::Sampler::pieces(): a sharded set read in G shard groups): G + 1 offsets of
// the groups' examples in the batch. Rank r of P then computes only the rows of its groups
// [r G / P, (r+1) G / P), the only ones it has read (the others hold NaN), and deterministic
// mode cuts each group's rows into its own blocks (docs/distributed.md).
Gradient batch_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                        const Tensor& x, const Tensor& y, std::int64_t k, const TrainConfig& config,
                        std::span<const std::int64_t> pieces = {});

// Under mpirun, what a SIGINT/SIGTERM handler prints (async-signal-safe: a fixed buffer):
// mpirun sends SIGTERM to every rank when one has ended. Null when not distributed or before
// set_stop_message(run_dir) (rank 0, once its run folder is known).
const char* distributed_stop_message() noexcept;
void set_stop_message(const std::filesystem::path& run_dir);

// The run folder rank r > 0 trains in: a private scratch folder under $TMPDIR (or /tmp),
// removed by the caller when the run ends.
std::filesystem::path worker_scratch_dir();

}  // namespace descent::train
