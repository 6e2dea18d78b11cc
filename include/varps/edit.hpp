#pragma once
// Zero-shot editing (in-painting, out-painting, class-conditional editing),
// as VAR's zero-shot edit demo does it (docs/editing.md): the tokens of the
// image to edit are kept where a mask says so and the model generates the
// rest, scale by scale, running (and guiding) every position as usual.
#include <cstdint>
#include <vector>

#include "varps/image.hpp"

namespace varps {

// A mask on the last token map, [side, side] row-major: 1 keeps the input
// token, 0 lets the model generate; values between (a resized mask image)
// are thresholded per scale.
struct EditMask {
  int64_t side = 0;
  std::vector<float> keep;
};

// A box in fractions of the image: rows y0..y1, columns x0..x1.
struct EditBox {
  double y0 = 0, x0 = 0, y1 = 1, x1 = 1;
};

// The box's cells set, as the demo's get_edit_mask: rows round(y0·side) to
// round(y1·side) (exclusive), columns likewise, with Python's rounding
// (halves to even). In-painting (the default) generates the box and keeps
// the rest; out-painting keeps the box and generates the rest. Throws
// varps::Error for a box outside [0, 1], with y0 >= y1 or x0 >= x1, or one
// that covers no cell at this side.
EditMask box_mask(const EditBox& box, int64_t side, bool outpaint);

// A mask image: white generates, black keeps (grey is averaged over R, G, B
// and scaled to [0, 1]), resized to side × side with bilinear interpolation
// (align_corners false), as the demo resizes masks. Throws varps::Error when
// the image is not square, its pixels do not fill it, or side is not in
// 1..1024.
EditMask mask_from_image(const RgbImage& mask, int64_t side);

// At each scale, which of its pn × pn tokens keep the input token: the mask
// resized bilinearly (align_corners false) to pn × pn and thresholded
// above 0.5; scales of at most 3 tokens keep all of theirs.
// [scale][pn·pn], 1 = keep.
std::vector<std::vector<uint8_t>> keep_per_scale(const EditMask& mask, const std::vector<int>& patch_nums);

}  // namespace varps
