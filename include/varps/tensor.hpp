#pragma once
// Host tensors: a shape and a contiguous row-major buffer. Float32 is the
// compute type of the CPU reference; int64 holds token maps and labels.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace varps {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 30, 64]"

template <typename T>
struct HostTensor {
  Shape shape;
  std::vector<T> data;

  HostTensor() = default;
  explicit HostTensor(Shape s) : shape(std::move(s)), data(static_cast<size_t>(numel(shape))) {}
  HostTensor(Shape s, std::vector<T> d) : shape(std::move(s)), data(std::move(d)) {}

  int64_t size() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(size_t i) const { return shape.at(i); }
  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }
};

using Tensor = HostTensor<float>;
using TensorI64 = HostTensor<int64_t>;

}  // namespace varps
