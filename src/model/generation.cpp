// Generation: one batched request, scale by scale. The rows of all streams
// go through the transformer in one pass per scale; guidance combines each
// guided stream's conditional and unconditional rows; sampled token maps
// extend f_hat, whose area-downsampled tokens are the next scale's input.
#include "model/generation.hpp"

#include <cmath>

#include "varps/error.hpp"

namespace varps {

// Stage times from the backend's work clock: a mark at each stage boundary,
// read once after the last transfer, so on a device no stage waits for the
// host and the times are the device's.
class StageClock {
 public:
  enum class Stage { Setup, Transformer, Sampling, Residual, Decode };
  explicit StageClock(Backend& be) : clock_(be.work_clock()) { clock_->mark(); }
  // The stage that ends now (scale si for the transformer).
  void lap(Stage stage, int si = 0) {
    clock_->mark();
    laps_.push_back({stage, si});
  }
  // Waits for the last mark.
  void fill(StageTimings& t, int scales) {
    const std::vector<double> ms = clock_->intervals_ms();
    t.transformer_ms.assign(static_cast<size_t>(scales), 0.0);
    for (size_t i = 0; i < laps_.size() && i < ms.size(); ++i) {
      switch (laps_[i].stage) {
        case Stage::Setup: t.setup_ms += ms[i]; break;
        case Stage::Transformer: t.transformer_ms[laps_[i].si] += ms[i]; break;
        case Stage::Sampling: t.sampling_ms += ms[i]; break;
        case Stage::Residual: t.residual_ms += ms[i]; break;
        case Stage::Decode: t.decode_ms += ms[i]; break;
      }
    }
  }

 private:
  struct Lap {
    Stage stage;
    int si;
  };
  std::unique_ptr<WorkClock> clock_;
  std::vector<Lap> laps_;
};

namespace {

// The arrays of a request of `shape`, allocated once for every later request
// of the same shape.
std::unique_ptr<GenerationState> new_state(const Pipeline::Impl& impl, const GenerationShape& shape) {
  Backend& be = *impl.backend;
  const VarConfig& cfg = impl.var->config();
  const int64_t B = shape.images, K = cfg.num_scales();
  const StateArrays a = state_arrays(impl, B, shape.image_rows, shape.fast);
  auto st = std::make_unique<GenerationState>();
  st->shape = shape;
  st->session = impl.var->new_session(shape.image_rows, impl.adapter ? &*impl.adapter : nullptr);
  st->x = be.alloc(a.x);
  st->logits = be.alloc(a.logits);
  if (a.guided_logits) st->guided_logits = be.alloc(a.guided_logits);
  st->scale_offset = a.scale_offset;
  st->all_idx = be.alloc_i32(static_cast<size_t>(a.scale_offset.back()));
  st->next_tokens = be.alloc(a.next_tokens);
  st->jobs = be.alloc_sample_jobs(a.jobs);
  st->f_hat = impl.vae->new_map(B, cfg.cvae, a.side, a.side);
  st->residual = impl.vae->new_residual_maps(B, a.side);
  st->steps.resize(static_cast<size_t>(K));
  if (a.refiner_session) {
    st->refiner_session = impl.refiner->new_session(shape.image_rows);
    st->refiner_x = be.alloc(a.refiner_x);
  }
  if (a.hidden) st->hidden = be.alloc(a.hidden);
  return st;
}

// An edit's sampled map [B·l] on the backend takes the input's token where
// the mask keeps it.
void keep_input_tokens(Backend& be, const std::vector<int32_t>& input, const std::vector<uint8_t>& keep,
                       int32_t* idx) {
  std::vector<int32_t> map(input.size());
  be.download_i32(idx, map.size(), map.data());
  for (size_t i = 0; i < map.size(); ++i)
    if (keep[i]) map[i] = input[i];
  be.upload_into_i32(map.data(), map.size(), idx);
}

// The decoder runs after the last scale, when the KV cache is dead until the
// next request's first scale rewrites it: its arena lies in the cache's
// memory when that holds it (Vqvae::new_decoder_arena).
DecoderState new_decoder_state(const Vqvae& vae, const FeatureMap& f_hat, const VarSession& session) {
  const int64_t per_pass = vae.decode_images_per_pass(f_hat.h, f_hat.n);
  // The cache's bytes lent out as floats: nothing reads them as a cache
  // before the next request's first scale writes it.
  const Array<float> kv_memory = session.kv_memory.reinterpret_as<float>(session.kv_bytes / sizeof(float));
  DecoderState d{vae.new_decoder_arena(f_hat.h, per_pass, kv_memory), vae.new_image_map(f_hat), {}, {}};
  d.passes = Vqvae::decoder_passes(f_hat, d.images, per_pass);
  d.steps.resize(d.passes.size());
  return d;
}

}  // namespace

RowLayout layout_rows(const std::vector<ImageRequest>& requests, int num_classes) {
  RowLayout L;
  const int64_t B = static_cast<int64_t>(requests.size());
  for (int64_t b = 0; b < B; ++b) {
    L.row_class.push_back(requests[b].class_id);
    L.row_stream.push_back(b);
  }
  for (int64_t b = 0; b < B; ++b) {
    if (requests[b].sampling.cfg == 0.0) {
      L.uncond_row.push_back(-1);
      continue;
    }
    L.uncond_row.push_back(static_cast<int64_t>(L.row_class.size()));
    L.row_class.push_back(num_classes);
    L.row_stream.push_back(b);
  }
  return L;
}

void check_requests(const std::vector<ImageRequest>& requests) {
  if (requests.empty()) throw Error("nothing to generate: no images requested");
  for (const auto& r : requests) {
    const auto& s = r.sampling;
    if (!(s.cfg >= 0.0) || !std::isfinite(s.cfg)) throw Error("cfg must be a finite number >= 0");
    if (s.top_k < 0) throw Error("top_k must be >= 0");
    if (!(s.top_p >= 0.0 && s.top_p <= 1.0)) throw Error("top_p must be in [0, 1]");
    if (!(s.temperature > 0.0) || !std::isfinite(s.temperature)) throw Error("temperature must be a finite number > 0");
  }
}

uint64_t StateArrays::kv_bytes(const Backend& be) const {
  return session.kv_bytes(be) + (refiner_session ? refiner_session->kv_bytes(be) : 0);
}

uint64_t StateArrays::activation_bytes(const Backend& be) const {
  const auto f = [&](uint64_t n) { return n ? be.array_bytes(n, sizeof(float)) : 0; };
  return session.activation_bytes(be) + f(x) + f(logits) + f(guided_logits) + f(next_tokens) + f(f_hat) +
         be.array_bytes(static_cast<uint64_t>(scale_offset.back()), sizeof(int32_t)) +
         be.array_bytes(jobs, sizeof(SampleJob)) +
         (refiner_session ? refiner_session->activation_bytes(be) + f(refiner_x) : 0) + f(hidden);
}

StateArrays state_arrays(const Pipeline::Impl& impl, int64_t B, int64_t N, const FastModes& fast) {
  const VarConfig& cfg = impl.var->config();
  const uint64_t max_l = static_cast<uint64_t>(cfg.max_scale_tokens()), b = static_cast<uint64_t>(B);
  StateArrays a;
  a.images = B;
  a.side = cfg.patch_nums.back();
  a.session = impl.var->session_arrays(N, impl.adapter ? &*impl.adapter : nullptr);
  a.x = static_cast<uint64_t>(a.session.rows) * max_l * static_cast<uint64_t>(cfg.embed_dim);
  a.logits = static_cast<uint64_t>(N) * max_l * static_cast<uint64_t>(cfg.vocab_size);
  if (N > B) a.guided_logits = b * max_l * static_cast<uint64_t>(cfg.vocab_size);
  a.next_tokens = b * max_l * static_cast<uint64_t>(cfg.cvae);
  a.f_hat = b * static_cast<uint64_t>(cfg.cvae * a.side * a.side);
  a.scale_offset.assign(1, 0);
  for (int pn : cfg.patch_nums) a.scale_offset.push_back(a.scale_offset.back() + B * pn * pn);
  a.jobs = b;
  if (fast.refine_from_scale > 0 && impl.refiner) {
    a.refiner_session = impl.refiner->session_arrays(N);
    a.refiner_x = static_cast<uint64_t>(N) * max_l * static_cast<uint64_t>(impl.refiner->config().embed_dim);
  }
  if (fast.prune > 0.0) {
    const int64_t C = std::max(cfg.embed_dim, impl.refiner ? impl.refiner->config().embed_dim : 0);
    a.hidden = static_cast<uint64_t>(N) * max_l * static_cast<uint64_t>(C);
  }
  return a;
}

Generation::Generation(const Pipeline::Impl& impl, const std::vector<ImageRequest>& requests,
                       const GenerateOptions& opts, const TokenEdits* edits, const StateSource& reuse)
    : impl_(impl), opts_(opts), edits_(edits), start_(std::chrono::steady_clock::now()) {
  Backend& be = *impl.backend;
  const VarTransformer& var = *impl.var;
  const VarConfig& cfg = var.config();
  const int64_t B = static_cast<int64_t>(requests.size());
  const int64_t V = cfg.vocab_size, K = cfg.num_scales();
  if (opts.forced_tokens && static_cast<int64_t>(opts.forced_tokens->size()) != K)
    throw Error("teacher forcing needs " + std::to_string(K) + " token maps");
  check_fast_modes(opts.fast, cfg, impl.refiner.has_value());
  if (opts.fast.any() && impl.adapter)
    throw Error("the fast modes (" + describe(opts.fast) + ") do not combine with a ParScale adapter");

  rows_ = layout_rows(requests, cfg.num_classes);
  const int64_t N = static_cast<int64_t>(rows_.row_class.size());  // image rows
  const StreamAdapter* adapter = impl.adapter ? &*impl.adapter : nullptr;
  std::vector<SampleJob> jobs;
  for (const auto& r : requests) jobs.push_back({r.seed, r.sampling});

  for (auto* c : {&out_.counters.passes_per_scale, &out_.counters.rows_per_scale, &out_.counters.tokens_per_scale,
                  &out_.counters.refiner_passes_per_scale, &out_.counters.refiner_tokens_per_scale})
    c->assign(static_cast<size_t>(K), 0);
  clock_ = std::make_unique<StageClock>(be);  // its marks lie within [start_, the end]
  var.check_classes(rows_.row_class);         // before any memory is taken for them
  shape_ = {B, N, rows_.uncond_row, adapter ? adapter->streams : 1, sample_filters(jobs.data(), B, V), opts.fast};
  state_ = reuse ? reuse(shape_) : nullptr;
  if (!state_) state_ = new_state(impl, shape_);
  be.upload_sample_jobs(jobs.data(), jobs.size(), state_->jobs.data());
  var.begin(state_->session, rows_.row_class);
  be.fill_zero(state_->f_hat.flat());
  var.first_scale_input(state_->session, state_->x.data());
  main_ = {&var, &state_->session, state_->x.data(), 0};
  if (opts.fast.refine_from_scale > 0) {
    refiner_ = ModelRun{&*impl.refiner, &*state_->refiner_session, state_->refiner_x.data(), 0};
    impl.refiner->begin(*refiner_->session, rows_.row_class);
    impl.refiner->first_scale_input(*refiner_->session, refiner_->x);
  }
  out_.tokens.assign(static_cast<size_t>(B), TokenMaps(static_cast<size_t>(K)));
  clock_->lap(StageClock::Stage::Setup);
}

Generation::~Generation() = default;

bool Generation::sampled_all() const { return si_ == impl_.var->config().num_scales(); }

// Each scale runs three steps, and each decoder pass one, on the state's
// arrays, with the same shapes and arguments for every request of this
// shape, so the backend may replay recordings of them; the request's own
// values (classes, sampling parameters) are in those arrays.
void Generation::run_step(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) {
  out_.counters.replayed_steps += impl_.backend->run_recorded(slot, step) == StepRun::Replayed;
}

bool Generation::refiner_draws(int si) const {
  return opts_.fast.refine_from_scale > 0 && si + 1 >= opts_.fast.refine_from_scale;
}

int64_t Generation::rows_at(int si) const {
  const int until = opts_.fast.cfg_until_scale;
  return until > 0 && si + 1 > until ? shape_.images : shape_.image_rows;
}

bool Generation::draws_next_pruned(const ModelRun& m) const {
  return si_ + 1 < impl_.var->config().num_scales() && pruned_at(si_ + 1) && &drawer(si_ + 1) == &m;
}

bool Generation::pruned_at(int si) const {
  return opts_.fast.prune > 0.0 && si >= impl_.var->config().num_scales() - opts_.fast.prune_scales;
}

// The drawing model's pass writes the logits, the refiner's shadow pass
// (before it draws) only fills its cache (spec: docs/spec/fast-modes.md
// "Drafter and refiner"). At a pruned scale the drawing
// model's input is compacted to the kept tokens first; before a pruned
// scale, the model that draws it keeps this scale's head input.
VarTransformer::ScalePass Generation::pass_of(ModelRun& m, bool draws) {
  const VarConfig& cfg = m.var->config();
  const int si = si_;
  // Every row of the session (P·N under an adapter), or the conditional ones.
  const int64_t rows = rows_at(si) == shape_.image_rows ? m.session->rows : rows_at(si);
  const int64_t l = m.var->scale_tokens(1, si), C = cfg.embed_dim;
  VarTransformer::ScalePass p{m.session, m.x, si, draws ? state_->logits.data() : nullptr, rows, l, m.cached};
  if (draws && pruned_at(si)) {
    Backend& be = *impl_.backend;
    std::vector<float> x(static_cast<size_t>(rows * l * C));
    be.download(m.x, x.size(), x.data());
    pruned_.emplace(x.data(), rows, l, C, kept_tokens(l, opts_.fast.prune));
    be.upload_into(x.data(), static_cast<size_t>(rows * pruned_->keep() * C), m.x);
    p.tokens = pruned_->keep();
    p.logits = nullptr;
    p.hidden_out = state_->hidden.data();
  } else if (draws_next_pruned(m)) {
    p.hidden_out = state_->hidden.data();
  }
  return p;
}

void Generation::after_pass(ModelRun& m, const VarTransformer::ScalePass& p, bool draws) {
  Backend& be = *impl_.backend;
  const VarConfig& cfg = m.var->config();
  const int si = si_;
  const int64_t C = cfg.embed_dim, side = cfg.patch_nums[si];
  const bool keep_hidden = draws_next_pruned(m);
  if (draws && pruned_) {
    std::vector<float> h(static_cast<size_t>(p.rows * p.tokens * C)), full(static_cast<size_t>(p.rows * side * side * C));
    be.download(p.hidden_out, h.size(), h.data());
    pruned_->restore(h.data(), prev_hidden_.data(), prev_side_, side, full.data());
    pruned_.reset();
    be.upload_into(full.data(), full.size(), state_->hidden.data());
    m.var->head(state_->hidden.data(), p.rows * side * side, state_->logits.data());
    if (keep_hidden) prev_hidden_ = std::move(full);
  } else if (p.hidden_out) {
    prev_hidden_.resize(static_cast<size_t>(p.rows * p.tokens * C));
    be.download(p.hidden_out, prev_hidden_.size(), prev_hidden_.data());
  }
  if (keep_hidden) prev_side_ = side;
  m.cached += p.tokens;
  const bool refiner = refiner_ && &m == &*refiner_;
  EngineCounters& n = out_.counters;
  ++(refiner ? n.refiner_passes_per_scale : n.passes_per_scale)[si];
  (refiner ? n.refiner_tokens_per_scale : n.tokens_per_scale)[si] += p.rows * p.tokens;
  if (!refiner) n.rows_per_scale[si] += p.rows;
}

std::optional<VarTransformer::ScalePass> Generation::begin_pass() {
  VARPS_CHECK(!sampled_all(), "a generation past its last scale has no pass");
  if (refiner_draws(si_)) return std::nullopt;
  main_pass_ = pass_of(main_, true);
  return main_pass_;
}

void Generation::forward() {
  const std::optional<VarTransformer::ScalePass> p = begin_pass();
  if (p) {
    const auto pass = [&] { impl_.var->forward_scale(*p); };
    // A pruned scale's tokens are chosen on the host: that step runs as it is.
    if (pruned_) {
      pass();
    } else {
      run_step(state_->steps[si_].transformer, pass);
    }
  }
  end_pass();
}

void Generation::end_pass() {
  if (main_pass_) after_pass(main_, *main_pass_, true);
  main_pass_.reset();
  if (refiner_) {
    const bool draws = refiner_draws(si_);
    const VarTransformer::ScalePass p = pass_of(*refiner_, draws);
    refiner_->var->forward_scale(p);
    after_pass(*refiner_, p, draws);
  }
  clock_->lap(StageClock::Stage::Transformer, si_);
}

void Generation::sample() {
  Backend& be = *impl_.backend;
  const VarTransformer& var = *impl_.var;
  const Vqvae& vae = *impl_.vae;
  const VarConfig& cfg = var.config();
  GenerationState& st = *state_;
  VarSession& session = st.session;
  const int si = si_;
  const int64_t B = shape_.images, N = shape_.image_rows, V = cfg.vocab_size, K = cfg.num_scales();
  const int64_t pn = cfg.patch_nums[si], l = pn * pn;
  // Guidance at this scale (spec: docs/spec/fast-modes.md "Guidance until a scale").
  const bool guided = rows_at(si) > B;
  float* const logits = st.logits.data();
  if (opts_.on_stream_weights && session.adapter) {
    const int64_t P = session.streams;
    std::vector<float> host(static_cast<size_t>(N * l * P));
    be.download(session.agg_weights.data(), host.size(), host.data());
    opts_.on_stream_weights(si, host.data(), N, l, P);
  }

  // Guidance: t = cfg · si/(K−1); logits = (1+t)·cond − t·uncond.
  const double ratio = K > 1 ? static_cast<double>(si) / static_cast<double>(K - 1) : 0.0;
  float* const lg = guided ? st.guided_logits.data() : logits;
  int32_t* const idx = st.all_idx.data() + st.scale_offset[si];
  const auto guide = [&] {
    if (guided)
      be.guidance(view(logits, {N, l * V}), st.jobs.as({B}), ratio, host_view(rows_.uncond_row.data(), {B}),
                  view(lg, {B, l * V}));
  };
  const auto draw = [&] { be.sample(view(lg, {B, l, V}), st.jobs.as({B}), {shape_.filters, si}, view(idx, {B, l})); };
  // Inspection, teacher forcing and edits move data to and from the host in
  // the middle of sampling, so that step then runs as it is.
  if (!opts_.on_logits && !opts_.forced_tokens && !edits_) {
    run_step(st.steps[si].sampling, [&] {
      guide();
      draw();
    });
  } else {
    guide();
    if (opts_.on_logits) {
      std::vector<float> host(static_cast<size_t>(B * l * V));
      be.download(lg, host.size(), host.data());
      opts_.on_logits(si, host.data(), B, l, V);
    }
    if (opts_.forced_tokens) {
      const std::vector<int32_t>& forced = (*opts_.forced_tokens)[si];
      check_token_map(forced, B * l, V, si);
      be.upload_into_i32(forced.data(), forced.size(), idx);
    } else {
      draw();
    }
    if (edits_) keep_input_tokens(be, edits_->tokens[si], edits_->keep[si], idx);
  }
  clock_->lap(StageClock::Stage::Sampling);

  run_step(st.steps[si].residual, [&] {
    vae.add_scale(si, cfg.patch_nums, idx, st.f_hat, st.residual);
    if (si + 1 < K) {
      vae.next_scale_tokens(st.f_hat, cfg.patch_nums[si + 1], st.residual, st.next_tokens.data());
      if (!refiner_draws(si + 1))
        var.scale_input(session, st.next_tokens.data(), B, si + 1, rows_.row_stream, st.x.data());
      if (refiner_)
        refiner_->var->scale_input(*refiner_->session, st.next_tokens.data(), B, si + 1, rows_.row_stream,
                                   refiner_->x);
    }
  });
  clock_->lap(StageClock::Stage::Residual);
  ++si_;
  if (opts_.progress) opts_.progress(si, static_cast<int>(K));
}

GeneratedImages Generation::finish() {
  VARPS_CHECK(sampled_all(), "a generation finishes after its last scale");
  Backend& be = *impl_.backend;
  const Vqvae& vae = *impl_.vae;
  const VarConfig& cfg = impl_.var->config();
  GenerationState& st = *state_;
  const int64_t B = shape_.images, K = cfg.num_scales();
  // The one transfer of tokens, after the last scale: no scale waits for the host.
  std::vector<int32_t> host_idx(static_cast<size_t>(st.scale_offset[K]));
  be.download_i32(st.all_idx.data(), host_idx.size(), host_idx.data());
  for (int si = 0; si < K; ++si) {
    const int64_t l = cfg.patch_nums[si] * cfg.patch_nums[si];
    const auto first = host_idx.begin() + st.scale_offset[si];
    for (int64_t b = 0; b < B; ++b) out_.tokens[b][si].assign(first + b * l, first + (b + 1) * l);
  }
  clock_->lap(StageClock::Stage::Sampling);
  if (opts_.keep_f_hat) out_.f_hat = impl_.download_map(st.f_hat);
  out_.count = B;
  if (opts_.decode) {
    if (!st.decoder) st.decoder = new_decoder_state(vae, st.f_hat, st.session);
    DecoderState& dec = *st.decoder;
    for (size_t p = 0; p < dec.passes.size(); ++p)
      run_step(dec.steps[p], [&] { vae.decode_pass(dec.passes[p].f_hat, dec.arena, dec.passes[p].img); });
    const FeatureMap& img = dec.images;
    // [-1, 1] → [0, 1]
    out_.height = img.h;
    out_.width = img.w;
    out_.pixels.resize(img.size());
    be.download(img.data.data(), img.size(), out_.pixels.data());
    for (float& v : out_.pixels) v = (v + 1.0f) * 0.5f;
    clock_->lap(StageClock::Stage::Decode);
  }
  clock_->fill(out_.timings, static_cast<int>(K));
  out_.timings.total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  return std::move(out_);
}

}  // namespace varps
