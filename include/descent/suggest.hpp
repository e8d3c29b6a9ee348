#pragma once
// "Did you mean ...?": the closest of a list of valid names to a misspelled one.
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace descent {

// Levenshtein distance (insertions, deletions, substitutions). Cost: O(|a| |b|).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` within edit distance 2 (the first one on a tie), or "".
// Candidates whose length differs by more than 2 are skipped without computing a distance,
// so a hostile 16 MiB word costs O(number of candidates).
std::string_view closest(std::string_view word, std::span<const std::string_view> candidates);

// "a, b, c": the names joined by ", ".
std::string join(std::span<const std::string_view> names);

}  // namespace descent
