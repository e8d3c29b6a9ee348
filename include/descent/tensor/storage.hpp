#pragma once
// Storage for tensors, from a caching allocator.
//
// Buffers are 64-byte aligned. A freed buffer goes back to a per-size free list and is
// handed out again for the next request of the same byte size: a training step asks for
// the same sizes every time, so after the first step it runs without malloc or page
// faults. The cache is bounded (release_cached_storage() empties it).
#include <cstddef>
#include <memory>

namespace descent {

struct Storage {
  void* data = nullptr;
  std::size_t bytes = 0;
  bool owned = true;
  ~Storage();
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

std::shared_ptr<Storage> allocate_storage(std::size_t bytes);
void release_cached_storage();
std::size_t cached_storage_bytes();

}  // namespace descent
