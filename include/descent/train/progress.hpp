#pragma once
// The progress display of long work: a bar with the ETA redrawn in place on a terminal, plain
// lines otherwise (docs/progress.md shows both).
//
//   Progress p(&std::cerr, "auto", epochs, steps_per_epoch);
//   p.step(epoch, position, running_loss, running_accuracy);  // redraws the bar (10 per second at most)
//   p.line("epoch 1/30 ...");                                  // a line that stays
//
// The bar fits the terminal's width: it is never longer than the width less one column (so
// it never wraps, and "\r" always returns to its start), it shrinks its gauge and then drops
// its rightmost fields when the width is small, and it clears what an earlier, longer bar left
// ("\033[K"). Lines that stay are wrapped at field boundaries ("  ") to the same width in bar
// mode.
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

  // The width in columns the bar and the lines fit. 0 (the default): the terminal's, asked at
  // each redraw (TIOCGWINSZ on standard error, else $COLUMNS, else 80); > 0: that width.
  void set_columns(int columns) { columns_ = columns; }
  // Early stopping (or anything else) may end the run before its last epoch: the ETA is then
  // the time to the end of the last epoch, the latest possible end, and the bar says so
  // ("ETA <=").
  void set_eta_is_upper_bound(bool upper) { eta_upper_ = upper; }

  // Position `position` of `steps_per_epoch` in epoch `epoch` (1-based) of `epochs`, with the
  // epoch's running loss and accuracy. Draws only in bar mode.
  void step(std::int64_t epoch, std::int64_t position, double loss, double accuracy);
  // A line that stays (it clears the bar first).
  void line(const std::string& text);

  // Whether this display shows anything at all (false for mode "none" or no stream).
  bool shows() const { return out_ != nullptr; }
  bool bar() const { return bar_; }

  // The bar's text for these figures in `columns` columns (at most columns - 1 characters),
  // with `eta_seconds` < 0 for an ETA not known yet. Exposed for tests.
  std::string bar_text(std::int64_t epoch, std::int64_t position, double loss, double accuracy, double eta_seconds,
                       int columns) const;

 private:
  using Clock = std::chrono::steady_clock;
  int width() const;
  std::ostream* out_;
  std::int64_t epochs_, steps_per_epoch_;
  bool bar_ = false, eta_upper_ = false;
  int columns_ = 0;
  Clock::time_point last_;
  // The first step this process drew, and when: the ETA's rate is measured from there (a
  // resumed run does not count the steps of earlier processes as done in no time).
  std::int64_t first_step_ = -1;
  Clock::time_point first_time_;
};

}  // namespace descent::train
