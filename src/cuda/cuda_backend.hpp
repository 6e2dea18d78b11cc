#pragma once
// The CUDA backend: the same ops as the CPU reference on device memory, all
// enqueued on one stream, so a generation has no host round trip except the
// final download. Matrix products go through cuBLASLt (float32, or bf16 /
// fp16 operands with float32 accumulation); everything else is a kernel of
// ours (src/cuda/*.cu). Arrays come from a stream-ordered memory pool that
// keeps what it has allocated, so from the second generation on nothing is
// allocated from the driver.
#include <cuda_runtime.h>
#include <library_types.h>

#include <memory>

#include "backend.hpp"

namespace varps::cuda {

enum class Precision { F32, BF16, F16 };

// Device-resident state shared by the backend and the deleters of the arrays
// it hands out (an array may outlive the backend object).
struct DeviceHeap;
// cuBLASLt handle, workspace and cached matmul plans, and one product.
struct LtContext;
struct LtProduct;

// Kernel launch helpers live in the .cu files; they take the stream and raw
// pointers and report launch errors with VARPS_CUDA_LAUNCHED.
class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& opts);
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }
  int threads() const override { return 1; }
  std::string info() const override;

  Array<float> alloc(size_t n) override;
  uint64_t array_bytes(uint64_t elements, size_t element_bytes) const override;
  Array<float> zeros(size_t n) override;
  Array<int32_t> alloc_i32(size_t n) override;
  Array<float> upload(const Tensor& t) override;
  // With bf16/fp16 products the weight is stored in that precision only.
  Array<MatrixElement> upload_matrix(const Tensor& t) override;
  size_t matrix_element_bytes() const override;
  // With bf16/fp16 products the KV cache is stored in that precision too.
  Array<KvElement> alloc_kv_cache(size_t n) override;
  size_t kv_element_bytes() const override;
  Array<SampleJob> alloc_sample_jobs(size_t n) override;
  void upload_sample_jobs(const SampleJob* host, size_t n, SampleJob* dst) override;
  void upload_into_i32(const int32_t* host, size_t n, int32_t* dst) override;
  void upload_into(const float* host, size_t n, float* dst) override;
  void download(const float* src, size_t n, float* host) override;
  void download_i32(const int32_t* src, size_t n, int32_t* host) override;
  void copy(const float* src, size_t n, float* dst) override;
  void synchronize() override;
  void release_cached() override;
  uint64_t workspace_bytes(const WorkspaceDemand& demand) const override;
  std::unique_ptr<WorkClock> work_clock() override;
  DeviceMemoryStats device_memory() const override;
  void reset_peak_memory() override;

 protected:
  void do_linear(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, float* y) override;
  // With bf16/fp16 products, GELU in cuBLASLt's epilogue.
  void do_linear_gelu(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                      float* y) override;
  // With bf16/fp16 products the hidden layer is stored in that precision.
  void do_mlp(const float* x, int64_t M, int64_t C, const float* w1, const float* b1, int64_t H, const float* w2,
              const float* b2, int64_t N, float* hidden, float* y) override;
  void do_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override;

  void do_silu(const float* x, size_t n, float* y) override;
  void do_gelu_tanh_inplace(float* x, size_t n) override;
  void do_add_inplace(float* y, const float* x, size_t n) override;
  void do_axpby_inplace(float* y, float a, const float* x, float b, size_t n) override;
  void do_add_scaled_rows(float* y, const float* x, const float* v, int64_t v_stride, int64_t rows, int64_t tokens,
                          int64_t C) override;
  void do_add_broadcast_rows(float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) override;
  void do_softmax_rows(float* x, int64_t n, int64_t len) override;

  void do_adaln_modulate(const float* x, int64_t rows, int64_t tokens, int64_t C, const float* scale,
                         const float* shift, int64_t mod_stride, float eps, float* out) override;
  // One kernel: each token's residual, then its LayerNorm and modulation.
  void do_add_scaled_rows_then_adaln(float* x, const float* delta, const float* gamma, int64_t gamma_stride,
                                     int64_t rows, int64_t tokens, int64_t C, const float* scale, const float* shift,
                                     int64_t mod_stride, float eps, float* out) override;
  void do_split_qkv_to_cache(const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd, bool l2norm,
                             const float* q_scale_host, float* q, float* k_cache, float* v_cache, int64_t capacity,
                             int64_t pos) override;
  void do_attention(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H, int64_t tokens,
                    int64_t hd, int64_t capacity, int64_t len, float scale, const KvPrefix& prefix,
                    float* out) override;
  void do_interleave_streams(const float* h, int64_t P, int64_t M, int64_t C, float* z) override;
  void do_stream_weights(float* a, int64_t M, int64_t P, double smooth) override;
  void do_weighted_stream_sum(const float* h, const float* w, int64_t P, int64_t M, int64_t C, float* out) override;

  void do_guidance(const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                   const int64_t* uncond_row, float* out) override;
  void do_sample(float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters, int scale_index,
                 int32_t* idx) override;

  void do_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const float* w, const float* b,
                 int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r, float* out) override;
  void do_normalized_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead& norm,
                            const float* w, const float* b, int64_t Co, int k, bool add_to_out, float* out) override;
  void do_group_norm_stats(const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                           float* stats) override;
  void do_group_norm(const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                     const float* beta, float eps, bool then_silu, float* out) override;
  void do_upsample_nearest2x(const float* x, int64_t NC, int64_t H, int64_t W, float* out) override;
  void do_upsample_bicubic(const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W, float* out) override;
  void do_downsample_area(const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w, float* out) override;
  void do_chw_to_tokens(const float* x, int64_t N, int64_t C, int64_t P, float* out) override;
  void do_embed_chw(const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P, float* out) override;
  void do_gather_rows(const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) override;
  void do_nearest_code(const float* z, int64_t n, const float* codebook, int64_t V, int64_t C, int32_t* idx) override;
  void do_clamp(float* x, size_t n, float lo, float hi) override;
  void do_fill_zero(float* x, size_t n) override;

 public:
  // The first call runs step() as it is (sizing scratch, cuBLASLt plans and
  // weight copies), the second captures it as a CUDA graph and launches
  // that, later calls launch the graph. A step that cannot be captured
  // (it allocates, or synchronises) runs as it is from then on.
  StepRun run_recorded(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) override;

  cudaStream_t stream() const;

  // Elements of a float32 im2col band (and of the codebook distances) at
  // once: 64 MB of scratch, where the 256x256x160 decoder level would need
  // 377 MB for a whole image. bf16/fp16 convolutions need no band.
  static constexpr int64_t kBandElements = int64_t{16} << 20;

 private:
  // n elements of elem_bytes each (less than sizeof(T) for a weight stored
  // in half precision behind a float handle).
  template <typename T>
  Array<T> device_array(size_t n, size_t elem_bytes = sizeof(T));
  // conv2d and normalized_conv2d: the weight times the im2col columns
  // (normalised as they are built when `norm` is given), added to out or
  // written; the columns are float32 bands in scratch, or with bf16/fp16
  // products shared-memory tiles of the tensor-core kernel.
  void convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm, const float* w,
                const float* b, int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r,
                bool add_to_out, float* out);
  // Scratch memory for one op, valid until the stream passes it.
  float* scratch(size_t n);
  // The half-precision operand of weight w[n]: itself for an upload_matrix()
  // weight, else a copy made on first use and dropped with the weight.
  const void* matrix_operand(const float* w, size_t n);
  // x[n] converted to half precision in scratch.
  const void* half_activations(const float* x, size_t n);
  cudaDataType_t half_type() const;  // with bf16/fp16 products
  // linear(), with GELU_tanh after the bias when `gelu`.
  void product_with_epilogue(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, bool gelu,
                             float* y);
  // Runs p, whose D is float32 with `outputs` elements, then GELU_tanh when
  // `gelu`: in cuBLASLt's epilogue with bf16/fp16 products where it offers
  // one for the types, else by the GELU kernel.
  void run_product(LtProduct p, bool gelu, size_t outputs);
  // Row-major C[M,N] = alpha·op(A)·op(B) + beta·C with A and B of type
  // `operands` (float32 accumulation and output).
  void row_major_product(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                         int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc,
                         cudaDataType_t operands);

  Precision precision_;
  bool graphs_ = true;
  bool capturing_ = false;  // inside run_recorded's capture: nothing may allocate
  std::shared_ptr<DeviceHeap> heap_;
  std::unique_ptr<LtContext> lt_;
  Array<float> scratch_;
  int64_t sample_smem_limit_ = -1;  // dynamic shared memory sample_kernel may use; -1 until queried
};

}  // namespace varps::cuda
