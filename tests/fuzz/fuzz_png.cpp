// The PNG reader (src/io/png.cpp): the pixels, as every command that takes
// an image reads them, and the text chunks.
#include "fuzz_support.hpp"
#include "varps/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = varps::fuzz::input_file(data, size, "fuzz.png");
  varps::fuzz::only_varps_errors([&] {
    const varps::RgbImage img = varps::read_png(path);
    if (img.width < 1 || img.height < 1 ||
        img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3)
      varps::fuzz::finding("read_png returned " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                           " with " + std::to_string(img.pixels.size()) + " bytes");
  });
  varps::fuzz::only_varps_errors([&] { varps::read_png_text(path); });
  return 0;
}
