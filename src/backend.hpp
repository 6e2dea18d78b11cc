#pragma once
// The op interface the model code is written against. The CPU backend is the
// readable float32 reference; a device backend implements the same ops on
// device memory, so `VarTransformer`, `Vqvae` and the generation loop do not
// change. Every op takes raw pointers into backend-owned arrays; shapes are
// spelled out per argument (row-major, last index fastest).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "varps/device_memory.hpp"
#include "varps/sampling.hpp"
#include "varps/tensor.hpp"
#include "varps/work_clock.hpp"

namespace varps {

// An owning handle to backend memory.
template <typename T>
class Array {
 public:
  Array() = default;
  Array(std::shared_ptr<T> p, size_t n) : p_(std::move(p)), n_(n) {}
  T* data() const { return p_.get(); }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  // Elements [offset, offset + n) as a handle that keeps the whole array alive.
  Array slice(size_t offset, size_t n) const { return Array(std::shared_ptr<T>(p_, p_.get() + offset), n); }
  // The same of an array whose elements are stored `element_bytes` wide (an
  // opaque handle such as a KV cache).
  Array slice_stored(size_t offset, size_t n, size_t element_bytes) const {
    T* p = reinterpret_cast<T*>(reinterpret_cast<char*>(p_.get()) + offset * element_bytes);
    return Array(std::shared_ptr<T>(p_, p), n);
  }

 private:
  std::shared_ptr<T> p_;
  size_t n_ = 0;
};

// One sampled token map's worth of requests: the random stream of token t at
// scale si of an image is keyed by (seed, si, t) only.
struct SampleJob {
  uint64_t seed = 0;
  SamplingParams params;
};

// ParScale prefix keys/values [P, H, T, hd], stored once per stream: row r
// of a pass belongs to stream r / rows_per_stream and attends to that
// stream's T prefix positions before its own cached keys.
struct KvPrefix {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t tokens = 0;  // T; 0 means no prefix
  int64_t rows_per_stream = 1;
};

// GroupNorm, then SiLU when `silu`, applied to a convolution's input as it
// is read, with the statistics group_norm_stats() computed: the normalised
// map is never stored. Each value is the same float expression as in
// group_norm().
struct NormOnRead {
  const float* stats = nullptr;  // [N, groups, 2]: mean and 1/sqrt(var + eps)
  const float* gamma = nullptr;  // [C]
  const float* beta = nullptr;   // [C]
  int groups = 0;
  bool silu = false;
};

// The largest operands a request hands the backend, from which it plans its
// own memory (product workspaces, im2col bands, conversion scratch).
struct ConvolutionShape {
  int64_t ci = 0, co = 0, k = 0, side = 0;  // a stride-1 k×k convolution on a side×side map
};
struct WorkspaceDemand {
  uint64_t linear_input = 0;     // elements of the largest x of linear()
  uint64_t im2col = 0;           // elements of the largest im2col matrix of one image (k > 1)
  uint64_t pointwise_input = 0;  // elements of the largest 1×1 convolution input of one image
  std::vector<ConvolutionShape> convolutions;  // every stride-1 convolution, for a backend's per-shape algorithms
};

// A backend's recording of the ops one step enqueued (a CUDA graph), kept by
// the owner of the arrays the step works on.
class StepRecording {
 public:
  virtual ~StepRecording() = default;
};

// How run_recorded ran a step: called as it is, recorded and launched, or
// its recording launched.
enum class StepRun { AsIs, Recorded, Replayed };

// Which backend, and how it computes.
struct BackendOptions {
  std::string device = "cpu";  // "cpu" or "cuda"
  int threads = 0;             // CPU threads; 0: all cores
  // Matrix-product operands: "fp32", or "bf16"/"fp16" (CUDA only; float32
  // accumulation, activations and everything else stay float32).
  std::string precision = "fp32";
  int device_index = 0;  // which CUDA device
  // CUDA: record a repeated step once as a graph and replay it (run_recorded).
  bool graphs = true;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int threads() const = 0;
  // The libraries and kernels in use, for benchmark reports.
  virtual std::string info() const = 0;

  virtual Array<float> alloc(size_t n) = 0;  // contents undefined
  // Bytes the backend holds for an array of `elements` elements of
  // `element_bytes` each (its padding included): what device_memory()
  // counts for it, and what a memory plan adds up.
  virtual uint64_t array_bytes(uint64_t elements, size_t element_bytes) const = 0;
  virtual Array<float> zeros(size_t n) = 0;
  virtual Array<int32_t> alloc_i32(size_t n) = 0;
  virtual Array<float> upload(const Tensor& t) = 0;
  // A weight used only as the w of linear() or conv2d() of this backend: a
  // backend whose matrix products take lower-precision operands may keep it
  // in that precision alone, so the handle is opaque to every other op.
  virtual Array<float> upload_matrix(const Tensor& t) { return upload(t); }
  // Bytes an upload_matrix() weight holds per element.
  virtual size_t matrix_element_bytes() const { return sizeof(float); }
  // Bytes an upload_matrix() weight of this shape holds (a backend may pad
  // the layout it keeps).
  virtual uint64_t matrix_bytes(const Shape& shape) const {
    return static_cast<uint64_t>(numel(shape)) * matrix_element_bytes();
  }
  // A KV cache: an array only ever passed as k_cache/v_cache to
  // split_qkv_to_cache() and attention(), so a backend may store it at a
  // lower precision (the handle is then opaque to every other op).
  virtual Array<float> alloc_kv_cache(size_t n) { return alloc(n); }
  // Bytes an alloc_kv_cache() array holds per element.
  virtual size_t kv_element_bytes() const { return sizeof(float); }
  // Every image's sampling parameters in backend memory, written once per
  // request before its scales run: guidance() and sample() read them as
  // they run, so a recorded step samples each request with its own values.
  virtual Array<SampleJob> alloc_sample_jobs(size_t n) = 0;
  virtual void upload_sample_jobs(const SampleJob* host, size_t n, SampleJob* dst) = 0;
  virtual void upload_into_i32(const int32_t* host, size_t n, int32_t* dst) = 0;
  virtual void download(const float* src, size_t n, float* host) = 0;
  virtual void download_i32(const int32_t* src, size_t n, int32_t* host) = 0;
  virtual void copy(const float* src, size_t n, float* dst) = 0;
  virtual void synchronize() = 0;
  // Frees memory kept for reuse (arrays still in use stay valid).
  virtual void release_cached() = 0;
  // The most memory the backend holds for its own work (beside the arrays it
  // hands out) while serving `demand`.
  virtual uint64_t workspace_bytes(const WorkspaceDemand& demand) const = 0;
  // Runs step(), which only enqueues this backend's ops, on arrays that
  // outlive `slot`, with the same shapes, addresses and arguments on every
  // call. A backend may record it into `slot` and replay the recording on
  // later calls instead of calling step(). From its second call on, a step
  // may not allocate, transfer to or from the host, or synchronise (a
  // recording could not hold it). The CPU calls step() every time and
  // refuses those calls there with an Error, so a step that breaks the rule
  // fails on every backend, not only where it would have been recorded.
  virtual StepRun run_recorded(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) {
    (void)slot;
    step();
    return StepRun::AsIs;
  }
  // Marks in this backend's order of work (see WorkClock).
  virtual std::unique_ptr<WorkClock> work_clock() { return make_host_clock(); }
  virtual DeviceMemoryStats device_memory() const { return {}; }
  virtual void reset_peak_memory() {}

  // ---- dense algebra ----
  // y[M,N] = x[M,K] · w[N,K]ᵀ (+ b[N])
  virtual void linear(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                      float* y) = 0;
  // y = GELU_tanh(x·wᵀ + b): linear() then gelu_tanh_inplace(), which a
  // backend may fuse into the product's epilogue.
  virtual void linear_gelu(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                           float* y) {
    linear(x, M, K, w, b, N, y);
    gelu_tanh_inplace(y, static_cast<size_t>(M * N));
  }
  // y[M,N] = fc2(GELU_tanh(fc1(x))) with fc1 = (w1[H,C], b1) and fc2 =
  // (w2[N,H], b2): linear_gelu() into hidden[M,H], then linear(). A backend
  // may store the hidden layer at its product precision (hidden holds M·H
  // floats' room either way; its contents are the backend's). y may be x.
  virtual void mlp(const float* x, int64_t M, int64_t C, const float* w1, const float* b1, int64_t H,
                   const float* w2, const float* b2, int64_t N, float* hidden, float* y) {
    linear_gelu(x, M, C, w1, b1, H, hidden);
    linear(hidden, M, H, w2, b2, N, y);
  }
  // C[M,N] = alpha · op(A) · op(B) + beta · C, with leading dimensions.
  virtual void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;

  // ---- elementwise (y may be x) ----
  virtual void silu(const float* x, size_t n, float* y) = 0;
  virtual void gelu_tanh_inplace(float* x, size_t n) = 0;
  virtual void add_inplace(float* y, const float* x, size_t n) = 0;
  // y = a·y + b·x
  virtual void axpby_inplace(float* y, float a, const float* x, float b, size_t n) = 0;
  // y[r, i, :] += x[r, i, :] · v[r, :] for rows r, tokens i; v has row stride v_stride.
  virtual void add_scaled_rows(float* y, const float* x, const float* v, int64_t v_stride, int64_t rows,
                               int64_t tokens, int64_t C) = 0;
  // y[r, i, :] += v[i, :] (the same [tokens, C] block added to every row)
  virtual void add_broadcast_rows(float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) = 0;
  // softmax over the last axis, in place: x[n, len]
  virtual void softmax_rows(float* x, int64_t n, int64_t len) = 0;

  // ---- transformer ----
  // out[r, i, :] = LN(x[r, i, :]) · (1 + scale[r, :]) + shift[r, :]; LN without affine.
  virtual void adaln_modulate(const float* x, int64_t rows, int64_t tokens, int64_t C, const float* scale,
                              const float* shift, int64_t mod_stride, float eps, float* out) = 0;
  // add_scaled_rows(x, delta, gamma, ...) then adaln_modulate(x, ..., out):
  // a block's gamma-scaled residual, then the next LayerNorm, which a backend
  // may fuse into one pass over x. out may be delta.
  virtual void add_scaled_rows_then_adaln(float* x, const float* delta, const float* gamma, int64_t gamma_stride,
                                          int64_t rows, int64_t tokens, int64_t C, const float* scale,
                                          const float* shift, int64_t mod_stride, float eps, float* out) {
    add_scaled_rows(x, delta, gamma, gamma_stride, rows, tokens, C);
    adaln_modulate(x, rows, tokens, C, scale, shift, mod_stride, eps, out);
  }
  // Splits qkv[r, i, 3, H, hd] into queries q[r, H, i, hd] and appends keys and
  // values to the caches k_cache/v_cache[r, H, capacity, hd] at position `pos`.
  // With l2norm, q and k are L2-normalised (norm floored at 1e-12) and q is
  // multiplied by q_scale[h].
  virtual void split_qkv_to_cache(const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd,
                                  bool l2norm, const float* q_scale_host, float* q, float* k_cache, float* v_cache,
                                  int64_t capacity, int64_t pos) = 0;
  // out[r, i, h·hd + d] = softmax(scale · q[r,h,i,:] · K[r,h,:,:]ᵀ) · V[r,h,:,:] with
  // K = [prefix.k[stream of r, h] ; k_cache[r, h, :len]] (V likewise); the
  // prefix is used as stored.
  virtual void attention(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H,
                         int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale,
                         const KvPrefix& prefix, float* out) = 0;

  // ---- ParScale aggregation (M = image rows · tokens) ----
  // z[m, c·P + p] = h[p·M + m, c]: the P streams' states side by side, channel-major.
  virtual void interleave_streams(const float* h, int64_t P, int64_t M, int64_t C, float* z) = 0;
  // a[m, :P] ← softmax(a[m, :]) · (1 − s) + s/P, in float32 (s rounded to float
  // as the reference's Python scalars are).
  virtual void stream_weights(float* a, int64_t M, int64_t P, double smooth) = 0;
  // out[m, c] = Σ_p w[m, p] · h[p·M + m, c], summed in stream order.
  virtual void weighted_stream_sum(const float* h, const float* w, int64_t P, int64_t M, int64_t C, float* out) = 0;

  // ---- guidance and sampling ----
  // logits: [R, l, V], row b < B the conditional row of image b; jobs[B] in
  // backend memory (alloc_sample_jobs). For a guided image (uncond_row[b] >=
  // 0): out[b] = a_b·cond − t_b·uncond with t_b = jobs[b].params.cfg · ratio
  // in double and a_b = float(1 + t_b), as the reference rounds them;
  // otherwise out[b] = cond.
  virtual void guidance(const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                        const std::vector<int64_t>& uncond_row, float* out) = 0;
  // logits[B, l, V] (clobbered) → idx[B, l], image b drawn with jobs[b] (in
  // backend memory). `filters`: whether some job keeps a top-k or top-p
  // filter (sample_filters); a backend may leave out the memory of sorting
  // when none does, so a call that says none while one does is refused.
  virtual void sample(float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters,
                      int scale_index, int32_t* idx) = 0;

  // ---- image-space ops, NCHW ----
  // out[N, Co, Ho, Wo]; w[Co, Ci, k, k]; zero padding (top, left, bottom, right).
  virtual void conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const float* w, const float* b,
                      int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r, float* out) = 0;
  // out[n] = conv(norm(x[n])) + b, or out[n] += conv(norm(x[n])) + b with
  // `add_to_out`: a stride-1 k×k convolution (k odd) with k/2 zero padding
  // of the normalised input (the padding is zero after normalisation).
  // The sum is (out + b) + the product, so a residual block adds its
  // second convolution to its input in place.
  virtual void normalized_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead& norm,
                                 const float* w, const float* b, int64_t Co, int k, bool add_to_out, float* out) = 0;
  // stats[n, g] = (mean, float(1/sqrt(var + eps))) of x[n, group g], as
  // group_norm() computes them.
  virtual void group_norm_stats(const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                                float* stats) = 0;
  // out may be x.
  virtual void group_norm(const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                          const float* beta, float eps, bool then_silu, float* out) = 0;
  virtual void upsample_nearest2x(const float* x, int64_t NC, int64_t H, int64_t W, float* out) = 0;
  // PyTorch bicubic (align_corners=False, A = -0.75, clamped borders).
  virtual void upsample_bicubic(const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W,
                                float* out) = 0;
  // PyTorch area (adaptive average pooling).
  virtual void downsample_area(const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w,
                               float* out) = 0;
  // tokens[n, p, c] = x[n, c, p] (and back)
  virtual void chw_to_tokens(const float* x, int64_t N, int64_t C, int64_t P, float* out) = 0;
  // out[n, c, p] = table[idx[n, p], c]
  virtual void embed_chw(const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P, float* out) = 0;
  // out[r, :] = table[idx[r], :]
  virtual void gather_rows(const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) = 0;
  // idx[n] = argmin_v ‖z[n] − e[v]‖² computed as |z|² + |e|² − 2 z·e (first on ties)
  virtual void nearest_code(const float* z, int64_t n, const float* codebook, int64_t V, int64_t C,
                            int32_t* idx) = 0;
  virtual void clamp(float* x, size_t n, float lo, float hi) = 0;
  virtual void fill_zero(float* x, size_t n) = 0;
};

// Whether some job keeps a top-k (0 < k < V) or top-p filter: sample()'s
// `filters` for these jobs.
bool sample_filters(const SampleJob* jobs, int64_t n, int64_t V);

std::unique_ptr<Backend> make_cpu_backend(int threads);
// Throws varps::Error as check_backend_choice (varps/pipeline.hpp) does,
// and when the device is not compiled in (CUDA needs -DVARPS_CUDA=ON) or not
// present.
std::unique_ptr<Backend> make_backend(const BackendOptions& opts);
// Defined only in builds with VARPS_CUDA=ON.
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts);
// True when this build contains the CUDA backend.
bool cuda_backend_compiled();

}  // namespace varps
