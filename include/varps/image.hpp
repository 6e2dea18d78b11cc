#pragma once
// 8-bit RGB images and PNG files.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "varps/tensor.hpp"

namespace varps {

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // row-major, interleaved R, G, B
};

// [3, H, W] float in [0, 1] -> 8-bit, rounding like torchvision's save_image
// (x * 255 + 0.5, clamped).
RgbImage to_rgb8(const float* chw, int height, int width);
// 8-bit -> [3, H, W] float in [-1, 1] (what the VQVAE encoder expects).
Tensor rgb8_to_signed_chw(const RgbImage& img);

// Writes an 8-bit RGB PNG with tEXt chunks (key, value). Throws varps::Error
// naming the path when it cannot be written.
void write_png(const std::filesystem::path& path, const RgbImage& img,
               const std::vector<std::pair<std::string, std::string>>& text = {});
// The same PNG in memory (for HTTP answers).
std::string encode_png(const RgbImage& img, const std::vector<std::pair<std::string, std::string>>& text = {});
// Reads a PNG as 8-bit RGB (grey, palette, 16-bit and alpha are converted).
RgbImage read_png(const std::filesystem::path& path);
// The tEXt/iTXt/zTXt chunks of a PNG.
std::vector<std::pair<std::string, std::string>> read_png_text(const std::filesystem::path& path);

}  // namespace varps
