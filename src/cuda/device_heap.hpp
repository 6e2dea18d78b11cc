#pragma once
// Device memory of one CUDA backend: a stream-ordered pool that keeps what
// it allocated (so a generation after the first allocates nothing from the
// driver), the bytes live arrays hold and their peak, and the half-precision
// copies of weights the matrix products use.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace varps::cuda {

struct DeviceHeap {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;

  std::mutex mutex;
  uint64_t in_use = 0;
  uint64_t peak = 0;
  // Low-precision copies of float32 weights, keyed by the float32 array;
  // dropped with it, so a later array at the same address is not mistaken
  // for the old one. A weight uploaded at low precision alone is its own
  // copy (data == key, bytes == 0).
  struct Shadow {
    void* data = nullptr;
    size_t bytes = 0;
  };
  std::unordered_map<const void*, Shadow> shadows;

  DeviceHeap(int device_index);
  ~DeviceHeap();
  DeviceHeap(const DeviceHeap&) = delete;
  DeviceHeap& operator=(const DeviceHeap&) = delete;

  void* allocate(size_t bytes);
  // Never throws: it runs in array deleters.
  void release(void* p, size_t bytes) noexcept;
};

}  // namespace varps::cuda
