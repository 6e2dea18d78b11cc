// Layers of the VQVAE: convolution, GroupNorm, ResBlock and AttnBlock.
#include <cmath>

#include "model/vqvae.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {
constexpr int kGroups = Vqvae::kGroupNormGroups;
constexpr float kGroupNormEps = 1e-6f;
}  // namespace

FeatureMap Vqvae::new_map(int64_t n, int64_t c, int64_t h, int64_t w) const {
  FeatureMap m;
  m.n = n;
  m.c = c;
  m.h = h;
  m.w = w;
  m.data = be_.alloc(static_cast<size_t>(n * c * h * w));
  return m;
}

FeatureMap Vqvae::zero_map(int64_t n, int64_t c, int64_t h, int64_t w) const {
  FeatureMap m{be_.zeros(static_cast<size_t>(n * c * h * w)), n, c, h, w};
  return m;
}

FeatureMap Vqvae::conv(const FeatureMap& x, const Conv2dWeights& cw, int stride, int pad_t, int pad_l, int pad_b,
                       int pad_r) const {
  VARPS_CHECK(x.c == cw.ci, "conv input channels");
  if (pad_t < 0) pad_t = pad_l = pad_b = pad_r = cw.k / 2;
  const int64_t ho = (x.h + pad_t + pad_b - cw.k) / stride + 1, wo = (x.w + pad_l + pad_r - cw.k) / stride + 1;
  FeatureMap y = new_map(x.n, cw.co, ho, wo);
  be_.conv2d(x.data.data(), x.n, x.c, x.h, x.w, cw.w.data(), cw.b.data(), cw.co, cw.k, stride, pad_t, pad_l, pad_b,
             pad_r, y.data.data());
  return y;
}

void Vqvae::conv_into(const FeatureMap& x, const Conv2dWeights& cw, const FeatureMap& y) const {
  VARPS_CHECK(x.c == cw.ci && y.c == cw.co && y.n == x.n && y.h == x.h && y.w == x.w, "same-size conv shapes");
  const int pad = cw.k / 2;
  be_.conv2d(x.data.data(), x.n, x.c, x.h, x.w, cw.w.data(), cw.b.data(), cw.co, cw.k, 1, pad, pad, pad, pad,
             y.data.data());
}

FeatureMap Vqvae::group_norm(const FeatureMap& x, const GroupNormWeights& gn, bool then_silu) const {
  FeatureMap y = new_map(x.n, x.c, x.h, x.w);
  be_.group_norm(x.data.data(), x.n, x.c, x.h * x.w, kGroups, gn.gamma.data(), gn.beta.data(), kGroupNormEps,
                 then_silu, y.data.data());
  return y;
}

FeatureMap Vqvae::normalized_conv(const FeatureMap& x, const GroupNormWeights& gn, const Conv2dWeights& cw,
                                   FeatureMap* add_to) const {
  Array<float> stats = be_.alloc(static_cast<size_t>(x.n * kGroups * 2));
  be_.group_norm_stats(x.data.data(), x.n, x.c, x.h * x.w, kGroups, kGroupNormEps, stats.data());
  FeatureMap y = add_to ? *add_to : new_map(x.n, cw.co, x.h, x.w);
  VARPS_CHECK(y.n == x.n && y.c == cw.co && y.h == x.h && y.w == x.w, "normalized conv output shape");
  const NormOnRead norm{stats.data(), gn.gamma.data(), gn.beta.data(), kGroups, true};
  be_.normalized_conv2d(x.data.data(), x.n, x.c, x.h, x.w, norm, cw.w.data(), cw.b.data(), cw.co, cw.k,
                        add_to != nullptr, y.data.data());
  return y;
}

// x' = conv2(SiLU(GN2(h))) + shortcut(x) with h = conv1(SiLU(GN1(x))). The
// norms are applied as the convolutions read, and conv2 adds into the
// shortcut, which is x itself when the channels agree: two maps of the
// block's width are alive at once (and a 1×1 shortcut's output beside them).
FeatureMap Vqvae::res_block(FeatureMap x, const ResBlock& rb) const {
  const FeatureMap h = normalized_conv(x, rb.norm1, rb.conv1);
  FeatureMap out = rb.nin_shortcut.k ? conv(x, rb.nin_shortcut) : std::move(x);
  x = FeatureMap{};
  normalized_conv(h, rb.norm2, rb.conv2, &out);
  return out;
}

// Single-head attention over the H·W positions, scale C^-1/2, then + x.
FeatureMap Vqvae::attn_block(const FeatureMap& x, const AttnBlock& ab) const {
  const int64_t C = x.c, P = x.h * x.w;
  const FeatureMap qkv = conv(group_norm(x, ab.norm, false), ab.qkv);
  FeatureMap h = new_map(x.n, C, x.h, x.w);
  Array<float> w = be_.alloc(static_cast<size_t>(P * P));
  const float scale = 1.0f / std::sqrt(static_cast<float>(C));
  for (int64_t n = 0; n < x.n; ++n) {
    const float* q = qkv.data.data() + n * 3 * C * P;  // [C, P]
    const float* k = q + C * P;
    const float* v = k + C * P;
    // w[i, j] = scale · Σ_c q[c, i] k[c, j]; softmax over j
    be_.gemm(true, false, P, P, C, scale, q, P, k, P, 0.0f, w.data(), P);
    be_.softmax_rows(w.data(), P, P);
    // h[c, i] = Σ_j v[c, j] w[i, j]
    be_.gemm(false, true, C, P, P, 1.0f, v, P, w.data(), P, 0.0f, h.data.data() + n * C * P, P);
  }
  FeatureMap out = conv(h, ab.proj_out);
  be_.add_inplace(out.data.data(), x.data.data(), out.size());
  return out;
}

FeatureMap Vqvae::run_level(FeatureMap h, const ResLevel& level) const {
  for (size_t i = 0; i < level.block.size(); ++i) {
    h = res_block(std::move(h), level.block[i]);
    if (!level.attn.empty()) h = attn_block(h, level.attn[i]);
  }
  return h;
}

}  // namespace varps
