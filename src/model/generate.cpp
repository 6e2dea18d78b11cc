// One generation, scale by scale (spec: VAR.md "One generation"): all rows
// of all images go through the transformer together; guidance combines each
// image's conditional and unconditional rows; sampled token maps extend
// f_hat, whose area-downsampled tokens are the next scale's input.
#include <chrono>

#include "model/pipeline_impl.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

class StageClock {
 public:
  explicit StageClock(Backend& be) : be_(be), t0_(std::chrono::steady_clock::now()) {}
  // Milliseconds since the last lap, after the backend finished its work.
  double lap() {
    be_.synchronize();
    const auto now = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - t0_).count();
    t0_ = now;
    return ms;
  }

 private:
  Backend& be_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

GeneratedImages Pipeline::generate(const std::vector<ImageRequest>& requests, const GenerateOptions& opts) const {
  if (!impl_->var) throw Error("this pipeline has no VAR transformer");
  Backend& be = *impl_->backend;
  const VarTransformer& var = *impl_->var;
  const Vqvae& vae = *impl_->vae;
  const VarConfig& cfg = var.config();
  const int64_t B = static_cast<int64_t>(requests.size());
  const int64_t C = cfg.embed_dim, V = cfg.vocab_size, K = cfg.num_scales(), S = cfg.patch_nums.back();
  if (B == 0) throw Error("nothing to generate: no images requested");

  // Rows: the conditional rows of all images, then (only when some image
  // uses guidance) their unconditional rows.
  bool guided = false;
  std::vector<int32_t> row_classes;
  std::vector<SampleJob> jobs;
  for (const auto& r : requests) {
    guided = guided || r.sampling.cfg != 0.0;
    row_classes.push_back(r.class_id);
    jobs.push_back({r.seed, r.sampling});
  }
  if (guided)
    for (int64_t b = 0; b < B; ++b) row_classes.push_back(cfg.num_classes);
  const int64_t R = static_cast<int64_t>(row_classes.size());
  if (opts.forced_tokens && static_cast<int64_t>(opts.forced_tokens->size()) != K)
    throw Error("teacher forcing needs " + std::to_string(K) + " token maps");

  GeneratedImages out;
  StageClock clock(be);
  const auto t_start = std::chrono::steady_clock::now();
  VarSession session = var.start(row_classes);  // validates the classes

  size_t max_l = 0;
  for (int p : cfg.patch_nums) max_l = std::max<size_t>(max_l, static_cast<size_t>(p) * p);
  Array<float> x = be.alloc(R * max_l * C);
  Array<float> logits = be.alloc(R * max_l * V);
  Array<float> guided_logits = guided ? be.alloc(B * max_l * V) : Array<float>();
  Array<int32_t> idx = be.alloc_i32(B * max_l);
  Array<float> next_tokens = be.alloc(B * max_l * cfg.cvae);
  FeatureMap f_hat = vae.zero_map(B, cfg.cvae, S, S);
  var.first_scale_input(session, x.data());
  out.tokens.assign(static_cast<size_t>(B), TokenMaps(static_cast<size_t>(K)));
  out.timings.setup_ms = clock.lap();

  for (int si = 0; si < K; ++si) {
    const int64_t pn = cfg.patch_nums[si], l = pn * pn;
    var.forward_scale(session, x.data(), si, logits.data());
    out.timings.transformer_ms.push_back(clock.lap());

    // Guidance: t = cfg · si/(K−1); logits = (1+t)·cond − t·uncond.
    float* lg = logits.data();
    if (guided) {
      std::vector<double> t;
      const double ratio = K > 1 ? static_cast<double>(si) / static_cast<double>(K - 1) : 0.0;
      for (const auto& r : requests) t.push_back(r.sampling.cfg * ratio);
      be.guidance(logits.data(), B, l * V, t, guided_logits.data());
      lg = guided_logits.data();
    }
    if (opts.on_logits) {
      std::vector<float> host(static_cast<size_t>(B * l * V));
      be.download(lg, host.size(), host.data());
      opts.on_logits(si, host.data(), B, l, V);
    }
    std::vector<int32_t> host_idx(static_cast<size_t>(B * l));
    if (opts.forced_tokens) {
      host_idx = (*opts.forced_tokens)[si];
      check_token_map(host_idx, B * l, V, static_cast<int>(si));
      be.upload_into_i32(host_idx.data(), host_idx.size(), idx.data());
    } else {
      be.sample(lg, B, l, V, jobs, si, idx.data());
      be.download_i32(idx.data(), host_idx.size(), host_idx.data());
    }
    for (int64_t b = 0; b < B; ++b)
      out.tokens[b][si].assign(host_idx.begin() + b * l, host_idx.begin() + (b + 1) * l);
    out.timings.sampling_ms += clock.lap();

    vae.add_scale(si, cfg.patch_nums, idx.data(), f_hat);
    if (si + 1 < K) {
      vae.next_scale_tokens(f_hat, cfg.patch_nums[si + 1], next_tokens.data());
      var.scale_input(next_tokens.data(), B, si + 1, R, x.data());
    }
    out.timings.residual_ms += clock.lap();
    if (opts.progress) opts.progress(si, static_cast<int>(K));
  }

  if (opts.keep_f_hat) out.f_hat = impl_->download_map(f_hat);
  if (opts.decode) {
    FeatureMap img = vae.decode(f_hat);
    // [-1, 1] → [0, 1]
    out.count = img.n;
    out.height = img.h;
    out.width = img.w;
    out.pixels.resize(img.size());
    be.download(img.data.data(), img.size(), out.pixels.data());
    for (float& v : out.pixels) v = (v + 1.0f) * 0.5f;
    out.timings.decode_ms = clock.lap();
  } else {
    out.count = B;
  }
  out.timings.total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  return out;
}

}  // namespace varps
