#pragma once
// The tensor-core product the bf16/fp16 kernels share: mma.sync m16n8k16
// with float32 accumulation, and the rounding of float32 values into its
// operand registers.
//
// Fragment layouts (PTX ISA, mma.m16n8k16): lane = 4·g + t. A (16×16,
// row-major) holds rows g and g + 8, columns 2t, 2t + 1 and those + 8, as
// a[0] = (g, 2t), a[1] = (g + 8, 2t), a[2] = (g, 2t + 8), a[3] = (g + 8,
// 2t + 8); B (16×8, by column) column g, rows 2t, 2t + 1 (b0) and those + 8
// (b1); C rows g (c[0], c[1]) and g + 8 (c[2], c[3]), columns 2t, 2t + 1.
// Each register holds two elements, the lower index in its low half.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace varps::cuda {

#ifndef __CUDACC__
// A host compiler builds the kernels only for their CPU emulation in the
// tests (tests/cuda/kernel_emulator.hpp), which defines this warp-wide
// product from the fragment layouts above.
template <typename T>
void emulated_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
#endif

template <typename T>
__device__ inline uint16_t bits_of(float v) {
  if constexpr (std::is_same_v<T, __half>)
    return __half_as_ushort(__float2half_rn(v));
  else
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Two values as one 32-bit operand register: `lo` the lower index.
template <typename T>
__device__ inline uint32_t pack(float lo, float hi) {
  return static_cast<uint32_t>(bits_of<T>(lo)) | (static_cast<uint32_t>(bits_of<T>(hi)) << 16);
}

// c += a·b for a 16×16 A (row-major fragment), a 16×8 B (column fragment).
template <typename T>
__device__ inline void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifndef __CUDACC__
  emulated_mma<T>(c, a, b0, b1);
#else
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#endif
}

}  // namespace varps::cuda
