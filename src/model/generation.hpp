#pragma once
// One batched generation in flight, advanced a scale at a time (spec:
// docs/spec/var.md "One generation"). Pipeline::generate runs one to its
// end; a RollingBatch runs several whose scales share backbone passes.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "model/pipeline_impl.hpp"
#include "model/token_pruning.hpp"

namespace varps {

void check_requests(const std::vector<ImageRequest>& requests);

// Edits of a request, per scale [B·l]: the input tokens, and which
// positions keep them (1) rather than the sampled token (0).
struct TokenEdits {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> keep;
};

// Rows: the conditional row of every stream (row b is stream b), then one
// unconditional row for each stream that uses guidance, in stream order.
struct RowLayout {
  std::vector<int32_t> row_class;
  std::vector<int64_t> row_stream;  // stream whose input each row reads
  std::vector<int64_t> uncond_row;  // per stream; -1 without guidance
};
RowLayout layout_rows(const std::vector<ImageRequest>& requests, int num_classes);

// The arrays of a request of B images in N image rows beside the
// transformer's session and the residual path's maps, in elements: the one
// description new_state allocates from and plan_memory counts.
struct StateArrays {
  int64_t images = 0, side = 0;  // B, and the latent's side S
  SessionArrays session;
  uint64_t x = 0, logits = 0, guided_logits = 0, next_tokens = 0, f_hat = 0;  // float32
  std::vector<int64_t> scale_offset;  // where each scale's maps start in all_idx; the last is its size (int32)
  uint64_t jobs = 0;                  // SampleJob
  // With a refiner: its session and input; with pruning, the head's input.
  std::optional<SessionArrays> refiner_session;
  uint64_t refiner_x = 0, hidden = 0;  // float32
  uint64_t kv_bytes(const Backend& be) const;
  uint64_t activation_bytes(const Backend& be) const;
};
StateArrays state_arrays(const Pipeline::Impl& impl, int64_t B, int64_t N, const FastModes& fast = {});

class StageClock;

class Generation {
 public:
  // A state of this request's shape from `reuse` when it has one, a new one
  // otherwise. Throws varps::Error for a class outside the model before any
  // memory is taken.
  using StateSource = std::function<std::unique_ptr<GenerationState>(const GenerationShape&)>;
  Generation(const Pipeline::Impl& impl, const std::vector<ImageRequest>& requests, const GenerateOptions& opts,
             const TokenEdits* edits, const StateSource& reuse);
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  int next_scale() const { return si_; }
  bool sampled_all() const;
  int64_t images() const { return shape_.images; }
  const GenerationShape& shape() const { return shape_; }

  // The next scale's backbone passes, the model's replayed from its
  // recording where the backend keeps one.
  void forward();
  // forward() in two halves around a pass shared with other generations
  // (VarTransformer::forward_scales): begin_pass() gives the model's rows
  // for it (none when the refiner draws the scale); end_pass(), after it
  // ran, finishes the scale (restores pruned tokens, runs the refiner).
  std::optional<VarTransformer::ScalePass> begin_pass();
  void end_pass();
  // After the next scale's backbone pass: guidance, the draw (edits and
  // teacher forcing applied), f_hat, and the following scale's input.
  void sample();
  // After the last scale: the tokens and, with opts.decode, the images.
  GeneratedImages finish();
  // The state, for a later request of its shape; after finish().
  std::unique_ptr<GenerationState> release_state() { return std::move(state_); }

 private:
  void run_step(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step);
  // One model's rows in this generation: the pipeline's model or the refiner.
  struct ModelRun {
    const VarTransformer* var = nullptr;
    VarSession* session = nullptr;
    float* x = nullptr;
    int64_t cached = 0;  // keys in its cache
  };
  bool refiner_draws(int si) const;
  const ModelRun& drawer(int si) const { return refiner_draws(si) ? *refiner_ : main_; }
  int64_t rows_at(int si) const;  // N, or B once the unconditional rows stop
  bool pruned_at(int si) const;
  // `m` draws the next scale, and it is pruned: this scale's head input is
  // what its pruned tokens are restored from.
  bool draws_next_pruned(const ModelRun& m) const;
  // A pass of `m` at the next scale; `draws`: its logits are sampled.
  VarTransformer::ScalePass pass_of(ModelRun& m, bool draws);
  void after_pass(ModelRun& m, const VarTransformer::ScalePass& p, bool draws);

  const Pipeline::Impl& impl_;
  const GenerateOptions& opts_;
  const TokenEdits* edits_;
  RowLayout rows_;
  GenerationShape shape_;
  std::unique_ptr<GenerationState> state_;
  std::unique_ptr<StageClock> clock_;
  std::chrono::steady_clock::time_point start_;
  GeneratedImages out_;
  int si_ = 0;
  ModelRun main_;
  std::optional<ModelRun> refiner_;
  std::optional<VarTransformer::ScalePass> main_pass_;  // between begin_pass and end_pass
  std::optional<PrunedScale> pruned_;  // the drawing model's, at a pruned scale
  std::vector<float> prev_hidden_;     // the head's input of the scale before a pruned one, host
  int64_t prev_side_ = 0;
};

}  // namespace varps
