#pragma once
// The op interface the model code is written against. The CPU backend is the
// readable float32 reference; a device backend implements the same ops on
// device memory, so `VarTransformer`, `Vqvae` and the generation loop do not
// change. Every op takes typed views (tensor_view.hpp) and ops with many
// scalars a struct of named fields; the public op checks the views against
// each other (backend_ops.cpp) and hands the extents they agree on to the
// backend's protected do_ implementation, so the positional argument lists
// exist once, between the check and the implementation.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor_view.hpp"
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
  // The same of an array whose elements are stored `element_bytes` wide
  // (a backend's storage type, such as KvElement).
  Array slice_stored(size_t offset, size_t n, size_t element_bytes) const {
    T* p = reinterpret_cast<T*>(reinterpret_cast<char*>(p_.get()) + offset * element_bytes);
    return Array(std::shared_ptr<T>(p_, p), n);
  }
  // The same memory as n elements of U: how a backend hands out its storage
  // types, and how memory a cache no longer needs is lent out as floats.
  template <typename U>
  Array<U> reinterpret_as(size_t n) const {
    return Array<U>(std::shared_ptr<U>(p_, reinterpret_cast<U*>(p_.get())), n);
  }
  // A view of the first elements as these dimensions; throws when the
  // array is smaller.
  View<T> as(std::initializer_list<int64_t> dims, int64_t row_stride = 0) const {
    View<T> v = view(p_.get(), dims, row_stride);
    const int64_t need = v.rank == 0 ? 0 : (v.rows() - 1) * v.row_stride + v.cols();
    if (need > static_cast<int64_t>(n_))
      throw Error("a view of " + dims_text(v) + " on an array of " + std::to_string(n_) + " elements");
    return v;
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
  uint64_t linear_input = 0;                   // elements of the largest x of linear()
  uint64_t im2col = 0;                         // elements of the largest im2col matrix of one image (k > 1)
  uint64_t pointwise_input = 0;                // elements of the largest 1×1 convolution input of one image
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
  // Matrix-product operands: "fp32", "bf16", "fp16" (CUDA only) or "int8"
  // (CPU only); float32 accumulation (int32 for int8), activations and
  // everything else stay float32.
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
  virtual Array<MatrixElement> upload_matrix(const Tensor& t) {
    return upload(t).reinterpret_as<MatrixElement>(t.data.size());
  }
  // Bytes an upload_matrix() weight holds per element.
  virtual size_t matrix_element_bytes() const { return sizeof(float); }
  // Bytes an upload_matrix() weight of this shape holds (a backend may pad
  // the layout it keeps).
  virtual uint64_t matrix_bytes(const Shape& shape) const {
    return array_bytes(static_cast<uint64_t>(numel(shape)), matrix_element_bytes());
  }
  // A KV cache: an array only ever passed as k_cache/v_cache to
  // split_qkv_to_cache() and attention(), so a backend may store it at a
  // lower precision (the handle is then opaque to every other op).
  virtual Array<KvElement> alloc_kv_cache(size_t n) { return alloc(n).reinterpret_as<KvElement>(n); }
  // Bytes an alloc_kv_cache() array holds per element.
  virtual size_t kv_element_bytes() const { return sizeof(float); }
  // Every image's sampling parameters in backend memory, written once per
  // request before its scales run: guidance() and sample() read them as
  // they run, so a recorded step samples each request with its own values.
  virtual Array<SampleJob> alloc_sample_jobs(size_t n) = 0;
  virtual void upload_sample_jobs(const SampleJob* host, size_t n, SampleJob* dst) = 0;
  virtual void upload_into_i32(const int32_t* host, size_t n, int32_t* dst) = 0;
  virtual void upload_into(const float* host, size_t n, float* dst) = 0;
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

  // ---- the ops ----
  // Each op takes typed views and checks them against each other at its
  // entry (a mismatch is an Error naming the op and the view), then runs the
  // backend's do_ implementation of it with the checked extents. Outputs may
  // be inputs where an op says so.

  // y[M, N] = x[M, K] · w[N, K]ᵀ + b[N] (b may be empty).
  void linear(View<const float> x, View<const MatrixElement> w, View<const float> b, View<float> y);
  // GELU_tanh(linear()), which a backend may fuse into the product's epilogue.
  void linear_gelu(View<const float> x, View<const MatrixElement> w, View<const float> b, View<float> y);
  // y[M, N] = fc2(GELU_tanh(fc1(x[M, C]))) with fc1 = (w1[H, C], b1) and fc2 =
  // (w2[N, H], b2); hidden[M, H] is room the backend may keep at its product
  // precision (its contents are the backend's). y may be x.
  struct MlpWeights {
    View<const MatrixElement> w1;
    View<const float> b1;
    View<const MatrixElement> w2;
    View<const float> b2;
  };
  void mlp(View<const float> x, const MlpWeights& w, View<float> hidden, View<float> y);
  // C[M, N] = alpha · op(A) · op(B) + beta · C with op(A) [M, K] and op(B)
  // [K, N]; each view is the stored [rows, cols] matrix with its row stride
  // (leading dimension).
  struct GemmScalars {
    bool trans_a = false, trans_b = false;
    float alpha = 1.0f, beta = 0.0f;
  };
  void gemm(View<const float> A, View<const float> B, View<float> C, const GemmScalars& s);

  // ---- elementwise (y may be x) ----
  void silu(View<const float> x, View<float> y);
  void gelu_tanh_inplace(View<float> x);
  void add_inplace(View<float> y, View<const float> x);
  // y = a·y + b·x
  void axpby_inplace(View<float> y, float a, View<const float> x, float b);
  // y[r, i, :] += x[r, i, :] · v[r, :] for rows r and tokens i; v[rows, C]
  // may be strided (a slice of the modulation).
  void add_scaled_rows(View<float> y, View<const float> x, View<const float> v);
  // y[r, i, :] += v[i, :]: the same [tokens, C] block added to every row.
  void add_broadcast_rows(View<float> y, View<const float> v);
  // softmax over the last axis of x[n, len], in place.
  void softmax_rows(View<float> x);

  // ---- transformer ----
  // LN(x)·(1 + scale) + shift, LN without affine; scale and shift are
  // [rows, C], strided slices of a row's modulation.
  struct Modulation {
    View<const float> scale, shift;
    float eps = 0.0f;
  };
  // out[r, i, :] = modulated LN of x[r, i, :] (x, out: [rows, tokens, C]).
  void adaln_modulate(View<const float> x, const Modulation& m, View<float> out);
  // add_scaled_rows(x, delta, gamma) then adaln_modulate(x, m, out): a
  // block's gamma-scaled residual, then the next LayerNorm, which a backend
  // may fuse into one pass over x. out may be delta.
  void add_scaled_rows_then_adaln(View<float> x, View<const float> delta, View<const float> gamma, const Modulation& m,
                                  View<float> out);
  // Splits qkv[r, i, 3·H·hd] into queries q[r, H, i, hd] and appends keys and
  // values to the caches [r, H, capacity, hd] at position `pos`. With
  // l2norm, q and k are L2-normalised (norm floored at 1e-12) and q is
  // multiplied by q_scale[h] (host memory: it travels with the launch).
  struct QkvToCache {
    int64_t pos = 0;
    bool l2norm = false;
    View<const float> q_scale;  // [H], host
  };
  void split_qkv_to_cache(View<const float> qkv, const QkvToCache& a, View<float> q, View<KvElement> k_cache,
                          View<KvElement> v_cache);
  // out[r, i, h·hd + d] = softmax(scale · q[r,h,i,:] · K[r,h,:,:]ᵀ) · V[r,h,:,:]
  // with K = [prefix.k[stream of r, h] ; k_cache[r, h, :len]] (V likewise);
  // q [rows, H, tokens, hd], caches [rows, H, capacity, hd], out [rows,
  // tokens, H·hd]. The prefix is used as stored.
  struct AttentionArgs {
    int64_t len = 0;  // cached positions attended to, the new ones included
    float scale = 1.0f;
    KvPrefix prefix;
  };
  void attention(View<const float> q, View<const KvElement> k_cache, View<const KvElement> v_cache,
                 const AttentionArgs& a, View<float> out);

  // ---- ParScale aggregation (M = image rows · tokens) ----
  // z[m, c·P + p] = h[p, m, c]: the P streams' states side by side,
  // channel-major (h [P, M, C], z [M, C·P]).
  void interleave_streams(View<const float> h, View<float> z);
  // a[m, :] ← softmax(a[m, :]) · (1 − s) + s/P over a[M, P], in float32 (s
  // rounded to float as the reference's Python scalars are).
  void stream_weights(View<float> a, double smooth);
  // out[m, c] = Σ_p w[m, p] · h[p, m, c], summed in stream order.
  void weighted_stream_sum(View<const float> h, View<const float> w, View<float> out);

  // ---- guidance and sampling ----
  // logits [R, l·V], row b < B the conditional row of image b; jobs[B] in
  // backend memory (alloc_sample_jobs); uncond_row[B] in host memory. For a
  // guided image (uncond_row[b] >= 0): out[b] = a_b·cond − t_b·uncond with
  // t_b = jobs[b].params.cfg · ratio in double and a_b = float(1 + t_b), as
  // the reference rounds them; otherwise out[b] = cond. out [B, l·V].
  void guidance(View<const float> logits, View<const SampleJob> jobs, double ratio, View<const int64_t> uncond_row,
                View<float> out);
  // logits[B, l, V] (clobbered) → idx[B, l], image b drawn with jobs[b].
  // `filters`: whether some job keeps a top-k or top-p filter
  // (sample_filters); a backend may leave out the memory of sorting when
  // none does, so a call that says none while one does is refused.
  struct SampleArgs {
    bool filters = false;
    int scale_index = 0;
  };
  void sample(View<float> logits, View<const SampleJob> jobs, const SampleArgs& a, View<int32_t> idx);

  // ---- image-space ops, NCHW ----
  // A convolution's stride and zero padding (top, left, bottom, right).
  struct ConvGeometry {
    int stride = 1;
    int pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
    // Stride 1, k/2 on every side: the output has the input's size.
    static ConvGeometry same(int64_t k);
  };
  // out[N, Co, Ho, Wo] = conv(x[N, Ci, H, W], w[Co, Ci, k, k]) + b[Co] (b may be empty).
  void conv2d(View<const float> x, View<const MatrixElement> w, View<const float> b, const ConvGeometry& g,
              View<float> out);
  // out[n] = conv(norm(x[n])) + b, or out[n] += conv(norm(x[n])) + b with
  // `add_to_out`: a stride-1 k×k convolution (k odd) with k/2 zero padding
  // of the normalised input (the padding is zero after normalisation).
  // The sum is (out + b) + the product, so a residual block adds its
  // second convolution to its input in place.
  void normalized_conv2d(View<const float> x, const NormOnRead& norm, View<const MatrixElement> w, View<const float> b,
                         bool add_to_out, View<float> out);
  // stats[n, g, :] = (mean, float(1/sqrt(var + eps))) of x[N, C, HW] in group
  // g, as group_norm() computes them.
  void group_norm_stats(View<const float> x, int groups, float eps, View<float> stats);
  struct GroupNormArgs {
    int groups = 0;
    View<const float> gamma, beta;  // [C]
    float eps = 0.0f;
    bool then_silu = false;
  };
  // out[N, C, HW] = GroupNorm(x) (then SiLU); out may be x.
  void group_norm(View<const float> x, const GroupNormArgs& a, View<float> out);
  // x [NC, H, W] → out [NC, 2H, 2W]
  void upsample_nearest2x(View<const float> x, View<float> out);
  // PyTorch bicubic (align_corners=False, A = -0.75, clamped borders), x
  // [NC, h, w] → out [NC, H, W].
  void upsample_bicubic(View<const float> x, View<float> out);
  // PyTorch area (adaptive average pooling), x [NC, H, W] → out [NC, h, w].
  void downsample_area(View<const float> x, View<float> out);
  // out[n, p, c] = x[n, c, p] (x [N, C, P], out [N, P, C])
  void chw_to_tokens(View<const float> x, View<float> out);
  // out[n, c, p] = table[idx[n, p], c] (table [V, C], idx [N, P], out [N, C, P])
  void embed_chw(View<const float> table, View<const int32_t> idx, View<float> out);
  // out[r, :] = table[idx[r], :] (idx [n], out [n, C])
  void gather_rows(View<const float> table, View<const int32_t> idx, View<float> out);
  // idx[n] = argmin_v ‖z[n] − e[v]‖² computed as |z|² + |e|² − 2 z·e (first
  // on ties); z [n, C], codebook e [V, C].
  void nearest_code(View<const float> z, View<const float> codebook, View<int32_t> idx);
  void clamp(View<float> x, float lo, float hi);
  void fill_zero(View<float> x);

 protected:
  // The implementations, called by the ops above with checked extents
  // (shapes row-major, last index fastest). Weights and caches arrive as
  // the float pointers of the handles the backend itself made.
  virtual void do_linear(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, float* y) = 0;
  virtual void do_linear_gelu(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                              float* y) {
    do_linear(x, M, K, w, b, N, y);
    do_gelu_tanh_inplace(y, static_cast<size_t>(M * N));
  }
  virtual void do_mlp(const float* x, int64_t M, int64_t C, const float* w1, const float* b1, int64_t H,
                      const float* w2, const float* b2, int64_t N, float* hidden, float* y) {
    do_linear_gelu(x, M, C, w1, b1, H, hidden);
    do_linear(hidden, M, H, w2, b2, N, y);
  }
  virtual void do_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;

  virtual void do_silu(const float* x, size_t n, float* y) = 0;
  virtual void do_gelu_tanh_inplace(float* x, size_t n) = 0;
  virtual void do_add_inplace(float* y, const float* x, size_t n) = 0;
  virtual void do_axpby_inplace(float* y, float a, const float* x, float b, size_t n) = 0;
  virtual void do_add_scaled_rows(float* y, const float* x, const float* v, int64_t v_stride, int64_t rows,
                                  int64_t tokens, int64_t C) = 0;
  virtual void do_add_broadcast_rows(float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) = 0;
  virtual void do_softmax_rows(float* x, int64_t n, int64_t len) = 0;

  virtual void do_adaln_modulate(const float* x, int64_t rows, int64_t tokens, int64_t C, const float* scale,
                                 const float* shift, int64_t mod_stride, float eps, float* out) = 0;
  virtual void do_add_scaled_rows_then_adaln(float* x, const float* delta, const float* gamma, int64_t gamma_stride,
                                             int64_t rows, int64_t tokens, int64_t C, const float* scale,
                                             const float* shift, int64_t mod_stride, float eps, float* out) {
    do_add_scaled_rows(x, delta, gamma, gamma_stride, rows, tokens, C);
    do_adaln_modulate(x, rows, tokens, C, scale, shift, mod_stride, eps, out);
  }
  virtual void do_split_qkv_to_cache(const float* qkv, int64_t rows, int64_t tokens, int64_t H, int64_t hd, bool l2norm,
                                     const float* q_scale_host, float* q, float* k_cache, float* v_cache,
                                     int64_t capacity, int64_t pos) = 0;
  virtual void do_attention(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int64_t H,
                            int64_t tokens, int64_t hd, int64_t capacity, int64_t len, float scale,
                            const KvPrefix& prefix, float* out) = 0;

  virtual void do_interleave_streams(const float* h, int64_t P, int64_t M, int64_t C, float* z) = 0;
  virtual void do_stream_weights(float* a, int64_t M, int64_t P, double smooth) = 0;
  virtual void do_weighted_stream_sum(const float* h, const float* w, int64_t P, int64_t M, int64_t C, float* out) = 0;

  virtual void do_guidance(const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                           const int64_t* uncond_row, float* out) = 0;
  virtual void do_sample(float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters,
                         int scale_index, int32_t* idx) = 0;

  virtual void do_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const float* w, const float* b,
                         int64_t Co, int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r, float* out) = 0;
  virtual void do_normalized_conv2d(const float* x, int64_t N, int64_t Ci, int64_t H, int64_t W, const NormOnRead& norm,
                                    const float* w, const float* b, int64_t Co, int k, bool add_to_out, float* out) = 0;
  virtual void do_group_norm_stats(const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                                   float* stats) = 0;
  virtual void do_group_norm(const float* x, int64_t N, int64_t C, int64_t HW, int groups, const float* gamma,
                             const float* beta, float eps, bool then_silu, float* out) = 0;
  virtual void do_upsample_nearest2x(const float* x, int64_t NC, int64_t H, int64_t W, float* out) = 0;
  virtual void do_upsample_bicubic(const float* x, int64_t NC, int64_t h, int64_t w, int64_t H, int64_t W,
                                   float* out) = 0;
  virtual void do_downsample_area(const float* x, int64_t NC, int64_t H, int64_t W, int64_t h, int64_t w,
                                  float* out) = 0;
  virtual void do_chw_to_tokens(const float* x, int64_t N, int64_t C, int64_t P, float* out) = 0;
  virtual void do_embed_chw(const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P, float* out) = 0;
  virtual void do_gather_rows(const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) = 0;
  virtual void do_nearest_code(const float* z, int64_t n, const float* codebook, int64_t V, int64_t C,
                               int32_t* idx) = 0;
  virtual void do_clamp(float* x, size_t n, float lo, float hi) = 0;
  virtual void do_fill_zero(float* x, size_t n) = 0;
};

// Whether some job keeps a top-k (0 < k < V) or top-p filter: sample()'s
// `filters` for these jobs.
bool sample_filters(const SampleJob* jobs, int64_t n, int64_t V);

// precision: "fp32", "bf16" or "int8" (products of uploaded weights); the kernels
// use what the processor has, capped by VARPS_CPU_ISA.
std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& precision = "fp32");
// Throws varps::Error as check_backend_choice (varps/pipeline.hpp) does,
// and when the device is not compiled in (CUDA needs -DVARPS_CUDA=ON) or not
// present.
std::unique_ptr<Backend> make_backend(const BackendOptions& opts);
// Defined only in builds with VARPS_CUDA=ON.
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts);
// True when this build contains the CUDA backend.
bool cuda_backend_compiled();

}  // namespace varps
