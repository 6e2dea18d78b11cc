#include "varps/tensor.hpp"

#include "varps/error.hpp"

namespace varps {

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    // A negative or overflowing size would turn into a huge allocation in
    // HostTensor's constructor; refuse it here, where the shape is known.
    if (d < 0) throw Error("negative dimension in shape " + shape_str(shape));
    if (__builtin_mul_overflow(n, d, &n)) throw Error("shape " + shape_str(shape) + " has too many elements");
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace varps
