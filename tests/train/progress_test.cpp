// The progress display fits the terminal: in a 70-column terminal no redraw of the bar and no
// line that can be broken is wider than 69 columns, every redraw clears the rest of its row,
// "none" prints nothing, and the ETA says when it is an upper bound (docs/progress.md).
#include "descent/train/progress.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace descent::train {
namespace {

// What a terminal shows, row by row: the output cut at '\r' and '\n', with the "clear to the
// end of the line" sequence taken out. `cleared` counts the redraws ("\r" + text) that hold
// that sequence (before a line, or after the bar's text).
struct Screen {
  std::vector<std::string> pieces;
  int redraws = 0, cleared = 0;
};

Screen split(const std::string& out) {
  Screen s;
  const std::string clear = "\033[K";
  std::string current;
  bool redraw = false;
  auto flush = [&] {
    if (redraw) {
      ++s.redraws;
      if (current.find(clear) != std::string::npos) ++s.cleared;
    }
    std::string text;
    for (std::size_t p = 0; p < current.size();) {
      if (current.compare(p, clear.size(), clear) == 0) {
        p += clear.size();
      } else {
        text += current[p++];
      }
    }
    if (!text.empty()) s.pieces.push_back(text);
    current.clear();
  };
  for (const char c : out) {
    if (c == '\r' || c == '\n') {
      flush();
      redraw = c == '\r';
    } else {
      current += c;
    }
  }
  flush();
  return s;
}

TEST(Progress, TheBarFitsSeventyColumnsAndClearsWhatItLeaves) {
  std::ostringstream out;
  Progress p(&out, "bar", 120, 4690);  // wide numbers: "epoch 117/120", hours of ETA
  p.set_columns(70);
  p.set_eta_is_upper_bound(true);
  for (std::int64_t epoch = 1; epoch <= 120; epoch += 29) {
    for (std::int64_t k = 1; k <= 4690; k += 1171) p.step(epoch, k, 12345.678901, 0.5);
    p.step(epoch, 4690, 0.1234, 0.98765);
    p.line("epoch " + std::to_string(epoch) +
           "/120  train loss 0.4520 error 16.05%  val loss 0.4601 error 16.40%  |g| 1.874  41234 ex/s");
  }
  const Screen s = split(out.str());
  ASSERT_GT(s.redraws, 8);
  EXPECT_EQ(s.cleared, s.redraws) << "a redraw that does not clear its row leaves stale characters";
  for (const std::string& piece : s.pieces) EXPECT_LE(piece.size(), 69u) << "'" << piece << "'";
  // The bar keeps its gauge and figures at 70 columns.
  bool full = false;
  for (const std::string& piece : s.pieces) {
    if (piece.find("[") != std::string::npos && piece.find("ETA <=") != std::string::npos &&
        piece.find("acc") != std::string::npos)
      full = true;
  }
  EXPECT_TRUE(full) << out.str();
}

TEST(Progress, NarrowTerminalsDropFieldsFromTheRight) {
  const Progress p(nullptr, "bar", 30, 391);
  for (int columns = 1; columns <= 200; ++columns) {
    const std::string text = p.bar_text(12, 200, 0.4321, 0.8765, 3725.0, columns);
    EXPECT_LE(text.size(), static_cast<std::size_t>(std::max(1, columns - 1))) << columns << ": " << text;
    const std::string head = "epoch 12/30";
    EXPECT_EQ(text.substr(0, head.size()), head.substr(0, text.size())) << columns << ": " << text;
  }
  // Wide: everything, with the longest gauge (30) half filled; the ETA is 1h02m05s -> 1h02m.
  const std::string wide = p.bar_text(12, 200, 0.4321, 0.8765, 3725.0, 200);
  EXPECT_EQ(wide, "epoch 12/30 [===============               ]  51%  ETA 1h02m  loss 0.4321  acc 87.65%");
  // 50 columns: the gauge and the ETA stay, loss and acc go.
  const std::string narrow = p.bar_text(12, 200, 0.4321, 0.8765, 42.0, 50);
  EXPECT_NE(narrow.find("ETA 42s"), std::string::npos) << narrow;
  EXPECT_EQ(narrow.find("acc"), std::string::npos) << narrow;
  EXPECT_NE(narrow.find("["), std::string::npos) << narrow;
}

TEST(Progress, LinesAreBrokenAtFieldsToTheWidthInBarMode) {
  std::ostringstream out;
  Progress p(&out, "bar", 5, 10);
  p.set_columns(40);
  p.line("epoch 1/5  train loss 0.4520 error 16.05%  val loss 0.4601 error 16.40%  |g| 1.874");
  const Screen s = split(out.str());
  ASSERT_EQ(s.pieces.size(), 4u) << out.str();
  EXPECT_EQ(s.pieces[0], "epoch 1/5");
  EXPECT_EQ(s.pieces[1], "  train loss 0.4520 error 16.05%");
  EXPECT_EQ(s.pieces[3], "  |g| 1.874");
  // Plain mode (a log file) keeps a line whole.
  std::ostringstream plain_out;
  Progress plain(&plain_out, "plain", 5, 10);
  plain.set_columns(40);
  plain.step(1, 3, 0.5, 0.5);
  plain.line("epoch 1/5  train loss 0.4520 error 16.05%  val loss 0.4601 error 16.40%  |g| 1.874");
  EXPECT_EQ(plain_out.str(), "epoch 1/5  train loss 0.4520 error 16.05%  val loss 0.4601 error 16.40%  |g| 1.874\n");
}

TEST(Progress, NonePrintsNothing) {
  std::ostringstream out;
  Progress p(&out, "none", 3, 10);
  EXPECT_FALSE(p.shows());
  p.step(1, 10, 0.5, 0.5);
  p.line("epoch 1/3");
  EXPECT_EQ(out.str(), "");
}

TEST(Progress, TheEtaSaysWhenItIsAnUpperBound) {
  Progress p(nullptr, "bar", 30, 100);
  EXPECT_NE(p.bar_text(1, 50, 0.5, 0.5, 95.0, 120).find("ETA 1m35s "), std::string::npos);
  EXPECT_NE(p.bar_text(1, 50, 0.5, 0.5, -1.0, 120).find("ETA ? "), std::string::npos);
  p.set_eta_is_upper_bound(true);
  EXPECT_NE(p.bar_text(1, 50, 0.5, 0.5, 95.0, 120).find("ETA <=1m35s "), std::string::npos);
}

}  // namespace
}  // namespace descent::train
