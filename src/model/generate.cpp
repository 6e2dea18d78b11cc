// One request, scale by scale (spec: docs/spec/var.md "One generation"): the rows of
// all streams go through the transformer in one pass per scale; guidance
// combines each guided stream's conditional and unconditional rows; sampled
// token maps extend f_hat, whose area-downsampled tokens are the next
// scale's input.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>

#include "model/pipeline_impl.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

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

// Rows: the conditional row of every stream (row b is stream b), then one
// unconditional row for each stream that uses guidance, in stream order.
struct RowLayout {
  std::vector<int32_t> row_class;
  std::vector<int64_t> row_stream;  // stream whose input each row reads
  std::vector<int64_t> uncond_row;  // per stream; -1 without guidance
};

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

// "1.5 GiB": for the plan check's message.
std::string gib_text(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// Refuses, before anything is allocated, a request whose memory plan exceeds
// all the memory there is: the device's where the backend reports it, the
// machine's physical memory otherwise. (A request that fits may still fail
// for lack of free memory; this only catches the impossible ones early.)
void check_plan_fits(const Pipeline& p, const std::vector<ImageRequest>& requests, Schedule schedule) {
  const MemoryPlan plan = p.plan_memory(requests, schedule);
  const DeviceMemoryStats dev = p.device_memory();
  uint64_t have = 0;
  std::string where;
  if (dev.available && dev.total > 0) {
    have = dev.total;
    where = "the " + p.backend_name() + " device has ";
  } else {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return;  // unknown: let the allocator decide
    have = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
    where = "this machine has ";
  }
  if (plan.total() <= have) return;
  throw Error("request needs " + gib_text(plan.total()) + " (plan: weights " + gib_text(plan.weights) + ", KV cache " +
              gib_text(plan.kv_cache) + ", activations " + gib_text(plan.activations) + ") for " +
              std::to_string(requests.size()) + " images, " + where + gib_text(have));
}

// Edits of a request, per scale [B·l]: the input tokens, and which
// positions keep them (1) rather than the sampled token (0).
struct TokenEdits {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> keep;
};

TokenEdits token_edits(const std::vector<EditRequest>& edits, const VarConfig& cfg) {
  const size_t K = cfg.patch_nums.size();
  TokenEdits e{std::vector<std::vector<int32_t>>(K), std::vector<std::vector<uint8_t>>(K)};
  for (size_t i = 0; i < edits.size(); ++i) {
    const EditRequest& r = edits[i];
    const std::string which = "edit " + std::to_string(i) + ": ";
    if (r.input.size() != K)
      throw Error(which + "the input has " + std::to_string(r.input.size()) + " token maps, the model " +
                  std::to_string(K) + " scales");
    std::vector<std::vector<uint8_t>> keep;
    try {
      keep = keep_per_scale(r.mask, cfg.patch_nums);
    } catch (const Error& err) {
      throw Error(which + err.what());
    }
    for (size_t s = 0; s < K; ++s) {
      const int64_t l = static_cast<int64_t>(cfg.patch_nums[s]) * cfg.patch_nums[s];
      try {
        check_token_map(r.input[s], l, cfg.vocab_size, static_cast<int>(s));
      } catch (const Error& err) {
        throw Error(which + "input " + err.what());
      }
      e.tokens[s].insert(e.tokens[s].end(), r.input[s].begin(), r.input[s].end());
      e.keep[s].insert(e.keep[s].end(), keep[s].begin(), keep[s].end());
    }
  }
  return e;
}

// The arrays of a request of B images in N image rows beside the
// transformer's session and the residual path's maps, in elements: the one
// description new_state allocates from and plan_memory counts.
struct StateArrays {
  int64_t images = 0, side = 0;  // B, and the latent's side S
  SessionArrays session;
  uint64_t x = 0, logits = 0, guided_logits = 0, next_tokens = 0, f_hat = 0;  // float32
  uint64_t all_idx = 0;                                                       // int32
  uint64_t jobs = 0;                                                          // SampleJob

  uint64_t activation_bytes(const Backend& be) const {
    const auto f = [&](uint64_t n) { return n ? be.array_bytes(n, sizeof(float)) : 0; };
    return session.activation_bytes(be) + f(x) + f(logits) + f(guided_logits) + f(next_tokens) + f(f_hat) +
           be.array_bytes(all_idx, sizeof(int32_t)) + be.array_bytes(jobs, sizeof(SampleJob));
  }
};

StateArrays state_arrays(const Pipeline::Impl& impl, int64_t B, int64_t N) {
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
  for (int pn : cfg.patch_nums) a.all_idx += b * static_cast<uint64_t>(pn) * static_cast<uint64_t>(pn);
  a.jobs = b;
  return a;
}

// The arrays of a request of `shape`, allocated once for every later request
// of the same shape.
std::unique_ptr<GenerationState> new_state(const Pipeline::Impl& impl, const GenerationShape& shape) {
  Backend& be = *impl.backend;
  const VarConfig& cfg = impl.var->config();
  const int64_t B = shape.images, K = cfg.num_scales();
  const StateArrays a = state_arrays(impl, B, shape.image_rows);
  auto st = std::make_unique<GenerationState>();
  st->shape = shape;
  st->session = impl.var->new_session(shape.image_rows, impl.adapter ? &*impl.adapter : nullptr);
  st->x = be.alloc(a.x);
  st->logits = be.alloc(a.logits);
  if (a.guided_logits) st->guided_logits = be.alloc(a.guided_logits);
  st->scale_offset.assign(static_cast<size_t>(K) + 1, 0);
  for (int si = 0; si < K; ++si)
    st->scale_offset[si + 1] = st->scale_offset[si] + B * cfg.patch_nums[si] * cfg.patch_nums[si];
  st->all_idx = be.alloc_i32(a.all_idx);
  st->next_tokens = be.alloc(a.next_tokens);
  st->jobs = be.alloc_sample_jobs(a.jobs);
  st->f_hat = impl.vae->new_map(B, cfg.cvae, a.side, a.side);
  st->residual = impl.vae->new_residual_maps(B, a.side);
  st->steps.resize(static_cast<size_t>(K));
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

GeneratedImages generate_batched(const Pipeline::Impl& impl, const std::vector<ImageRequest>& requests,
                                 const GenerateOptions& opts, const TokenEdits* edits = nullptr) {
  Backend& be = *impl.backend;
  const VarTransformer& var = *impl.var;
  const Vqvae& vae = *impl.vae;
  const VarConfig& cfg = var.config();
  const int64_t B = static_cast<int64_t>(requests.size());
  const int64_t V = cfg.vocab_size, K = cfg.num_scales();
  if (opts.forced_tokens && static_cast<int64_t>(opts.forced_tokens->size()) != K)
    throw Error("teacher forcing needs " + std::to_string(K) + " token maps");

  const RowLayout rows = layout_rows(requests, cfg.num_classes);
  const int64_t N = static_cast<int64_t>(rows.row_class.size());  // image rows
  const bool guided = N > B;
  const StreamAdapter* adapter = impl.adapter ? &*impl.adapter : nullptr;
  std::vector<SampleJob> jobs;
  for (const auto& r : requests) jobs.push_back({r.seed, r.sampling});

  GeneratedImages out;
  out.counters.passes_per_scale.assign(static_cast<size_t>(K), 0);
  out.counters.rows_per_scale.assign(static_cast<size_t>(K), 0);
  const auto t_start = std::chrono::steady_clock::now();
  StageClock clock(be);  // its marks lie within [t_start, the end]
  var.check_classes(rows.row_class);  // before any memory is taken for them
  const GenerationShape shape{B, N, rows.uncond_row, adapter ? adapter->streams : 1,
                              sample_filters(jobs.data(), B, V)};
  std::unique_ptr<GenerationState> state = impl.take_state(shape);
  if (!state) state = new_state(impl, shape);
  be.upload_sample_jobs(jobs.data(), jobs.size(), state->jobs.data());
  VarSession& session = state->session;
  var.begin(session, rows.row_class);
  const int64_t R = session.rows;  // every stream's copy of the image rows
  float* const x = state->x.data();
  float* const logits = state->logits.data();
  const std::vector<int64_t>& scale_offset = state->scale_offset;
  FeatureMap& f_hat = state->f_hat;
  be.fill_zero(f_hat.flat());
  var.first_scale_input(session, x);
  out.tokens.assign(static_cast<size_t>(B), TokenMaps(static_cast<size_t>(K)));
  clock.lap(StageClock::Stage::Setup);

  // Each scale runs three steps, and each decoder pass one, on the state's
  // arrays, with the same shapes and arguments for every request of this
  // shape, so the backend may replay recordings of them; the request's own
  // values (classes, sampling parameters) are in those arrays. Inspection
  // teacher forcing and edits move data to and from the host in the middle
  // of sampling, so that step then runs as it is.
  const bool record_sampling = !opts.on_logits && !opts.forced_tokens && !edits;
  const auto run_step = [&](std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) {
    out.counters.replayed_steps += be.run_recorded(slot, step) == StepRun::Replayed;
  };
  for (int si = 0; si < K; ++si) {
    const int64_t pn = cfg.patch_nums[si], l = pn * pn;
    ScaleSteps& steps = state->steps[si];
    run_step(steps.transformer, [&] { var.forward_scale(session, x, si, logits); });
    ++out.counters.passes_per_scale[si];
    out.counters.rows_per_scale[si] += R;
    clock.lap(StageClock::Stage::Transformer, si);
    if (opts.on_stream_weights && adapter) {
      const int64_t P = session.streams;
      std::vector<float> host(static_cast<size_t>(N * l * P));
      be.download(session.agg_weights.data(), host.size(), host.data());
      opts.on_stream_weights(si, host.data(), N, l, P);
    }

    // Guidance: t = cfg · si/(K−1); logits = (1+t)·cond − t·uncond.
    const double ratio = K > 1 ? static_cast<double>(si) / static_cast<double>(K - 1) : 0.0;
    float* const lg = guided ? state->guided_logits.data() : logits;
    int32_t* const idx = state->all_idx.data() + scale_offset[si];
    const auto guide = [&] {
      if (guided)
        be.guidance(view(logits, {N, l * V}), state->jobs.as({B}), ratio, host_view(rows.uncond_row.data(), {B}),
                    view(lg, {B, l * V}));
    };
    const auto draw = [&] {
      be.sample(view(lg, {B, l, V}), state->jobs.as({B}), {shape.filters, si}, view(idx, {B, l}));
    };
    if (record_sampling) {
      run_step(steps.sampling, [&] {
        guide();
        draw();
      });
    } else {
      guide();
      if (opts.on_logits) {
        std::vector<float> host(static_cast<size_t>(B * l * V));
        be.download(lg, host.size(), host.data());
        opts.on_logits(si, host.data(), B, l, V);
      }
      if (opts.forced_tokens) {
        const std::vector<int32_t>& forced = (*opts.forced_tokens)[si];
        check_token_map(forced, B * l, V, si);
        be.upload_into_i32(forced.data(), forced.size(), idx);
      } else {
        draw();
      }
      if (edits) keep_input_tokens(be, edits->tokens[si], edits->keep[si], idx);
    }
    clock.lap(StageClock::Stage::Sampling);

    run_step(steps.residual, [&] {
      vae.add_scale(si, cfg.patch_nums, idx, f_hat, state->residual);
      if (si + 1 < K) {
        vae.next_scale_tokens(f_hat, cfg.patch_nums[si + 1], state->residual, state->next_tokens.data());
        var.scale_input(session, state->next_tokens.data(), B, si + 1, rows.row_stream, x);
      }
    });
    clock.lap(StageClock::Stage::Residual);
    if (opts.progress) opts.progress(si, static_cast<int>(K));
  }

  // The one transfer of tokens, after the last scale: no scale waits for the host.
  std::vector<int32_t> host_idx(static_cast<size_t>(scale_offset[K]));
  be.download_i32(state->all_idx.data(), host_idx.size(), host_idx.data());
  for (int si = 0; si < K; ++si) {
    const int64_t l = cfg.patch_nums[si] * cfg.patch_nums[si];
    const auto first = host_idx.begin() + scale_offset[si];
    for (int64_t b = 0; b < B; ++b) out.tokens[b][si].assign(first + b * l, first + (b + 1) * l);
  }
  clock.lap(StageClock::Stage::Sampling);
  if (opts.keep_f_hat) out.f_hat = impl.download_map(f_hat);
  out.count = B;
  if (opts.decode) {
    if (!state->decoder) state->decoder = new_decoder_state(vae, f_hat, session);
    DecoderState& dec = *state->decoder;
    for (size_t p = 0; p < dec.passes.size(); ++p)
      run_step(dec.steps[p], [&] { vae.decode_pass(dec.passes[p].f_hat, dec.arena, dec.passes[p].img); });
    const FeatureMap& img = dec.images;
    // [-1, 1] → [0, 1]
    out.height = img.h;
    out.width = img.w;
    out.pixels.resize(img.size());
    be.download(img.data.data(), img.size(), out.pixels.data());
    for (float& v : out.pixels) v = (v + 1.0f) * 0.5f;
    clock.lap(StageClock::Stage::Decode);
  }
  impl.keep_state(std::move(state));
  clock.fill(out.timings, static_cast<int>(K));
  out.timings.total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  return out;
}

// Appends one stream's result to a request's result.
void append(GeneratedImages& all, GeneratedImages&& one) {
  if (all.count == 0) {
    all = std::move(one);
    return;
  }
  all.count += one.count;
  all.pixels.insert(all.pixels.end(), one.pixels.begin(), one.pixels.end());
  for (auto& t : one.tokens) all.tokens.push_back(std::move(t));
  if (!one.f_hat.shape.empty()) {
    all.f_hat.shape.at(0) += one.f_hat.shape[0];
    all.f_hat.data.insert(all.f_hat.data.end(), one.f_hat.data.begin(), one.f_hat.data.end());
  }
  StageTimings& t = all.timings;
  for (size_t si = 0; si < t.transformer_ms.size(); ++si) t.transformer_ms[si] += one.timings.transformer_ms[si];
  t.setup_ms += one.timings.setup_ms;
  t.sampling_ms += one.timings.sampling_ms;
  t.residual_ms += one.timings.residual_ms;
  t.decode_ms += one.timings.decode_ms;
  t.total_ms += one.timings.total_ms;
  for (size_t si = 0; si < all.counters.passes_per_scale.size(); ++si) {
    all.counters.passes_per_scale[si] += one.counters.passes_per_scale[si];
    all.counters.rows_per_scale[si] += one.counters.rows_per_scale[si];
  }
  all.counters.replayed_steps += one.counters.replayed_steps;
}

}  // namespace

std::vector<ImageRequest> expand_streams(const std::vector<int>& classes, int streams, uint64_t seed,
                                         const SamplingParams& sampling) {
  if (streams < 1) throw Error("streams must be >= 1, got " + std::to_string(streams));
  std::vector<ImageRequest> out;
  for (int c : classes)
    for (int p = 0; p < streams; ++p) out.push_back({c, seed + out.size(), sampling});
  return out;
}

GeneratedImages Pipeline::edit(const std::vector<EditRequest>& edits, const GenerateOptions& opts) const {
  if (!impl_->var) throw Error("this pipeline has no VAR transformer");
  if (opts.forced_tokens) throw Error("an edit samples what its mask does not keep: teacher forcing does not apply");
  std::vector<ImageRequest> requests;
  for (const EditRequest& e : edits) requests.push_back(e.image);
  check_requests(requests);
  check_plan_fits(*this, requests, opts.schedule);
  const VarConfig& cfg = impl_->var->config();
  const TokenEdits all = token_edits(edits, cfg);  // every edit checked before any runs
  if (opts.schedule == Schedule::Batched) return generate_batched(*impl_, requests, opts, &all);
  GeneratedImages out;
  for (const EditRequest& e : edits) {
    const TokenEdits one = token_edits({e}, cfg);
    append(out, generate_batched(*impl_, {e.image}, opts, &one));
  }
  return out;
}

int64_t Pipeline::rows_for(const std::vector<ImageRequest>& requests) const {
  return adapter_streams() * static_cast<int64_t>(layout_rows(requests, var_config().num_classes).row_class.size());
}

MemoryPlan Pipeline::plan_memory(const std::vector<ImageRequest>& requests, Schedule schedule) const {
  const VarConfig& cfg = var_config();
  const Backend& be = *impl_->backend;
  const Vqvae& vae = *impl_->vae;
  // A sequential schedule holds one image's state at a time.
  int64_t N = 0, B = 0;  // image rows, images
  if (schedule == Schedule::Batched) {
    N = static_cast<int64_t>(layout_rows(requests, cfg.num_classes).row_class.size());
    B = static_cast<int64_t>(requests.size());
  } else {
    for (const auto& r : requests)
      N = std::max(N, static_cast<int64_t>(layout_rows({r}, cfg.num_classes).row_class.size()));
    B = 1;
  }
  const StateArrays a = state_arrays(*impl_, B, N);
  const int64_t S = a.side;
  MemoryPlan plan;
  plan.weights = impl_->var->weight_bytes() + vae.weight_bytes() + (impl_->adapter ? impl_->adapter->bytes : 0);
  plan.kv_cache = a.session.kv_bytes(be);
  // The decoder's arena for the images it runs together, unless it lies in
  // the KV cache's memory (new_decoder_state), and the images.
  const int64_t per_pass = vae.decode_images_per_pass(S, B);
  const uint64_t arena = vae.decoder_arena_fits(S, per_pass, plan.kv_cache) ? 0 : vae.decoder_arena_bytes(S, per_pass);
  const uint64_t decoder = arena + vae.image_map_bytes(B, S);
  // The backend's own memory: product workspaces, im2col bands, conversions.
  WorkspaceDemand demand = vae.decoder_conv_demand(S);
  demand.linear_input = static_cast<uint64_t>(a.session.rows * cfg.max_scale_tokens()) *
                        static_cast<uint64_t>(std::max(cfg.embed_dim, cfg.mlp_hidden));
  plan.workspace = be.workspace_bytes(demand);
  plan.activations = a.activation_bytes(be) + vae.residual_map_bytes(B, S) + decoder + plan.workspace;
  return plan;
}

void Pipeline::release_cached_memory() const {
  impl_->drop_state();
  impl_->backend->release_cached();
}

GeneratedImages Pipeline::generate(const std::vector<ImageRequest>& requests, const GenerateOptions& opts) const {
  if (!impl_->var) throw Error("this pipeline has no VAR transformer");
  check_requests(requests);
  check_plan_fits(*this, requests, opts.schedule);
  if (opts.schedule == Schedule::Batched) return generate_batched(*impl_, requests, opts);
  if (opts.forced_tokens) throw Error("teacher forcing runs batched only");
  GeneratedImages all;
  for (const ImageRequest& r : requests) append(all, generate_batched(*impl_, {r}, opts));
  return all;
}

}  // namespace varps
