// Pipeline's requests: generations and edits, run batched (model/generation)
// or one image at a time, after checks that need no memory; and their plan.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>

#include "model/generation.hpp"
#include "varps/device_memory.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

// Refuses, before anything is allocated, a request whose memory plan exceeds
// all the memory there is: the device's where the backend reports it, the
// machine's physical memory otherwise. (A request that fits may still fail
// for lack of free memory; this only catches the impossible ones early.)
void check_plan_fits(const Pipeline& p, const std::vector<ImageRequest>& requests, const GenerateOptions& opts) {
  const MemoryPlan plan = p.plan_memory(requests, opts.schedule, opts.fast);
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
  throw Error("request needs " + bytes_text(plan.total()) + " (plan: weights " + bytes_text(plan.weights) + ", KV cache " +
              bytes_text(plan.kv_cache) + ", activations " + bytes_text(plan.activations) + ") for " +
              std::to_string(requests.size()) + " images, " + where + bytes_text(have));
}

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

GeneratedImages generate_batched(const Pipeline::Impl& impl, const std::vector<ImageRequest>& requests,
                                 const GenerateOptions& opts, const TokenEdits* edits = nullptr) {
  Generation g(impl, requests, opts, edits, [&](const GenerationShape& shape) { return impl.take_state(shape); });
  while (!g.sampled_all()) {
    g.forward();
    g.sample();
  }
  GeneratedImages out = g.finish();
  impl.keep_state(g.release_state());
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
  EngineCounters& n = all.counters;
  const EngineCounters& m = one.counters;
  for (size_t si = 0; si < n.passes_per_scale.size(); ++si) {
    n.passes_per_scale[si] += m.passes_per_scale[si];
    n.rows_per_scale[si] += m.rows_per_scale[si];
    n.tokens_per_scale[si] += m.tokens_per_scale[si];
    n.refiner_passes_per_scale[si] += m.refiner_passes_per_scale[si];
    n.refiner_tokens_per_scale[si] += m.refiner_tokens_per_scale[si];
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
  check_plan_fits(*this, requests, opts);
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

MemoryPlan Pipeline::plan_memory(const std::vector<ImageRequest>& requests, Schedule schedule,
                                 const FastModes& fast) const {
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
  const StateArrays a = state_arrays(*impl_, B, N, fast);
  const int64_t S = a.side;
  MemoryPlan plan;
  plan.weights = impl_->var->weight_bytes() + vae.weight_bytes() + (impl_->adapter ? impl_->adapter->bytes : 0) +
                 (fast.refine_from_scale > 0 && impl_->refiner ? impl_->refiner->weight_bytes() : 0);
  plan.kv_cache = a.kv_bytes(be);
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
  check_plan_fits(*this, requests, opts);
  if (opts.schedule == Schedule::Batched) return generate_batched(*impl_, requests, opts);
  if (opts.forced_tokens) throw Error("teacher forcing runs batched only");
  GeneratedImages all;
  for (const ImageRequest& r : requests) append(all, generate_batched(*impl_, {r}, opts));
  return all;
}

}  // namespace varps
