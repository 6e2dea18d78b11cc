#pragma once
// Work memory of the CPU ops (bands of columns, transformed weights, tile
// groups), kept between calls: a fresh buffer of megabytes costs a page
// fault and the kernel's clearing per 4 KiB page on every call. What the
// pool holds is bounded by the largest demand of the calls at once, which
// the backend's workspace_bytes() counts.
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

namespace varps::cpu {

class ScratchPool {
 public:
  // A buffer taken from the pool, returned to it when the lease ends.
  class Lease {
   public:
    Lease() = default;
    Lease(ScratchPool* pool, float* data, size_t capacity) : pool_(pool), data_(data), capacity_(capacity) {}
    Lease(Lease&& o) noexcept { *this = std::move(o); }
    Lease& operator=(Lease&& o) noexcept {
      if (this != &o) {
        give_back();
        pool_ = std::exchange(o.pool_, nullptr);
        data_ = std::exchange(o.data_, nullptr);
        capacity_ = std::exchange(o.capacity_, 0);
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { give_back(); }
    float* data() const { return data_; }

   private:
    void give_back() {
      if (pool_) pool_->put(data_, capacity_);
      pool_ = nullptr;
    }
    ScratchPool* pool_ = nullptr;
    float* data_ = nullptr;
    size_t capacity_ = 0;
  };

  ScratchPool() = default;
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;
  ~ScratchPool() { clear(); }

  // At least `floats` floats, 64-byte aligned, contents undefined: the
  // smallest free buffer that holds them and is not more than twice as
  // large (so small leases leave the large buffers to large ones), else a
  // new one.
  Lease take(size_t floats) {
    const size_t want = std::max<size_t>(16, (floats + 15) / 16 * 16);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = free_.lower_bound(want);
      if (it != free_.end() && it->first <= 2 * want) {
        const auto [capacity, data] = *it;
        free_.erase(it);
        return Lease(this, data, capacity);
      }
    }
    auto* data = static_cast<float*>(std::aligned_alloc(64, want * sizeof(float)));
    if (!data) throw std::bad_alloc();
    return Lease(this, data, want);
  }

  // Frees the buffers not leased.
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [capacity, data] : free_) std::free(data);
    free_.clear();
  }

 private:
  void put(float* data, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace(capacity, data);
  }

  std::mutex mutex_;
  std::multimap<size_t, float*> free_;
};

}  // namespace varps::cpu
