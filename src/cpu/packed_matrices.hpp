#pragma once
// The CPU backend's weights held as panels (cpu/panel_gemm.hpp) rather than
// as uploaded: a linear weight w[N, K] as B panels of x·wᵀ, a convolution
// weight w[Co, Ci, k, k] as A panels of w·columns. The ops find them again
// by the address the handle gives out; an address not found is a plain
// row-major array, packed for the call.
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace varps::cpu {

struct PackedMatrix {
  enum class Role { A, B };
  Role role = Role::B;
  int64_t rows = 0;   // N of a B operand, M of an A operand
  int64_t depth = 0;  // K
  // What the panels hold: floats, bf16 word pairs (cpu/bf16_panels.hpp), or
  // int8 quads with their columns' scales (cpu/int8_panels.hpp).
  enum class Element { F32, Bf16, Int8 };
  Element element = Element::F32;
};

class PackedMatrices {
 public:
  void add(const float* p, const PackedMatrix& m) {
    std::lock_guard<std::mutex> lock(mutex_);
    map_[p] = m;
  }
  void remove(const float* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    map_.erase(p);
  }
  std::optional<PackedMatrix> find(const float* p) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = map_.find(p);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<const float*, PackedMatrix> map_;
};

}  // namespace varps::cpu
