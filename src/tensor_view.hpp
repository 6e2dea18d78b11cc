#pragma once
// Typed views: what the backend ops take. A view is a pointer with its
// element type (the C++ type), its shape (up to four dimensions, row-major),
// the distance between its rows where it is a slice of a wider array, and
// where the memory lives. An op checks its views against each other once, at
// its entry (check_view / expect_dims), so a swapped dimension or a host
// pointer where device memory belongs fails there, with the op's name,
// instead of reading out of bounds.
//
// Arrays a backend stores as it chooses have element types of their own,
// declared and never defined, so no code outside the backend can index them
// or slice them as floats: MatrixElement for the weights of products and
// convolutions (upload_matrix: float32, bf16/fp16, or packed panels), and
// KvElement for the KV cache (float32 or bf16/fp16).
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "varps/error.hpp"

namespace varps {

enum class Memory : uint8_t { Backend, Host };

struct MatrixElement;
struct KvElement;

template <typename T>
struct View {
  T* data = nullptr;
  int rank = 0;
  std::array<int64_t, 4> dims{};
  // Elements from one row (one index of every dimension but the last) to
  // the next; the last dimension when contiguous.
  int64_t row_stride = 0;
  Memory memory = Memory::Backend;

  // Dimension i; negative i counts from the end.
  int64_t dim(int i) const { return dims[static_cast<size_t>(i < 0 ? rank + i : i)]; }
  int64_t cols() const { return rank > 0 ? dims[static_cast<size_t>(rank - 1)] : 1; }
  int64_t rows() const {
    int64_t r = 1;
    for (int i = 0; i + 1 < rank; ++i) r *= dims[static_cast<size_t>(i)];
    return r;
  }
  int64_t numel() const { return rows() * cols(); }
  bool empty() const { return data == nullptr; }
  bool contiguous() const { return row_stride == cols(); }

  // A view of mutable elements is also one of constant elements.
  template <typename U = T, typename = std::enable_if_t<!std::is_const_v<U>>>
  operator View<const U>() const {
    return {data, rank, dims, row_stride, memory};
  }
};

// A view of p with these dimensions; rows `row_stride` elements apart (0:
// contiguous).
template <typename T>
View<T> view(T* p, std::initializer_list<int64_t> dims, int64_t row_stride = 0, Memory memory = Memory::Backend) {
  if (dims.size() > 4) throw Error("a view has at most 4 dimensions, not " + std::to_string(dims.size()));
  View<T> v;
  v.data = p;
  for (int64_t d : dims) v.dims[static_cast<size_t>(v.rank++)] = d;
  v.row_stride = row_stride > 0 ? row_stride : v.cols();
  v.memory = memory;
  return v;
}

// A view of host memory (an op's parameters that travel with its launch).
template <typename T>
View<const T> host_view(const T* p, std::initializer_list<int64_t> dims) {
  return view(p, dims, 0, Memory::Host);
}

// A float32 array used as the weight operand of a product or convolution:
// every backend takes plain float32 there as well as what upload_matrix()
// made.
inline View<const MatrixElement> as_matrix(View<const float> v) {
  return {reinterpret_cast<const MatrixElement*>(v.data), v.rank, v.dims, v.row_stride, v.memory};
}

// "[2, 30, 64]"
template <typename T>
std::string dims_text(const View<T>& v) {
  std::string s = "[";
  for (int i = 0; i < v.rank; ++i) s += (i ? ", " : "") + std::to_string(v.dims[static_cast<size_t>(i)]);
  return s + "]";
}

// Throws varps::Error "<op>: <what>" unless ok.
inline void check_view(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string(op) + ": " + what);
}

// Throws unless v is in backend memory and has exactly these dimensions
// (and, unless it may be strided, no gaps between its rows).
template <typename T>
void expect_dims(const char* op, const char* name, const View<T>& v, std::initializer_list<int64_t> dims,
                 bool strided = false) {
  bool shape_ok = v.rank == static_cast<int>(dims.size()) && v.data != nullptr;
  int i = 0;
  for (int64_t d : dims) shape_ok = shape_ok && v.dims[static_cast<size_t>(i++)] == d;
  if (!shape_ok) {
    std::string want = "[";
    i = 0;
    for (int64_t d : dims) want += (i++ ? ", " : "") + std::to_string(d);
    check_view(false, op,
               std::string(name) + " is " + (v.data ? dims_text(v) : "missing") + ", expected " + want + "]");
  }
  if (strided ? v.row_stride < v.cols() : !v.contiguous())
    check_view(false, op,
               std::string(name) + " has rows " + std::to_string(v.row_stride) + " elements apart, expected " +
                   (strided ? "at least " : "") + std::to_string(v.cols()));
  if (v.memory != Memory::Backend) check_view(false, op, std::string(name) + " is host memory, expected the backend's");
}

}  // namespace varps
