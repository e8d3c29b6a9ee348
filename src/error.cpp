#include "descent/error.hpp"

namespace descent {

std::string printable_excerpt(std::string_view text, std::size_t max_bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::size_t cut = text.size();
  if (cut > max_bytes) {
    cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  }
  std::string out;
  out.reserve(cut + 3);
  for (const char c : text.substr(0, cut)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
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

}  // namespace descent
