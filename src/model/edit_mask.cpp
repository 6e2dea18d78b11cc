// Edit masks: a box or a mask image on the last token map, and its
// thresholded copy at each scale (docs/editing.md).
#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdio>
#include <string>

#include "varps/edit.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

// Python's round() of a float: to the nearest integer, halves to even.
int64_t python_round(double v) {
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(v);
  std::fesetround(saved);
  return static_cast<int64_t>(r);
}

std::string box_text(const EditBox& b) {
  char s[160];
  std::snprintf(s, sizeof s, "%g,%g,%g,%g", b.y0, b.x0, b.y1, b.x1);
  return s;
}

// PyTorch's bilinear resampling of one plane (align_corners false, no
// antialiasing), bit for bit as its CPU kernel gives it (checked against
// torch 1.13 on binary and random planes): the scale in/out in float, the
// source coordinate (dst + 0.5)·scale − 0.5 in double, clamped at 0, its
// two neighbours (the last one repeated at the edge) with weights 1 − λ and
// λ in float, the four weights as float products, and the weighted sum
// rounded to float once.
struct LinearTap {
  int64_t i0, i1;
  float w0, w1;
};

std::vector<LinearTap> linear_taps(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<LinearTap> taps(static_cast<size_t>(out));
  for (int64_t d = 0; d < out; ++d) {
    const double src = std::max(static_cast<double>(scale) * (static_cast<double>(d) + 0.5) - 0.5, 0.0);
    const int64_t i0 = static_cast<int64_t>(src);
    const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    const float lambda = std::clamp(static_cast<float>(src - static_cast<double>(i0)), 0.0f, 1.0f);
    taps[d] = {i0, i1, 1.0f - lambda, lambda};
  }
  return taps;
}

std::vector<float> resize_bilinear(const std::vector<float>& plane, int64_t in_h, int64_t in_w, int64_t out_h,
                                   int64_t out_w) {
  const std::vector<LinearTap> ty = linear_taps(in_h, out_h), tx = linear_taps(in_w, out_w);
  std::vector<float> out(static_cast<size_t>(out_h * out_w));
  for (int64_t y = 0; y < out_h; ++y) {
    const LinearTap& r = ty[y];
    const float* r0 = plane.data() + r.i0 * in_w;
    const float* r1 = plane.data() + r.i1 * in_w;
    for (int64_t x = 0; x < out_w; ++x) {
      const LinearTap& c = tx[x];
      const double w00 = r.w0 * c.w0, w01 = r.w0 * c.w1, w10 = r.w1 * c.w0, w11 = r.w1 * c.w1;  // float products
      const double sum = r0[c.i0] * w00 + r0[c.i1] * w01 + r1[c.i0] * w10 + r1[c.i1] * w11;
      out[y * out_w + x] = static_cast<float>(sum);
    }
  }
  return out;
}

}  // namespace

EditMask box_mask(const EditBox& box, int64_t side, bool outpaint) {
  if (side < 1) throw Error("edit mask: the token map side must be >= 1, got " + std::to_string(side));
  for (double v : {box.y0, box.x0, box.y1, box.x1})
    if (!(v >= 0.0 && v <= 1.0))
      throw Error("edit box " + box_text(box) + ": every coordinate must be a fraction of the image in [0, 1]");
  if (!(box.y0 < box.y1) || !(box.x0 < box.x1))
    throw Error("edit box " + box_text(box) + " is empty: it needs y0 < y1 and x0 < x1 (y0,x0,y1,x1)");
  const double s = static_cast<double>(side);
  const int64_t r0 = python_round(box.y0 * s), r1 = python_round(box.y1 * s);
  const int64_t c0 = python_round(box.x0 * s), c1 = python_round(box.x1 * s);
  if (r0 >= r1 || c0 >= c1)
    throw Error("edit box " + box_text(box) + " covers no token of the " + std::to_string(side) + "x" +
                std::to_string(side) + " token map (rows " + std::to_string(r0) + ".." + std::to_string(r1) +
                ", columns " + std::to_string(c0) + ".." + std::to_string(c1) + ")");
  EditMask m{side, std::vector<float>(static_cast<size_t>(side * side), outpaint ? 0.0f : 1.0f)};
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) m.keep[r * side + c] = outpaint ? 1.0f : 0.0f;
  return m;
}

// Far beyond any token map (the largest released one is 32 wide): a side
// from an API caller is checked before side² values are allocated.
constexpr int64_t kMaxMaskSide = 1024;

EditMask mask_from_image(const RgbImage& img, int64_t side) {
  if (img.width != img.height || img.width < 1)
    throw Error("edit mask image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                ": it must be square (white generates, black keeps)");
  if (side < 1 || side > kMaxMaskSide)
    throw Error("edit mask side " + std::to_string(side) + " is out of range: must be in 1.." +
                std::to_string(kMaxMaskSide));
  const int64_t n = static_cast<int64_t>(img.width) * img.height;
  if (img.pixels.size() != static_cast<size_t>(3 * n))
    throw Error("edit mask image of " + std::to_string(img.width) + "x" + std::to_string(img.height) + " holds " +
                std::to_string(img.pixels.size()) + " bytes, expected " + std::to_string(3 * n));
  std::vector<float> keep(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = img.pixels.data() + 3 * i;
    const float grey = (static_cast<float>(p[0]) + static_cast<float>(p[1]) + static_cast<float>(p[2])) / 765.0f;
    keep[i] = 1.0f - grey;
  }
  return EditMask{side, resize_bilinear(keep, img.height, img.width, side, side)};
}

std::vector<std::vector<uint8_t>> keep_per_scale(const EditMask& mask, const std::vector<int>& patch_nums) {
  if (patch_nums.empty() || mask.side != patch_nums.back())
    throw Error("edit mask is " + std::to_string(mask.side) + "x" + std::to_string(mask.side) +
                ": it must cover the last token map (" +
                (patch_nums.empty() ? std::string("none") : std::to_string(patch_nums.back())) + "x" +
                (patch_nums.empty() ? std::string("none") : std::to_string(patch_nums.back())) + ")");
  if (mask.keep.size() != static_cast<size_t>(mask.side * mask.side))
    throw Error("edit mask holds " + std::to_string(mask.keep.size()) + " values, expected " +
                std::to_string(mask.side * mask.side));
  std::vector<std::vector<uint8_t>> out;
  for (int pn : patch_nums) {
    const int64_t l = static_cast<int64_t>(pn) * pn;
    if (l <= 3) {
      out.emplace_back(static_cast<size_t>(l), 1);
      continue;
    }
    const std::vector<float> r = resize_bilinear(mask.keep, mask.side, mask.side, pn, pn);
    std::vector<uint8_t> keep(static_cast<size_t>(l));
    for (int64_t i = 0; i < l; ++i) keep[i] = r[i] > 0.5f ? 1 : 0;
    out.push_back(std::move(keep));
  }
  return out;
}

}  // namespace varps
