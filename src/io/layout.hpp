#pragma once
// Strided tensor layouts as PyTorch pickles describe them (sizes and strides
// in elements), checked for overflow before anything is allocated or read.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "varps/tensor.hpp"

namespace varps::io {

std::vector<int64_t> contiguous_strides(const Shape& shape);
bool is_contiguous(const Shape& shape, const std::vector<int64_t>& strides);

// Number of elements from the first element to one past the furthest one
// (0 for a tensor with no elements). nullopt when the layout is invalid:
// rank mismatch, a negative size or stride, or any product or sum (numel
// included) that overflows int64.
std::optional<uint64_t> strided_extent(const Shape& shape, const std::vector<int64_t>& strides);

// Copies a strided tensor (elem_size bytes per element, `src` pointing at its
// first element) into row-major order at `dst`. The layout must have passed
// strided_extent.
void gather_strided(const uint8_t* src, const Shape& shape, const std::vector<int64_t>& strides, size_t elem_size,
                    uint8_t* dst);

}  // namespace varps::io
