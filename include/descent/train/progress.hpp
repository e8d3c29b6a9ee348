#pragma once
// The progress display of long work: a bar with the ETA redrawn in place on a terminal, plain
// lines otherwise.
//
//   Progress p(&std::cerr, "auto", epochs, steps_per_epoch);
//   p.step(epoch, position, running_loss, running_accuracy);  // redraws the bar (10 per second at most)
//   p.line("epoch 1/30 ...");                                  // a line that stays
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace descent::train {

class Progress {
 public:
  // mode: "auto" (a bar when standard error is a terminal), "bar", "plain" (lines only) or
  // "none" (nothing at all); `out` nullptr: nothing at all.
  Progress(std::ostream* out, const std::string& mode, std::int64_t epochs, std::int64_t steps_per_epoch);

  // Position `position` of `steps_per_epoch` in epoch `epoch` (1-based) of `epochs`, with the
  // epoch's running loss and accuracy. Draws only in bar mode.
  void step(std::int64_t epoch, std::int64_t position, double loss, double accuracy);
  // A line that stays (it clears the bar first).
  void line(const std::string& text);

 private:
  using Clock = std::chrono::steady_clock;
  std::ostream* out_;
  std::int64_t epochs_, steps_per_epoch_;
  bool bar_ = false;
  Clock::time_point start_, last_;
};

}  // namespace descent::train
