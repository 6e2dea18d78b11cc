#pragma once
// Element types beyond the public names: parsing the safetensors spelling and
// widening stored elements to the two compute types.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "varps/checkpoint.hpp"

namespace varps::io {

std::optional<DType> dtype_from_name(std::string_view name);  // safetensors spelling
bool is_floating(DType d);

// Converts n little-endian elements of `from` (a floating type) to float32.
void convert_to_f32(DType from, const uint8_t* src, size_t n, float* dst);
// Converts n little-endian elements of `from` (an integer or bool type) to int64.
void convert_to_i64(DType from, const uint8_t* src, size_t n, int64_t* dst);

}  // namespace varps::io
