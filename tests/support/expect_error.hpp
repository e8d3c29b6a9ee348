#pragma once
// Runs f and fails the current test unless it throws E whose message holds every fragment.
//   testing::expect_error<ShapeError>([&] { autodiff::conv2d(x, w); }, {"conv2d", "[2, 3, 8]"});
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace descent::testing {

template <class E, class F>
void expect_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception (expected one whose message holds '" << (fragments.empty() ? "" : fragments[0])
                  << "')";
  } catch (const E& e) {
    const std::string message = e.what();
    for (const std::string& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos) << message << "\n  lacks: " << fragment;
    }
  }
}

}  // namespace descent::testing
