#pragma once
// Launchers shared between the CUDA backend's source files.
#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/cuda_backend.hpp"

namespace varps::cuda {

// dst[i] = src[i] rounded to bf16 or fp16 (round to nearest even).
void cast_to_half_precision(const float* src, size_t n, void* dst, Precision p, cudaStream_t stream);

}  // namespace varps::cuda
