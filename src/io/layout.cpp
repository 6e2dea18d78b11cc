#include "io/layout.hpp"

#include <cstring>

namespace varps::io {

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    // Saturate rather than overflow; such shapes are refused by strided_extent.
    if (__builtin_mul_overflow(s, shape[i] > 0 ? shape[i] : 1, &s)) s = INT64_MAX;
  }
  return strides;
}

bool is_contiguous(const Shape& shape, const std::vector<int64_t>& strides) {
  if (shape.size() != strides.size()) return false;
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 0) return true;  // no elements: any layout reads nothing
    // A size-1 dimension is never stepped over, so its stride is irrelevant
    // (PyTorch itself produces arbitrary strides there).
    if (shape[i] != 1 && strides[i] != expected) return false;
    if (__builtin_mul_overflow(expected, shape[i], &expected)) return false;
  }
  return true;
}

std::optional<uint64_t> strided_extent(const Shape& shape, const std::vector<int64_t>& strides) {
  if (shape.size() != strides.size()) return std::nullopt;
  int64_t count = 1;
  int64_t last = 0;  // offset of the furthest element
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0 || strides[i] < 0) return std::nullopt;
    if (__builtin_mul_overflow(count, shape[i], &count)) return std::nullopt;
    int64_t span = 0;
    if (shape[i] > 0 &&
        (__builtin_mul_overflow(shape[i] - 1, strides[i], &span) || __builtin_add_overflow(last, span, &last))) {
      return std::nullopt;
    }
  }
  if (count == 0) return uint64_t{0};
  return static_cast<uint64_t>(last) + 1;
}

void gather_strided(const uint8_t* src, const Shape& shape, const std::vector<int64_t>& strides, size_t elem_size,
                    uint8_t* dst) {
  const size_t rank = shape.size();
  for (int64_t d : shape) {
    if (d == 0) return;
  }
  if (rank == 0) {
    std::memcpy(dst, src, elem_size);
    return;
  }
  // Odometer over all but the innermost dimension; the innermost runs as a
  // plain loop, which is where the time goes.
  std::vector<int64_t> index(rank, 0);
  const int64_t inner = shape[rank - 1];
  const size_t inner_step = static_cast<size_t>(strides[rank - 1]) * elem_size;
  while (true) {
    int64_t base = 0;
    for (size_t i = 0; i + 1 < rank; ++i) base += index[i] * strides[i];
    const uint8_t* p = src + static_cast<size_t>(base) * elem_size;
    for (int64_t j = 0; j < inner; ++j) {
      std::memcpy(dst, p, elem_size);
      dst += elem_size;
      p += inner_step;
    }
    size_t d = rank - 1;
    while (d > 0) {
      --d;
      if (++index[d] < shape[d]) break;
      index[d] = 0;
      if (d == 0) return;
    }
    if (rank == 1) return;
  }
}

}  // namespace varps::io
