// Uses the installed library through its public headers only: the
// built-in tiny model (deterministic random weights, as `varps generate`
// without checkpoints) generates one image of a class and seed with the
// default sampling, which is written as a PNG; its size and checksum are
// printed. Given a reference PNG (`varps generate` for the same class and
// seed), the pixels must be the same.
//
//   app CLASS SEED OUT.png [REFERENCE.png]
//
// Exit status 0 when the image was generated (and matches), 1 otherwise,
// 2 for wrong arguments.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "varps/config.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace {

// FNV-1a over the RGB bytes: a checksum two runs can be compared by.
uint64_t fnv1a64(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

int run(int class_id, uint64_t seed, int argc, char** argv) {
  varps::PipelineOptions options;
  options.vae_encoder = false;  // generation only decodes
  const varps::Pipeline pipe = varps::Pipeline::from_preset("tiny", options);
  const varps::VarConfig& vc = pipe.var_config();
  if (class_id < 0 || class_id > vc.num_classes) {
    std::fprintf(stderr, "app: class %d is outside 0..%d (%d: unconditional)\n", class_id, vc.num_classes,
                 vc.num_classes);
    return 1;
  }

  varps::ImageRequest request;
  request.class_id = class_id;
  request.seed = seed;
  const varps::GeneratedImages images = pipe.generate({request});
  const int side = pipe.vae_config().downsample() * vc.patch_nums.back();
  if (images.count != 1 || images.height != side || images.width != side) {
    std::fprintf(stderr, "app: expected one %dx%d image, got %lld of %lldx%lld\n", side, side,
                 static_cast<long long>(images.count), static_cast<long long>(images.width),
                 static_cast<long long>(images.height));
    return 1;
  }
  const varps::RgbImage rgb =
      varps::to_rgb8(images.pixels.data(), static_cast<int>(images.height), static_cast<int>(images.width));
  varps::write_png(argv[3], rgb);
  std::printf("%s\n", vc.describe().c_str());
  std::printf("image %dx%d, class %d, seed %llu, backend %s, fnv1a64 %016llx, wrote %s\n", rgb.width, rgb.height,
              class_id, static_cast<unsigned long long>(seed), pipe.backend_name().c_str(),
              static_cast<unsigned long long>(fnv1a64(rgb.pixels)), argv[3]);

  if (argc == 5) {
    const varps::RgbImage want = varps::read_png(argv[4]);
    if (want.width != rgb.width || want.height != rgb.height || want.pixels != rgb.pixels) {
      std::fprintf(stderr, "app: the image differs from %s (%dx%d, fnv1a64 %016llx)\n", argv[4], want.width,
                   want.height, static_cast<unsigned long long>(fnv1a64(want.pixels)));
      return 1;
    }
    std::printf("same pixels as %s\n", argv[4]);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s CLASS SEED OUT.png [REFERENCE.png]\n", argv[0]);
    return 2;
  }
  int class_id = 0;
  uint64_t seed = 0;
  try {
    class_id = std::stoi(argv[1]);
    seed = std::stoull(argv[2]);
  } catch (const std::exception&) {
    std::fprintf(stderr, "app: CLASS and SEED must be numbers, not '%s' and '%s'\n", argv[1], argv[2]);
    return 2;
  }
  try {
    return run(class_id, seed, argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "app: error: %s\n", e.what());
    return 1;
  }
}
