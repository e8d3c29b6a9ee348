#include "descent/init/rng.hpp"

#include <bit>
#include <cmath>
#include <sstream>

#include "descent/error.hpp"

namespace descent {

std::string Rng::save_state() const {
  std::ostringstream out;
  out << engine_ << ' ' << (has_spare_ ? 1 : 0) << ' ' << std::bit_cast<std::uint64_t>(spare_);
  return out.str();
}

void Rng::load_state(const std::string& state) {
  std::istringstream in(state);
  std::mt19937_64 engine;
  int spare_flag = 0;
  std::uint64_t spare_bits = 0;
  in >> engine >> spare_flag >> spare_bits;
  if (!in || (spare_flag != 0 && spare_flag != 1)) {
    throw Error("Rng::load_state: malformed generator state");
  }
  in >> std::ws;
  if (!in.eof()) throw Error("Rng::load_state: trailing characters after the generator state");
  // An all-zero Mersenne Twister state is a fixed point that yields 0 forever (and would
  // hang normal()); no seeded generator reaches it.
  std::mt19937_64 probe = engine;
  bool all_zero = true;
  for (int i = 0; i < 16 && all_zero; ++i) all_zero = probe() == 0;
  if (all_zero) throw Error("Rng::load_state: degenerate (all-zero) generator state");
  if (spare_flag == 1 && !std::isfinite(std::bit_cast<double>(spare_bits))) {
    throw Error("Rng::load_state: the cached normal value is not finite");
  }
  engine_ = engine;
  has_spare_ = spare_flag == 1;
  spare_ = std::bit_cast<double>(spare_bits);
}

void Rng::throw_empty_range() { throw Error("Rng::below(0): the range [0, 0) is empty"); }

}  // namespace descent
