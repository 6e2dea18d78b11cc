#pragma once
// cuBLASLt for the CUDA backend: one handle, one workspace and a cache of
// matmul plans (descriptors plus the algorithm picked once per shape), so a
// matrix product costs one cublasLtMatmul call after its first use.
#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace varps::cuda {

struct DeviceHeap;

// Column-major D[m, n] = alpha · op(A) · op(B) + beta · C (+ bias[m] per
// column, then GELU_tanh when `gelu`), C and D the same array, of d_type
// (float32, or the operands' half type for an output that only feeds
// another product).
struct LtProduct {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* A = nullptr;
  int64_t lda = 0;
  const void* B = nullptr;
  int64_t ldb = 0;
  void* D = nullptr;
  int64_t ldd = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* bias = nullptr;
  bool gelu = false;  // cuBLASLt's GELU epilogue is the tanh approximation
  cudaDataType_t operand_type = CUDA_R_32F;  // A and B
  cudaDataType_t d_type = CUDA_R_32F;        // C and D
};

struct LtContext {
  explicit LtContext(DeviceHeap& heap);
  ~LtContext();
  LtContext(const LtContext&) = delete;
  LtContext& operator=(const LtContext&) = delete;

  void run(const LtProduct& p);
  // run(p), or false when cuBLASLt has no algorithm for p (an epilogue it
  // does not offer for these types), remembered per shape.
  bool try_run(const LtProduct& p);
  size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool usable = false;  // an algorithm was found; else only the failure is kept
    int status = 0;       // the heuristic's status when none was
  };
  // Shape, types, epilogue, and the alignment of A, B and D: an algorithm
  // is picked for the alignment the pointers really have.
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, bool, bool,
                         bool, uint32_t, uint32_t, uint32_t>;
  Plan& plan_for(const LtProduct& p);

  DeviceHeap& heap_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan> plans_;
};

}  // namespace varps::cuda
