#include "io/dtype.hpp"

#include <bit>
#include <cmath>
#include <cstring>

#include "varps/error.hpp"

namespace varps {

// Checkpoints are little-endian; reading them by memcpy relies on the host
// being little-endian too.
static_assert(std::endian::native == std::endian::little, "varps assumes a little-endian host");

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16: return 2;
    case DType::I8:
    case DType::U8:
    case DType::Bool: return 1;
  }
  return 1;
}

const char* format_name(CheckpointFormat f) {
  switch (f) {
    case CheckpointFormat::TorchZip: return "pytorch-zip";
    case CheckpointFormat::Safetensors: return "safetensors";
  }
  return "?";
}

namespace io {

std::optional<DType> dtype_from_name(std::string_view name) {
  static constexpr DType all[] = {DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64,
                                  DType::I32, DType::I16, DType::I8,  DType::U8,   DType::Bool};
  for (DType d : all) {
    if (name == dtype_name(d)) return d;
  }
  return std::nullopt;
}

bool is_floating(DType d) { return d == DType::F32 || d == DType::F64 || d == DType::F16 || d == DType::BF16; }

namespace {

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float32.
    float v = std::ldexp(static_cast<float>(mant), -24);
    return (sign != 0) ? -v : v;
  }
  uint32_t bits = (exp == 0x1f) ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112u) << 23) | (mant << 13));
  return std::bit_cast<float>(bits);
}

template <typename T>
void widen_ints(const uint8_t* src, size_t n, int64_t* dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<int64_t>(load<T>(src + i * sizeof(T)));
}

}  // namespace

void convert_to_f32(DType from, const uint8_t* src, size_t n, float* dst) {
  switch (from) {
    case DType::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load<double>(src + 8 * i));
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) dst[i] = half_to_float(load<uint16_t>(src + 2 * i));
      return;
    case DType::BF16:
      // bfloat16 is the top half of a float32.
      for (size_t i = 0; i < n; ++i) {
        dst[i] = std::bit_cast<float>(static_cast<uint32_t>(load<uint16_t>(src + 2 * i)) << 16);
      }
      return;
    default: VARPS_CHECK(false, std::string("convert_to_f32 from ") + dtype_name(from));
  }
}

void convert_to_i64(DType from, const uint8_t* src, size_t n, int64_t* dst) {
  switch (from) {
    case DType::I64: std::memcpy(dst, src, n * sizeof(int64_t)); return;
    case DType::I32: widen_ints<int32_t>(src, n, dst); return;
    case DType::I16: widen_ints<int16_t>(src, n, dst); return;
    case DType::I8: widen_ints<int8_t>(src, n, dst); return;
    case DType::U8: widen_ints<uint8_t>(src, n, dst); return;
    case DType::Bool:
      // Any non-zero byte is true, as in PyTorch.
      for (size_t i = 0; i < n; ++i) dst[i] = src[i] != 0 ? 1 : 0;
      return;
    default: VARPS_CHECK(false, std::string("convert_to_i64 from ") + dtype_name(from));
  }
}

}  // namespace io
}  // namespace varps
