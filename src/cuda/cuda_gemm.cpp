// Matrix products of the CUDA backend through cuBLASLt. Row-major products
// are column-major products of the transposes: y = x·wᵀ is yᵀ = w·xᵀ, which
// is cuBLASLt's "TN" product on the arrays as stored.
//
// Batch invariance: the algorithm is the heuristic's first without split-K
// or any other cross-block reduction, so an output element is accumulated in
// one order whatever the number of rows (and so of streams) in the product.
#include <algorithm>
#include <string>

#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_heap.hpp"
#include "cuda/kernels.hpp"
#include "cuda/lt_context.hpp"

namespace varps::cuda {

LtContext::LtContext(DeviceHeap& heap) : heap_(heap) {
  VARPS_CUDA_CHECK(cublasLtCreate(&handle_));
  // What NVIDIA recommends for Hopper; more buys nothing for these shapes.
  workspace_bytes_ = size_t{32} << 20;
  workspace_ = heap_.allocate(workspace_bytes_);
}

LtContext::~LtContext() {
  for (auto& [key, plan] : plans_) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.d);
    cublasLtMatmulDescDestroy(plan.desc);
  }
  heap_.release(workspace_, workspace_bytes_);
  cublasLtDestroy(handle_);
}

namespace {

// The largest power of two up to 256 that divides the address: cuBLASLt's
// heuristic assumes 256-byte aligned operands unless told otherwise, and an
// algorithm picked for that fails on a pointer into the middle of an array.
uint32_t alignment_of(const void* ptr) {
  const auto a = reinterpret_cast<uintptr_t>(ptr);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

}  // namespace

LtContext::Plan& LtContext::plan_for(const LtProduct& p) {
  const uint32_t align_a = alignment_of(p.A), align_b = alignment_of(p.B), align_d = alignment_of(p.D);
  const Key key{p.trans_a,      p.trans_b,       p.m,     p.n,     p.k,    p.lda,  p.ldb,
                p.ldd,          static_cast<int>(p.operand_type), static_cast<int>(p.d_type), p.bias != nullptr,
                p.gelu,         p.beta != 0.0f,
                align_a,        align_b,         align_d};
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;

  Plan plan;
  VARPS_CUDA_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  VARPS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  VARPS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  if (p.bias || p.gelu) {
    const cublasLtEpilogue_t epi = p.gelu ? (p.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                          : CUBLASLT_EPILOGUE_BIAS;
    VARPS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  }
  if (p.bias) {
    const cudaDataType_t bias_type = CUDA_R_32F;
    VARPS_CUDA_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
  }
  // Stored (pre-op) shapes, column-major.
  const uint64_t a_rows = p.trans_a ? p.k : p.m, a_cols = p.trans_a ? p.m : p.k;
  const uint64_t b_rows = p.trans_b ? p.n : p.k, b_cols = p.trans_b ? p.k : p.n;
  VARPS_CUDA_CHECK(cublasLtMatrixLayoutCreate(&plan.a, p.operand_type, a_rows, a_cols, p.lda));
  VARPS_CUDA_CHECK(cublasLtMatrixLayoutCreate(&plan.b, p.operand_type, b_rows, b_cols, p.ldb));
  VARPS_CUDA_CHECK(cublasLtMatrixLayoutCreate(&plan.d, p.d_type, p.m, p.n, p.ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  VARPS_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  VARPS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &workspace_bytes_, sizeof workspace_bytes_));
  for (const auto& [attr, align] : {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
                                     std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
                                     std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
                                     std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}})
    VARPS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align));
  const uint32_t no_reduction = CUBLASLT_REDUCTION_SCHEME_NONE;
  VARPS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                        &no_reduction, sizeof no_reduction));
  constexpr int kWanted = 8;
  cublasLtMatmulHeuristicResult_t results[kWanted] = {};
  int found_count = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.a, plan.b, plan.d, plan.d, pref,
                                                           kWanted, results, &found_count);
  cublasLtMatmulPreferenceDestroy(pref);
  int chosen = -1;
  for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < found_count && chosen < 0; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    int32_t split_k = 1;
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&results[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split_k,
                                             sizeof split_k, &written) != CUBLAS_STATUS_SUCCESS ||
        written == 0)
      split_k = 1;
    if (split_k <= 1) chosen = i;
  }
  plan.status = static_cast<int>(st);
  if (chosen >= 0) {
    plan.algo = results[chosen].algo;
    plan.usable = true;
  }
  return plans_.emplace(key, plan).first->second;
}

void LtContext::run(const LtProduct& p) {
  if (!try_run(p)) {
    const Plan& plan = plan_for(p);
    throw Error("cuBLASLt has no algorithm without split-K for a " + std::to_string(p.m) + "x" + std::to_string(p.n) +
                "x" + std::to_string(p.k) + " product (status " + std::to_string(plan.status) + ")");
  }
}

bool LtContext::try_run(const LtProduct& p) {
  Plan& plan = plan_for(p);
  if (!plan.usable) return false;
  if (p.bias)
    VARPS_CUDA_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof p.bias));
  VARPS_CUDA_CHECK(cublasLtMatmul(handle_, plan.desc, &p.alpha, p.A, plan.a, p.B, plan.b, &p.beta, p.D, plan.d, p.D,
                                  plan.d, &plan.algo, workspace_, workspace_bytes_, heap_.stream));
  return true;
}

void CudaBackend::do_linear(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, float* y) {
  product_with_epilogue(x, M, K, w, b, N, false, y);
}

void CudaBackend::do_linear_gelu(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                              float* y) {
  product_with_epilogue(x, M, K, w, b, N, true, y);
}

namespace {

// y[M, N] = x[M, K]·w[N, K]ᵀ (+ b[N]) with operands of type `operands`: the
// column-major yᵀ = w·xᵀ, cuBLASLt's "TN" product on the arrays as stored.
LtProduct linear_product(const void* x, int64_t M, int64_t K, const void* w, const float* b, int64_t N, void* y,
                         cudaDataType_t operands) {
  LtProduct p;
  p.trans_a = true;
  p.m = N;
  p.n = M;
  p.k = K;
  p.A = w;
  p.lda = K;
  p.B = x;
  p.ldb = K;
  p.D = y;
  p.ldd = N;
  p.bias = b;
  p.operand_type = operands;
  return p;
}

}  // namespace

void CudaBackend::product_with_epilogue(const float* x, int64_t M, int64_t K, const float* w, const float* b,
                                        int64_t N, bool gelu, float* y) {
  if (M == 0 || N == 0) return;
  const bool half = precision_ != Precision::F32;
  const LtProduct p = half ? linear_product(half_activations(x, static_cast<size_t>(M * K)), M, K,
                                            matrix_operand(w, static_cast<size_t>(N * K)), b, N, y, half_type())
                           : linear_product(x, M, K, w, b, N, y, CUDA_R_32F);
  run_product(p, gelu, static_cast<size_t>(M * N));
}

void CudaBackend::run_product(LtProduct p, bool gelu, size_t outputs) {
  // float32 products are the mode that reproduces the reference, so their
  // GELU stays the kernel that rounds as the CPU does; cuBLASLt does not
  // document its epilogue's accuracy.
  p.gelu = gelu && precision_ != Precision::F32;
  if (!lt_->try_run(p)) {
    // run() names the product and throws when cuBLASLt has no algorithm for
    // it at all; one without the epilogue is the fallback for one with.
    if (!p.gelu) lt_->run(p);
    p.gelu = false;
    lt_->run(p);
  }
  if (gelu && !p.gelu) do_gelu_tanh_inplace(static_cast<float*>(p.D), outputs);
}

void CudaBackend::do_mlp(const float* x, int64_t M, int64_t C, const float* w1, const float* b1, int64_t H,
                      const float* w2, const float* b2, int64_t N, float* hidden, float* y) {
  if (precision_ == Precision::F32 || M == 0 || H == 0 || N == 0) {
    Backend::do_mlp(x, M, C, w1, b1, H, w2, b2, N, hidden, y);
    return;
  }
  // fc1 writes the hidden layer in the product precision, GELU applied, so
  // fc2 reads it as it is: no float32 hidden layer, no conversion kernel.
  LtProduct fc1 = linear_product(half_activations(x, static_cast<size_t>(M * C)), M, C,
                                 matrix_operand(w1, static_cast<size_t>(H * C)), b1, H, hidden, half_type());
  fc1.gelu = true;
  fc1.d_type = half_type();
  if (!lt_->try_run(fc1)) {
    // No such epilogue for a half-precision output: fc1 into a float32
    // hidden layer from the operand already converted, then fc2 as linear().
    fc1.d_type = CUDA_R_32F;
    run_product(fc1, true, static_cast<size_t>(M * H));
    do_linear(hidden, M, H, w2, b2, N, y);
    return;
  }
  lt_->run(linear_product(hidden, M, H, matrix_operand(w2, static_cast<size_t>(N * H)), b2, N, y, half_type()));
}

void CudaBackend::do_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // Always float32: the decoder's attention and the codebook search.
  row_major_product(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_32F);
}

void CudaBackend::row_major_product(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                    const void* A, int64_t lda, const void* B, int64_t ldb, float beta, float* C,
                                    int64_t ldc, cudaDataType_t operands) {
  if (M == 0 || N == 0) return;
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
  LtProduct p;
  p.trans_a = trans_b;
  p.trans_b = trans_a;
  p.m = N;
  p.n = M;
  p.k = K;
  p.A = B;
  p.lda = ldb;
  p.B = A;
  p.ldb = lda;
  p.D = C;
  p.ldd = ldc;
  p.alpha = alpha;
  p.beta = beta;
  p.operand_type = operands;
  lt_->run(p);
}

cudaDataType_t CudaBackend::half_type() const {
  return precision_ == Precision::BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

}  // namespace varps::cuda
