#pragma once
// The public entry point: a VAR transformer and its VQVAE tokenizer on one
// backend. `generate` turns class labels into images (tokens to pixels);
// the lower-level calls expose each stage for tools and tests.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "varps/adapter.hpp"
#include "varps/config.hpp"
#include "varps/device_memory.hpp"
#include "varps/edit.hpp"
#include "varps/fast_modes.hpp"
#include "varps/work_clock.hpp"
#include "varps/sampling.hpp"
#include "varps/tensor.hpp"

namespace varps {

struct ImageRequest {
  int class_id = 0;  // num_classes means unconditional
  uint64_t seed = 0;
  SamplingParams sampling;
};

// token maps of one image: [scale][pn·pn], row-major
using TokenMaps = std::vector<std::vector<int32_t>>;

// Stage times come from the backend's work clock (varps/work_clock.hpp): on a
// device, events on its stream, so they are the device's and taking them
// does not stall it. total_ms is the host's wall clock around the request.
struct StageTimings {
  std::vector<double> transformer_ms;  // per scale
  double setup_ms = 0;     // class embedding, AdaLN modulation, KV cache
  double sampling_ms = 0;  // guidance + top-k/top-p + draw
  double residual_ms = 0;  // bicubic up, Phi, area down, next input
  double decode_ms = 0;    // VQVAE decoder
  double total_ms = 0;
  // The stages together: the work clock's span of the request.
  double stages_ms() const {
    double sum = setup_ms + sampling_ms + residual_ms + decode_ms;
    for (double ms : transformer_ms) sum += ms;
    return sum;
  }
};

// How the streams of one request go through the backbone: all in one
// batched pass per scale, or each stream alone, one after the other (for
// comparison).
enum class Schedule { Batched, Sequential };

// What the engine did, counted where it does it.
struct EngineCounters {
  std::vector<int64_t> passes_per_scale;  // backbone passes run at each scale
  std::vector<int64_t> rows_per_scale;    // rows through the backbone at each scale, summed over passes
  std::vector<int64_t> tokens_per_scale;  // token rows through the backbone at each scale (rows × tokens)
  // With a refiner (FastModes::refine_from_scale): its passes and token rows.
  std::vector<int64_t> refiner_passes_per_scale, refiner_tokens_per_scale;
  // Steps launched from a recording (a CUDA graph): three per scale
  // (transformer, sampling, residual) and one per decoder pass, once a
  // shape has been recorded.
  int64_t replayed_steps = 0;
};

// The memory a request needs, planned once before it runs.
struct MemoryPlan {
  uint64_t weights = 0;      // shared by every stream
  uint64_t kv_cache = 0;     // per row, all scales
  // Transformer workspace per row at the largest scale, logits, decoder maps,
  // and the backend's own workspaces (products, im2col, conversions).
  uint64_t activations = 0;
  uint64_t workspace = 0;  // the part of `activations` the backend holds for its own work
  uint64_t total() const { return weights + kv_cache + activations; }
};

// What a request's stages must do at least, from the shapes alone: the
// floating-point operations of the matrix products and attention, and the
// compulsory memory traffic (each weight read once per backbone pass, the KV
// cache read and the new keys and values written, at the cache's precision,
// the logits written; for the decoder each convolution's weight read once
// per decoder pass, its input read and its output written).
// Elementwise ops and activations between ops are left out, so rates from
// these figures are lower bounds of what the hardware did.
struct StageWork {
  double flops = 0;
  double bytes = 0;
  StageWork& operator+=(const StageWork& o) {
    flops += o.flops;
    bytes += o.bytes;
    return *this;
  }
};
struct RequestWork {
  std::vector<StageWork> transformer;  // per scale: every block, the head (and the ParScale aggregation)
  StageWork decode;                    // the VQVAE decoder from f_hat to pixels
  StageWork transformer_total() const {
    StageWork t;
    for (const StageWork& s : transformer) t += s;
    return t;
  }
};

struct GenerateOptions {
  Schedule schedule = Schedule::Batched;
  // Called after each scale with (scale index, number of scales).
  std::function<void(int, int)> progress;
  // Called with the guided logits [B, l, V] handed to the sampler (host
  // copy); for inspection and tests.
  std::function<void(int scale, const float* logits, int64_t B, int64_t l, int64_t V)> on_logits;
  // ParScale: called after each scale with the aggregation weights
  // [N, l, P] of the image rows (conditional rows, then unconditional ones
  // of guided images), only when an adapter is attached.
  std::function<void(int scale, const float* weights, int64_t rows, int64_t l, int64_t P)> on_stream_weights;
  // Teacher forcing: use these token maps ([scale][B·pn²]) instead of sampling.
  const std::vector<std::vector<int32_t>>* forced_tokens = nullptr;
  bool keep_f_hat = false;
  bool decode = true;
  // Training-free fast modes; all off by default (the exact path).
  FastModes fast;
};

struct GeneratedImages {
  int64_t count = 0, height = 0, width = 0;
  std::vector<float> pixels;      // [count, 3, H, W] in [0, 1]
  std::vector<TokenMaps> tokens;  // per image
  Tensor f_hat;                   // [count, Cvae, h, w] when keep_f_hat
  StageTimings timings;
  EngineCounters counters;
};

// One zero-shot edit: the token maps of the image to edit (as tokenize()
// gives them), the mask on its last token map, and the class, seed and
// sampling that generate the rest (class num_classes: plain in-painting).
struct EditRequest {
  ImageRequest image;
  TokenMaps input;
  EditMask mask;
};

// P streams of each class, class-major: class c's streams get seeds
// seed, seed + 1, ..., and the next class continues the count.
std::vector<ImageRequest> expand_streams(const std::vector<int>& classes, int streams, uint64_t seed,
                                         const SamplingParams& sampling);

struct PipelineOptions {
  int threads = 0;             // CPU threads; 0: all cores
  std::string device = "cpu";  // "cpu", or "cuda" in builds with VARPS_CUDA=ON
  int device_index = 0;        // which CUDA device (see cuda_device_count())
  // Matrix-product operands: "fp32", "bf16" (float32 sums), "int8" (CPU
  // only; int32 sums) or "fp16" (CUDA only; float32 sums).
  std::string precision = "fp32";
  // CUDA: each scale's transformer step is captured once as a graph and
  // replayed by later requests of the same shape; false runs every op as it
  // is (for comparison and debugging).
  bool cuda_graphs = true;
  // false: the VQVAE encoder (and quant_conv) is checked but not loaded, so
  // a pipeline that only generates does not hold it; encode() then throws.
  // Pipeline::vae_only always loads it.
  bool vae_encoder = true;
};

// CUDA devices this process can use; 0 in a build without the CUDA backend
// or on a machine without a GPU.
int cuda_device_count();

// Throws varps::Error when the device or precision name is unknown, or the
// device does not support the precision; says nothing of whether the device
// is compiled in or present (Pipeline's constructor says that).
void check_backend_choice(const std::string& device, const std::string& precision);

class Pipeline {
 public:
  // Official checkpoints (.pth or .safetensors). Throws varps::Error naming
  // the file and every missing, unexpected or mis-shaped tensor.
  static Pipeline from_files(const std::filesystem::path& var, const std::filesystem::path& vae,
                             const PipelineOptions& opts = {});
  // Deterministic random weights of a preset size ("tiny", "d16", ...).
  static Pipeline from_preset(const std::string& name, const PipelineOptions& opts = {}, uint64_t weight_seed = 0);
  // VQVAE only (for reconstruction); patch_nums default to the released ones.
  static Pipeline vae_only(const std::filesystem::path& vae, const PipelineOptions& opts = {});

  Pipeline(Pipeline&&) noexcept;
  Pipeline& operator=(Pipeline&&) noexcept;
  ~Pipeline();

  const VarConfig& var_config() const;  // throws for a VQVAE-only pipeline
  const VaeConfig& vae_config() const;
  std::string weights_origin() const;
  int threads() const;
  std::string backend_name() const;  // "cpu" or "cuda"
  std::string backend_info() const;  // dtype, libraries, kernels

  // One request: every stream through the backbone together (or one by
  // one with Schedule::Sequential). A stream's tokens and image depend only
  // on its own class, seed and sampling parameters.
  GeneratedImages generate(const std::vector<ImageRequest>& requests, const GenerateOptions& opts = {}) const;
  // Zero-shot edits, all in one batched pass per scale as generate() runs
  // its requests: after each scale is sampled, the positions the mask keeps
  // (keep_per_scale) take the input's tokens, so f_hat and the next scale's
  // input are built from the edited map (docs/editing.md). The tokens
  // returned are the edited maps. Throws varps::Error naming the edit and
  // the scale for input tokens that do not fit the model, and for a mask
  // that does not cover the last token map. Teacher forcing does not apply.
  GeneratedImages edit(const std::vector<EditRequest>& edits, const GenerateOptions& opts = {}) const;
  // Multi-scale token maps of images [B, 3, H, W] in [-1, 1] at the VAR's
  // scales, per image; needs the VQVAE encoder (PipelineOptions::vae_encoder)
  // and H = W = the VAR's last token-map side times the downsampling factor.
  std::vector<TokenMaps> tokenize(const Tensor& images) const;
  // ParScale: every image of later requests runs as the adapter's P
  // aggregated streams (spec: docs/spec/parscale.md). Throws varps::Error naming the
  // tensor and both shapes when the adapter does not fit the model; replaces
  // an attached adapter.
  void attach_adapter(const ParScaleAdapter& adapter);
  void detach_adapter();
  // CoDe: a smaller VAR of the same tokenizer, scales and classes that draws
  // the scales from FastModes::refine_from_scale on (docs/spec/fast-modes.md),
  // from a checkpoint or from a preset's random weights. Throws varps::Error
  // naming what differs when it does not fit; replaces an attached refiner.
  void attach_refiner(const std::filesystem::path& var);
  void attach_refiner_preset(const std::string& name, uint64_t weight_seed = 1);
  void detach_refiner();
  bool has_refiner() const;
  // P of the attached adapter; 1 without one.
  int adapter_streams() const;
  // Parameters of the VAR, the VQVAE (the encoder's too, loaded or not) and
  // the attached adapter, whatever precision they are stored in.
  uint64_t parameters() const;

  // Rows a request puts through the backbone in one batched pass: one per
  // image, plus one unconditional row per image that uses guidance; times
  // the adapter's P.
  int64_t rows_for(const std::vector<ImageRequest>& requests) const;
  MemoryPlan plan_memory(const std::vector<ImageRequest>& requests, Schedule schedule = Schedule::Batched,
                         const FastModes& fast = {}) const;
  // The work of generating `requests` (see RequestWork), at this backend's
  // matrix-product precision.
  RequestWork work(const std::vector<ImageRequest>& requests, Schedule schedule = Schedule::Batched) const;
  // Returns memory kept for reuse to the system: the last request's arrays
  // (kept for the next request of the same shape) and the backend's pools
  // (between benchmark runs, so each run's peak is its own).
  void release_cached_memory() const;
  // The backend's device memory (not available on the CPU), and a reset of
  // its peak to what is in use now.
  DeviceMemoryStats device_memory() const;
  // A clock in the backend's order of work: marks around generate() time it
  // as the device runs it (CUDA events on a GPU).
  std::unique_ptr<WorkClock> work_clock() const;
  void reset_peak_device_memory() const;

  // ---- stages ----
  // f_hat after each scale for token maps [scale][B·pn²]: [scale] → [B, Cvae, h, w]
  std::vector<Tensor> tokens_to_f_hats(const std::vector<std::vector<int32_t>>& tokens, int64_t images,
                                       const std::vector<int>& patch_nums) const;
  // clamp(decoder(post_quant_conv(f_hat)), -1, 1): [B, Cvae, h, w] → [B, 3, H, W]
  Tensor decode(const Tensor& f_hat) const;
  // quant_conv(encoder(img)): [B, 3, H, W] in [-1, 1] → [B, Cvae, h, w]
  Tensor encode(const Tensor& img) const;
  // Multi-scale token maps of f ([scale][B·pn²]), and the final f_hat.
  std::vector<std::vector<int32_t>> quantize(const Tensor& f, const std::vector<int>& patch_nums,
                                             Tensor* f_hat = nullptr) const;

  struct Impl;  // opaque: the backend and the models

 private:
  friend class RollingBatch;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace varps
