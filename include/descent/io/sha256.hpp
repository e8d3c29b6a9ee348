#pragma once
// SHA-256 (FIPS 180-4) of a byte string, as 64 lowercase hex digits: what `sha256sum` prints.
// metrics.jsonl's header record gives the digest of the run's config.toml with it.
#include <string>
#include <string_view>

namespace descent::io {

std::string sha256_hex(std::string_view bytes);

}  // namespace descent::io
