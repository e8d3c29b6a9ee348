#pragma once
// The contract every fuzz target asserts (docs/fuzzing.md): a reader given arbitrary bytes
// either returns a result whose invariants hold or throws one of the library's typed errors,
// with one message that starts with the source name, is one line and stays short. Anything
// else (another exception, a crash, an out-of-bounds access, an oversized allocation) is a
// finding: the target prints what was violated and aborts, and libFuzzer saves the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "descent/error.hpp"

namespace descent::fuzz {

// A message longer than this (after the source name) quotes too much of the input.
inline constexpr std::size_t max_message_bytes = 1024;

[[noreturn]] inline void violated(const std::string& what) {
  std::fprintf(stderr, "fuzz contract violated: %s\n", what.c_str());
  std::abort();
}

inline void require(bool condition, const std::string& what) {
  if (!condition) violated(what);
}

// Whether factor * product(shape) == n, all dimensions non-negative (no overflow possible).
inline bool product_is(const std::vector<std::int64_t>& shape, std::uint64_t factor,
                       std::uint64_t n) {
  bool zero = factor == 0;
  bool overflow = false;
  std::uint64_t product = factor;
  for (const std::int64_t dim : shape) {
    if (dim < 0) return false;
    if (dim == 0) zero = true;
    overflow = overflow || __builtin_mul_overflow(product, static_cast<std::uint64_t>(dim), &product);
  }
  return zero ? n == 0 : !overflow && product == n;
}

// One line, starts with `source`, bounded length.
inline void check_message(const descent::Error& error, const std::string& source) {
  const std::string_view message = error.what();
  require(message.starts_with(source), "message does not start with the source name: " +
                                           std::string(message.substr(0, 200)));
  require(message.size() > source.size() + 2, "message says nothing after the source name");
  require(message.find_first_of("\n\r") == std::string_view::npos,
          "message is not one line: " + std::string(message.substr(0, 200)));
  require(message.size() <= source.size() + max_message_bytes,
          "message is " + std::to_string(message.size()) + " bytes long: " +
              std::string(message.substr(0, 200)) + "...");
}

// Runs `body`; errors of the types listed in Allowed are checked with check_message, any
// other exception is a violation.
template <typename... Allowed, typename Body>
void expect_result_or_error(const std::string& source, Body body) {
  try {
    body();
  } catch (const descent::Error& error) {
    if (!(dynamic_cast<const Allowed*>(&error) || ...)) {
      violated(std::string("unexpected error type for: ") + error.what());
    }
    check_message(error, source);
  } catch (const std::exception& error) {
    violated(std::string("exception outside the library's error types: ") + error.what());
  }
}

}  // namespace descent::fuzz
