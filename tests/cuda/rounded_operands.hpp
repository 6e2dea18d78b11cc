#pragma once
// Operands in a kernel's storage precision (bf16/fp16), and the float
// values they hold, which the CPU reference is given.
#include <vector>

namespace varps::testing {

template <typename T>
std::vector<T> to_precision(const std::vector<float>& v) {
  std::vector<T> out;
  out.reserve(v.size());
  for (float x : v) out.push_back(T(x));
  return out;
}

template <typename T>
std::vector<float> rounded(const std::vector<float>& v) {
  std::vector<float> out;
  out.reserve(v.size());
  for (float x : v) out.push_back(static_cast<float>(T(x)));
  return out;
}

}  // namespace varps::testing
