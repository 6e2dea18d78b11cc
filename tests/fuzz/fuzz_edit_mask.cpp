// The mask image of `varps edit --mask`: read as a PNG, turned into a mask
// on the last token map (mask_from_image, src/model/edit_mask.cpp) and
// thresholded at every scale (keep_per_scale), for the released scales and
// the tiny model's.
#include <vector>

#include "fuzz_support.hpp"
#include "varps/config.hpp"
#include "varps/edit.hpp"
#include "varps/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<int> released = varps::released_patch_nums_256();
  static const std::vector<int> tiny = varps::preset_var_config("tiny").patch_nums;
  const std::filesystem::path path = varps::fuzz::input_file(data, size, "mask.png");
  varps::fuzz::only_varps_errors([&] {
    const varps::RgbImage img = varps::read_png(path);
    for (const std::vector<int>* pn : {&released, &tiny}) {
      const varps::EditMask mask = varps::mask_from_image(img, pn->back());
      const std::vector<std::vector<uint8_t>> keep = varps::keep_per_scale(mask, *pn);
      if (keep.size() != pn->size()) varps::fuzz::finding("keep_per_scale lost a scale");
    }
  });
  return 0;
}
