// The multi-scale residual path of the VQVAE quantiser: token maps to f_hat
// (bicubic up, Phi, accumulate), f_hat to the next scale's input (area down),
// and the encoder's scale-by-scale nearest-code quantisation.
#include <cmath>
#include <limits>

#include "model/vqvae.hpp"
#include "varps/error.hpp"

namespace varps {

int Vqvae::phi_index(int si, int num_scales) const {
  const int K = static_cast<int>(phi_.size());
  if (K <= 1) return 0;
  // As the reference: float64 ticks from np.linspace, argmin |tick - ratio|,
  // first on ties.
  const bool partially_shared = cfg_.phi_layout == PhiLayout::PartiallyShared;
  const double edge = (partially_shared && K == 4) ? 1.0 / 3.0 / K : 1.0 / 2.0 / K;
  const double start = edge, stop = 1.0 - edge, step = (stop - start) / (K - 1);
  const double ratio = num_scales > 1 ? static_cast<double>(si) / (num_scales - 1) : 0.0;
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int i = 0; i < K; ++i) {
    const double tick = i == K - 1 ? stop : i * step + start;
    const double d = std::fabs(tick - ratio);
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  return best;
}

namespace {

// The first side×side of a map's capacity.
FeatureMap with_side(const FeatureMap& m, int64_t side) {
  VARPS_CHECK(side <= m.h && side <= m.w, "a residual map holds at most the latent's side");
  FeatureMap v = m;
  v.h = v.w = side;
  return v;
}

}  // namespace

ResidualMaps Vqvae::new_residual_maps(int64_t n, int64_t S) const {
  const int64_t C = cfg_.cvae;
  return {new_map(n, C, S, S), new_map(n, C, S, S), phi_.empty() ? FeatureMap{} : new_map(n, C, S, S)};
}

uint64_t Vqvae::residual_map_bytes(int64_t n, int64_t S) const {
  const uint64_t map = be_.array_bytes(static_cast<uint64_t>(n * cfg_.cvae * S * S), sizeof(float));
  return (phi_.empty() ? 2 : 3) * map;  // as new_residual_maps
}

void Vqvae::apply_phi(int phi, const FeatureMap& h, const FeatureMap& conv_out) const {
  if (phi_.empty()) return;
  conv_into(h, phi_[phi], conv_out);
  const float r = std::fabs(cfg_.quant_resi);
  be_.axpby_inplace(h.flat(), 1.0f - r, conv_out.flat(), r);
}

void Vqvae::add_scale(int si, const std::vector<int>& patch_nums, const int32_t* idx, FeatureMap& f_hat,
                      const ResidualMaps& maps, FeatureMap* residual) const {
  const int K = static_cast<int>(patch_nums.size());
  const int64_t pn = patch_nums[si], S = f_hat.h, C = cfg_.cvae;
  VARPS_CHECK(maps.upsampled.n == f_hat.n && maps.upsampled.h == S, "residual maps of f_hat's size");
  FeatureMap h = with_side(maps.scale_map, pn);
  be_.embed_chw(codebook_.as({cfg_.vocab_size, C}), view(idx, {f_hat.n, pn * pn}), h.data.as({f_hat.n, C, pn * pn}));
  if (si != K - 1) {
    be_.upsample_bicubic(h.planes(), maps.upsampled.planes());
    h = maps.upsampled;
  }
  VARPS_CHECK(h.h == S && h.w == f_hat.w, "last patch size must equal the latent size");
  apply_phi(phi_index(si, K), h, maps.phi);
  be_.add_inplace(f_hat.flat(), h.flat());
  if (residual) be_.axpby_inplace(residual->flat(), 1.0f, h.flat(), -1.0f);
}

void Vqvae::next_scale_tokens(const FeatureMap& f_hat, int pn, const ResidualMaps& maps, float* tokens) const {
  const FeatureMap small = with_side(maps.scale_map, pn);
  const int64_t P = int64_t{pn} * pn;
  be_.downsample_area(f_hat.planes(), small.planes());
  be_.chw_to_tokens(small.data.as({f_hat.n, f_hat.c, P}), view(tokens, {f_hat.n, P, f_hat.c}));
}

std::vector<std::vector<int32_t>> Vqvae::quantize(const FeatureMap& f, const std::vector<int>& patch_nums,
                                                  FeatureMap* f_hat_out) const {
  const int K = static_cast<int>(patch_nums.size());
  if (K == 0 || patch_nums.back() != f.h || f.h != f.w)
    throw Error("patch_nums must end at the latent size " + std::to_string(f.h) + "x" + std::to_string(f.w));
  const int64_t C = cfg_.cvae;
  FeatureMap rest = new_map(f.n, f.c, f.h, f.w);
  be_.copy(f.data.data(), f.size(), rest.data.data());
  FeatureMap f_hat = zero_map(f.n, f.c, f.h, f.w);
  const ResidualMaps maps = new_residual_maps(f.n, f.h);
  std::vector<std::vector<int32_t>> out;
  for (int si = 0; si < K; ++si) {
    const int64_t pn = patch_nums[si], n = f.n * pn * pn;
    Array<float> z = be_.alloc(static_cast<size_t>(n * C));
    if (si != K - 1) {
      next_scale_tokens(rest, static_cast<int>(pn), maps, z.data());
    } else {
      be_.chw_to_tokens(rest.data.as({f.n, C, pn * pn}), z.as({f.n, pn * pn, C}));
    }
    Array<int32_t> idx = be_.alloc_i32(static_cast<size_t>(n));
    be_.nearest_code(z.as({n, C}), codebook_.as({cfg_.vocab_size, C}), idx.as({n}));
    add_scale(si, patch_nums, idx.data(), f_hat, maps, &rest);
    std::vector<int32_t> host(static_cast<size_t>(n));
    be_.download_i32(idx.data(), host.size(), host.data());
    out.push_back(std::move(host));
  }
  if (f_hat_out) *f_hat_out = std::move(f_hat);
  return out;
}

}  // namespace varps
