#include "descent/error.hpp"

#include <algorithm>

namespace descent {
namespace {

// The first `cut` bytes of `text`, each byte for which `escape` holds written as \xHH, then
// "..." when bytes were left out.
template <class Escape>
std::string excerpt(std::string_view text, std::size_t cut, Escape escape) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(cut + 3);
  for (const char c : text.substr(0, cut)) {
    const auto u = static_cast<unsigned char>(c);
    if (escape(u)) {
      out += "\\x";
      out += digits[u >> 4];
      out += digits[u & 0xF];
    } else {
      out += c;
    }
  }
  if (cut < text.size()) out += "...";
  return out;
}

}  // namespace

std::string printable_excerpt(std::string_view text, std::size_t max_bytes) {
  std::size_t cut = text.size();
  if (cut > max_bytes) {
    cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  }
  return excerpt(text, cut, [](unsigned char u) { return u < 0x20 || u == 0x7F; });
}

std::string ascii_excerpt(std::string_view text, std::size_t max_bytes) {
  return excerpt(text, std::min(text.size(), max_bytes),
                 [](unsigned char u) { return u < 0x20 || u >= 0x7F || u == '\\'; });
}

}  // namespace descent
