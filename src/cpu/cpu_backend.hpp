#pragma once
// The CPU backend: float32; x·wᵀ products, convolutions and attention on
// panel-packed operands with an AVX2 register tile (cpu/panel_gemm.hpp),
// 3×3 convolutions of large maps as Winograd (cpu/winograd.hpp), OpenBLAS
// for the remaining general products (gemm()), OpenMP for the rest. It is
// the readable reference every other backend is tested against. With
// precision "bf16" the x·wᵀ products of uploaded weights take bf16 operands
// with float32 sums (cpu/bf16_panels.hpp), with "int8" int8 operands with
// int32 sums and float32 scales (cpu/int8_panels.hpp; through oneDNN,
// cpu/onednn_int8.hpp, on VNNI and AMX hosts), and with either the
// attention's two products take bf16 operands; everything else stays
// float32.
#include <vector>

#include "backend.hpp"
#include "cpu/cpu_isa.hpp"
#include "cpu/onednn_int8.hpp"
#include "cpu/packed_matrices.hpp"
#include "cpu/scratch_pool.hpp"

namespace varps {

struct CpuBufferPool;
struct RecordedStepThreads;

class CpuBackend final : public Backend {
 public:
  // precision: "fp32", "bf16" or "int8"; isa: the extensions the kernels may use.
  CpuBackend(int threads, const std::string& precision, const cpu::CpuIsa& isa);
  ~CpuBackend() override;
  std::string name() const override { return "cpu"; }
  int threads() const override { return threads_; }
  std::string info() const override;

  Array<float> alloc(size_t n) override;
  uint64_t array_bytes(uint64_t elements, size_t element_bytes) const override;
  Array<float> zeros(size_t n) override;
  Array<int32_t> alloc_i32(size_t n) override;
  Array<float> upload(const Tensor& t) override;
  // A [N, K] weight is kept as the B panels of x·wᵀ and a [Co, Ci, k, k] one
  // as the A panels of a convolution (cpu/packed_matrices.hpp); any other
  // shape as it is.
  Array<MatrixElement> upload_matrix(const Tensor& t) override;
  size_t matrix_element_bytes() const override;
  uint64_t matrix_bytes(const Shape& shape) const override;
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
  DeviceMemoryStats device_memory() const override;
  void reset_peak_memory() override;
  // Calls step() every time; from a slot's second call on, refuses (an
  // Error) what a recording could not hold: allocations, host transfers and
  // synchronisation.
  StepRun run_recorded(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) override;

 protected:
  void do_linear(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, float* y) override;
  // GELU in the product's epilogue.
  void do_linear_gelu(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                      float* y) override;
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

 private:
  template <typename T>
  Array<T> pooled(size_t n);
  // 4-byte words of a weight kept in layout m.
  size_t packed_words(const cpu::PackedMatrix& m) const;
  // y = x·wᵀ + b, then GELU when `gelu`.
  void product(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, bool gelu, float* y);
  // w's panels in the given role: its own when upload_matrix() packed it so,
  // else packed into scratch held by `lease`.
  const float* panels_of(const float* w, int64_t rows, int64_t depth, bool as_a, cpu::ScratchPool::Lease& lease) const;
  // conv2d and normalized_conv2d: im2col bands (normalised as they are
  // built when `norm` is given) times the weight, added to out or written.
  void convolve(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead* norm, const float* w,
                const float* b, int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r,
                bool add_to_out, float* out);
  // do_attention in bf16 and int8: q, K, the probabilities and V rounded to
  // bf16 as they are packed, float32 sums and softmax.
  void attention_bf16(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H,
                      int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale, const KvPrefix& prefix,
                      float* out);
  // Throws when the calling thread is inside a step that run_recorded holds
  // to a recording's rules; `what` names the refused call.
  void check_outside_recorded_step(const char* what) const;

  int threads_;
  // The element upload_matrix() keeps x·wᵀ weights in.
  cpu::PackedMatrix::Element products_;
  cpu::CpuIsa isa_;
  // The int8 products through oneDNN, where OnednnInt8::serves(isa_).
  std::unique_ptr<cpu::OnednnInt8> onednn_int8_;
  std::shared_ptr<CpuBufferPool> pool_;
  std::shared_ptr<cpu::PackedMatrices> packed_;
  std::unique_ptr<cpu::ScratchPool> scratch_;
  // Threads inside a step run_recorded holds to a recording's rules (one
  // pipeline may serve requests from several threads).
  std::unique_ptr<RecordedStepThreads> recorded_steps_;
};

}  // namespace varps
