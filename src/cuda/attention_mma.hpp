#pragma once
// The tensor-core attention path (cuda_attention_mma.cu): head_dim 64 over
// a bf16 or fp16 KV cache, scales of at least kMinMmaQueries queries.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend.hpp"

namespace varps::cuda {

// Fewer queries leave most of a block's 16-query warps idle: the SIMT
// kernel takes those scales.
constexpr int64_t kMinMmaQueries = 16;

bool attention_mma_applies(int64_t hd, int64_t tokens, size_t cache_element_bytes);

// As Backend::attention for hd = 64, T = __nv_bfloat16 or __half.
template <typename T>
void launch_attention_mma(cudaStream_t stream, const float* q, const T* k_cache, const T* v_cache, int64_t rows,
                          int64_t H, int64_t tokens, int64_t capacity, int64_t len, float scale, const KvPrefix& prefix,
                          float* out);

}  // namespace varps::cuda
