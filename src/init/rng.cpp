#include "descent/init/rng.hpp"

#include <bit>
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
  engine_ = engine;
  has_spare_ = spare_flag == 1;
  spare_ = std::bit_cast<double>(spare_bits);
}

}  // namespace descent
