// `varps reconstruct`: PNG → VQVAE encoder → multi-scale tokens → decoder → PNG.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.hpp"
#include "varps/config.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

void add_reconstruct(CLI::App& app, ReconstructArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "reconstruct", "Encode an image into multi-scale tokens with a VQVAE and decode it back (tokenizer round trip)");
  cmd->add_option("IMAGE", a.image, "Input PNG; square, with a side divisible by the tokenizer's downsampling factor")
      ->type_name("")
      ->required();
  cmd->add_option("--vae", a.vae, "VQVAE tokenizer checkpoint (.pth or .safetensors) with an encoder")
      ->type_name("FILE")
      ->required();
  cmd->add_option("--out,-o", a.out, "Output PNG (the reconstruction, same size as the input)")
      ->type_name("OUT.png")
      ->required();
  cmd->add_option("--patch-nums", a.patch_nums,
                  "Comma list of token-map sides, one per scale; the last must equal the latent side (image side / "
                  "downsampling factor). Default: the released 1,2,3,4,5,6,8,10,13,16 when the latent side is 16; "
                  "required otherwise")
      ->type_name("LIST");
  cmd->add_option("--tokens-out", a.tokens_out,
                  "Also write the token maps as JSON (same layout as `generate --tokens-out`, one image, class and "
                  "seed null)")
      ->type_name("FILE");
  add_device_flags(cmd, a.device);
  cmd->add_flag("--verbose,-v", a.verbose, "Print the tokenizer description, thread count and stage timings (ms)");
  cmd->footer(kExitStatusHelp);
}

int run_reconstruct(const ReconstructArgs& a) {
  const PipelineOptions po = parse_device(a.device);
  std::vector<int> patch_nums;
  if (!a.patch_nums.empty()) patch_nums = parse_int_list("--patch-nums", a.patch_nums);
  Console con(a.verbose, false);

  const RgbImage rgb = read_png(a.image);
  if (rgb.width != rgb.height)
    throw Error("image '" + a.image + "' is " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                ": reconstruct needs a square image");
  check_output_file_dir(a.out, "--out");
  if (!a.tokens_out.empty()) check_output_file_dir(a.tokens_out, "--tokens-out");

  auto t0 = std::chrono::steady_clock::now();
  Pipeline pipe = Pipeline::vae_only(a.vae, po);
  const double load_ms = ms_since(t0);
  const VaeConfig& vc = pipe.vae_config();
  con.info("tokenizer: " + vc.describe());
  con.info("backend: " + pipe.backend_name() + ", " + pipe.backend_info());
  if (!vc.has_encoder())
    throw Error("VQVAE checkpoint '" + a.vae + "' has no encoder: it can decode tokens but not reconstruct images");
  const int down = vc.downsample();
  if (rgb.width % down != 0)
    throw Error("image '" + a.image + "' is " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                ": its side must be divisible by the tokenizer's downsampling factor " + std::to_string(down));
  const int S = rgb.width / down;
  if (patch_nums.empty()) {
    if (S != 16)
      throw Error("--patch-nums is required: image '" + a.image + "' is " + std::to_string(rgb.width) + "x" +
                  std::to_string(rgb.height) + " (latent side " + std::to_string(S) +
                  ") and the default 1,2,3,4,5,6,8,10,13,16 fits only latent side 16 (" + std::to_string(16 * down) +
                  "x" + std::to_string(16 * down) + " images for this tokenizer)");
    patch_nums = released_patch_nums_256();
  }
  for (int p : patch_nums)
    if (p > S)
      throw Error("--patch-nums " + a.patch_nums + ": " + std::to_string(p) + " exceeds the latent side " +
                  std::to_string(S) + " of the " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                  " image");
  if (patch_nums.back() != S)
    throw Error("--patch-nums " + join_ints(patch_nums) + ": the last entry must equal the latent side " +
                std::to_string(S) + " (" + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                " image, downsampling factor " + std::to_string(down) + ")");

  t0 = std::chrono::steady_clock::now();
  const Tensor chw = rgb8_to_signed_chw(rgb);
  const Tensor img(Shape{1, 3, rgb.height, rgb.width}, chw.data);
  const Tensor f = pipe.encode(img);
  const double encode_ms = ms_since(t0);
  t0 = std::chrono::steady_clock::now();
  Tensor f_hat;
  const std::vector<std::vector<int32_t>> tokens = pipe.quantize(f, patch_nums, &f_hat);
  const double quantize_ms = ms_since(t0);
  t0 = std::chrono::steady_clock::now();
  Tensor rec = pipe.decode(f_hat);
  const double decode_ms = ms_since(t0);
  if (rec.shape.size() != 4 || rec.shape[0] != 1 || rec.shape[1] != 3)
    throw Error("decoder returned a tensor of shape " + shape_str(rec.shape) + ", expected [1, 3, H, W]");
  for (float& v : rec.data) v = (v + 1.0f) * 0.5f;  // [-1, 1] → [0, 1]
  const RgbImage out = to_rgb8(rec.ptr(), static_cast<int>(rec.shape[2]), static_cast<int>(rec.shape[3]));
  write_png(a.out, out,
            {{"varps:source", a.image},
             {"varps:vae", a.vae},
             {"varps:patch_nums", join_ints(patch_nums)},
             {"varps:version", kVersion},
             {"Software", std::string("varps ") + kVersion}});
  if (!a.tokens_out.empty()) write_tokens_json(a.tokens_out, patch_nums, {{std::nullopt, std::nullopt, &tokens}});

  if (a.verbose) {
    char line[128];
    con.info("timings (ms):");
    std::snprintf(line, sizeof line, "  load weights %10.2f", load_ms);
    con.info(line);
    std::snprintf(line, sizeof line, "  encode       %10.2f", encode_ms);
    con.info(line);
    std::snprintf(line, sizeof line, "  quantize     %10.2f  (%zu scales)", quantize_ms, patch_nums.size());
    con.info(line);
    std::snprintf(line, sizeof line, "  decode       %10.2f", decode_ms);
    con.info(line);
  }
  return 0;
}

}  // namespace varps::cli
