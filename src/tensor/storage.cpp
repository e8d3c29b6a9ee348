#include "descent/tensor/storage.hpp"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace descent {
namespace {

// Sizes are rounded up to 64 bytes; at most `cache_limit` bytes are kept in free lists.
constexpr std::size_t alignment = 64;
constexpr std::size_t cache_limit = std::size_t{2} << 30;

struct Cache {
  std::mutex mutex;
  std::unordered_map<std::size_t, std::vector<void*>> free_lists;
  std::size_t cached_bytes = 0;

  ~Cache() {
    for (auto& [bytes, list] : free_lists) {
      for (void* p : list) std::free(p);
    }
  }
};

Cache& cache() {
  static Cache* instance = new Cache();  // never destroyed: tensors may outlive static destruction
  return *instance;
}

std::size_t round_up(std::size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }

}  // namespace

Storage::~Storage() {
  if (!owned || data == nullptr) return;
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  if (c.cached_bytes + bytes <= cache_limit) {
    c.free_lists[bytes].push_back(data);
    c.cached_bytes += bytes;
  } else {
    std::free(data);
  }
}

std::shared_ptr<Storage> allocate_storage(std::size_t requested) {
  const std::size_t bytes = round_up(requested == 0 ? 1 : requested);
  auto storage = std::make_shared<Storage>();
  storage->bytes = bytes;
  {
    Cache& c = cache();
    std::lock_guard lock(c.mutex);
    auto it = c.free_lists.find(bytes);
    if (it != c.free_lists.end() && !it->second.empty()) {
      storage->data = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= bytes;
      return storage;
    }
  }
  storage->data = std::aligned_alloc(alignment, bytes);
  if (storage->data == nullptr) throw std::bad_alloc();
  return storage;
}

void release_cached_storage() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  for (auto& [bytes, list] : c.free_lists) {
    for (void* p : list) std::free(p);
  }
  c.free_lists.clear();
  c.cached_bytes = 0;
}

std::size_t cached_storage_bytes() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.cached_bytes;
}

}  // namespace descent
