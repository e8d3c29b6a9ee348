#pragma once
// Early stopping (Goodfellow et al. 2016, section 7.8, and the chapter's point in 8.1.3:
// training halts while the gradient is still large). Watches a validation metric to be
// minimized; an epoch improves when metric < best - min_delta. After `patience` epochs
// without improvement it says stop; the caller restores the parameters of best_epoch().
#include <cstdint>
#include <limits>

namespace descent::train {

class EarlyStopping {
 public:
  EarlyStopping(std::int64_t patience, double min_delta, bool enabled = true)
      : patience_(patience), min_delta_(min_delta), enabled_(enabled) {}

  // Records the metric of `epoch`; returns true when training should stop now.
  // improved() tells whether this epoch became the best (save its parameters).
  bool update(std::int64_t epoch, double metric) {
    improved_ = metric < best_ - min_delta_;
    if (improved_) {
      best_ = metric;
      best_epoch_ = epoch;
      bad_epochs_ = 0;
      return false;
    }
    ++bad_epochs_;
    return enabled_ && bad_epochs_ >= patience_;
  }

  // Puts back a state read from best(), best_epoch() and bad_epochs() (a checkpoint).
  void restore(double best, std::int64_t best_epoch, std::int64_t bad_epochs) {
    best_ = best;
    best_epoch_ = best_epoch;
    bad_epochs_ = bad_epochs;
    improved_ = false;
  }

  bool improved() const { return improved_; }
  double best() const { return best_; }
  std::int64_t best_epoch() const { return best_epoch_; }
  std::int64_t bad_epochs() const { return bad_epochs_; }

 private:
  std::int64_t patience_;
  double min_delta_;
  bool enabled_;
  double best_ = std::numeric_limits<double>::infinity();
  std::int64_t best_epoch_ = 0;
  std::int64_t bad_epochs_ = 0;
  bool improved_ = false;
};

}  // namespace descent::train
