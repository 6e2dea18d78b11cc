// Pixel conversions between float CHW tensors and 8-bit interleaved RGB.
#include "varps/image.hpp"

#include "varps/error.hpp"

namespace varps {

RgbImage to_rgb8(const float* chw, int height, int width) {
  if (height < 0 || width < 0 || (chw == nullptr && height > 0 && width > 0)) {
    throw Error("to_rgb8: invalid image " + std::to_string(height) + "x" + std::to_string(width));
  }
  RgbImage img;
  img.height = height;
  img.width = width;
  const size_t plane = static_cast<size_t>(height) * static_cast<size_t>(width);
  img.pixels.resize(plane * 3);
  for (size_t c = 0; c < 3; ++c) {
    const float* src = chw + c * plane;
    for (size_t i = 0; i < plane; ++i) {
      // torchvision's save_image: mul(255).add_(0.5).clamp_(0, 255).to(uint8),
      // i.e. two separately rounded float ops, then truncation. The negated
      // comparison sends NaN to 0.
      const float v = src[i] * 255.0f + 0.5f;
      img.pixels[i * 3 + c] = !(v > 0.0f) ? 0 : (v >= 255.0f ? 255 : static_cast<uint8_t>(v));
    }
  }
  return img;
}

Tensor rgb8_to_signed_chw(const RgbImage& img) {
  if (img.height < 0 || img.width < 0 ||
      img.pixels.size() != static_cast<size_t>(img.height) * static_cast<size_t>(img.width) * 3) {
    throw Error("rgb8_to_signed_chw: " + std::to_string(img.width) + "x" + std::to_string(img.height) + " image has " +
                std::to_string(img.pixels.size()) + " bytes of pixels");
  }
  Tensor out(Shape{3, img.height, img.width});
  const size_t plane = static_cast<size_t>(img.height) * static_cast<size_t>(img.width);
  for (size_t c = 0; c < 3; ++c) {
    for (size_t i = 0; i < plane; ++i) {
      // ToTensor (x / 255) then VAR's normalize_01_into_pm1 (x + x - 1).
      const float x = static_cast<float>(img.pixels[i * 3 + c]) / 255.0f;
      out.data[c * plane + i] = x * 2.0f - 1.0f;
    }
  }
  return out;
}

}  // namespace varps
