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

FeatureMap Vqvae::conv(const FeatureMap& x, const Conv2dWeights& cw, MapStore& maps, int stride, int pad_t, int pad_l,
                       int pad_b, int pad_r) const {
  VARPS_CHECK(x.c == cw.ci, "conv input channels");
  if (pad_t < 0) pad_t = pad_l = pad_b = pad_r = cw.k / 2;
  const int64_t ho = (x.h + pad_t + pad_b - cw.k) / stride + 1, wo = (x.w + pad_l + pad_r - cw.k) / stride + 1;
  FeatureMap y = maps.opposite(x, x.n, cw.co, ho, wo);
  be_.conv2d(x.nchw(), cw.weight(), cw.bias(), {stride, pad_t, pad_l, pad_b, pad_r}, y.nchw());
  return y;
}

void Vqvae::conv_into(const FeatureMap& x, const Conv2dWeights& cw, const FeatureMap& y) const {
  VARPS_CHECK(x.c == cw.ci && y.c == cw.co && y.n == x.n && y.h == x.h && y.w == x.w, "same-size conv shapes");
  be_.conv2d(x.nchw(), cw.weight(), cw.bias(), Backend::ConvGeometry::same(cw.k), y.nchw());
}

void Vqvae::normalized_conv(const FeatureMap& x, const GroupNormWeights& gn, const Conv2dWeights& cw,
                            const FeatureMap& y, bool add, MapStore& maps) const {
  VARPS_CHECK(y.n == x.n && y.c == cw.co && y.h == x.h && y.w == x.w, "normalized conv output shape");
  const Array<float> stats = maps.norm_stats(x.n, kGroups);
  be_.group_norm_stats(x.data.as({x.n, x.c, x.h * x.w}), kGroups, kGroupNormEps, stats.as({x.n, kGroups, 2}));
  const NormOnRead norm{stats.data(), gn.gamma.data(), gn.beta.data(), kGroups, true};
  be_.normalized_conv2d(x.nchw(), norm, cw.weight(), cw.bias(), add, y.nchw());
}

// x' = conv2(SiLU(GN2(h))) + shortcut(x) with h = conv1(SiLU(GN1(x))). The
// norms are applied as the convolutions read, and conv2 adds into the
// shortcut, which is x itself when the channels agree: two maps of the
// block's width are alive at once (and a 1×1 shortcut's output beside them).
FeatureMap Vqvae::res_block(FeatureMap x, const ResBlock& rb, MapStore& maps) const {
  if (!rb.nin_shortcut.k) {
    const FeatureMap h = maps.opposite(x, x.n, rb.conv1.co, x.h, x.w);
    normalized_conv(x, rb.norm1, rb.conv1, h, false, maps);
    normalized_conv(h, rb.norm2, rb.conv2, x, true, maps);
    return x;
  }
  const FeatureMap h = maps.beside(x, x.n, rb.conv1.co, x.h, x.w);
  normalized_conv(x, rb.norm1, rb.conv1, h, false, maps);
  FeatureMap out = conv(x, rb.nin_shortcut, maps);
  x = FeatureMap{};
  normalized_conv(h, rb.norm2, rb.conv2, out, true, maps);
  return out;
}

// Single-head attention over the H·W positions, scale C^-1/2, then + x.
// Beside x: q/k/v, then the attention's output; opposite it, one at a
// time: the norm, the scores, the projection.
FeatureMap Vqvae::attn_block(const FeatureMap& x, const AttnBlock& ab, MapStore& maps) const {
  const int64_t C = x.c, P = x.h * x.w;
  const FeatureMap qkv = maps.beside(x, x.n, 3 * C, x.h, x.w);
  {
    const FeatureMap normed = maps.opposite(x, x.n, C, x.h, x.w);
    be_.group_norm(x.data.as({x.n, C, P}), {kGroups, ab.norm.gamma.as({C}), ab.norm.beta.as({C}), kGroupNormEps, false},
                   normed.data.as({x.n, C, P}));
    conv_into(normed, ab.qkv, qkv);
  }
  const FeatureMap h = maps.beside(qkv, x.n, C, x.h, x.w);
  {
    const FeatureMap w = maps.opposite(x, 1, 1, P, P);
    const float scale = 1.0f / std::sqrt(static_cast<float>(C));
    for (int64_t n = 0; n < x.n; ++n) {
      const float* q = qkv.data.data() + n * 3 * C * P;  // [C, P]
      const float* k = q + C * P;
      const float* v = k + C * P;
      const View<float> scores = w.data.as({P, P});
      // w[i, j] = scale · Σ_c q[c, i] k[c, j]; softmax over j
      be_.gemm(view(q, {C, P}), view(k, {C, P}), scores, {true, false, scale, 0.0f});
      be_.softmax_rows(scores);
      // h[c, i] = Σ_j v[c, j] w[i, j]
      be_.gemm(view(v, {C, P}), scores, view(h.data.data() + n * C * P, {C, P}), {false, true, 1.0f, 0.0f});
    }
  }
  FeatureMap out = maps.opposite(x, x.n, C, x.h, x.w);
  conv_into(h, ab.proj_out, out);
  be_.add_inplace(out.flat(), x.flat());
  return out;
}

FeatureMap Vqvae::run_level(FeatureMap h, const ResLevel& level, MapStore& maps) const {
  for (size_t i = 0; i < level.block.size(); ++i) {
    h = res_block(std::move(h), level.block[i], maps);
    if (!level.attn.empty()) h = attn_block(h, level.attn[i], maps);
  }
  return h;
}

}  // namespace varps
