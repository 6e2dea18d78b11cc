#pragma once
// CUDA, cuBLASLt and kernel-launch failures become varps::Error naming the
// call, its file and line, and the runtime's message.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "varps/error.hpp"

namespace varps::cuda {

[[noreturn]] inline void fail(const char* what, const char* file, int line, const std::string& message) {
  throw Error(std::string("CUDA: ") + what + " failed at " + file + ":" + std::to_string(line) + ": " + message);
}

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) fail(what, file, line, cudaGetErrorString(e));
}

inline void check(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(what, file, line, std::string("cuBLAS status ") + std::to_string(static_cast<int>(s)));
}

}  // namespace varps::cuda

#define VARPS_CUDA_CHECK(call) ::varps::cuda::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: a bad configuration is reported at once, not at the
// next synchronisation.
#define VARPS_CUDA_LAUNCHED(kernel) ::varps::cuda::check(cudaGetLastError(), kernel, __FILE__, __LINE__)
