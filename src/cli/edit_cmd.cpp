// `varps edit`: zero-shot in-painting, out-painting and class-conditional
// editing of an image (or of token maps) → PNG files.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <limits>

#include "cli/commands.hpp"
#include "varps/adapter.hpp"
#include "varps/config.hpp"
#include "varps/edit.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

namespace {

// "y0,x0,y1,x1": four fractions of the image, y0 < y1 and x0 < x1.
EditBox parse_box(const std::string& text) {
  const std::vector<std::string> parts = split_commas(text);
  if (parts.size() != 4)
    throw UsageError("--box '" + text + "': expected four fractions y0,x0,y1,x1 (for example 0.25,0.25,0.75,0.75)");
  double v[4];
  for (int i = 0; i < 4; ++i) v[i] = parse_double("--box", parts[static_cast<size_t>(i)], 0.0, 1.0);
  if (!(v[0] < v[2]) || !(v[1] < v[3]))
    throw UsageError("--box '" + text + "' is empty: it needs y0 < y1 and x0 < x1 (y0,x0,y1,x1)");
  return EditBox{v[0], v[1], v[2], v[3]};
}

// The image to edit, checked against the model's resolution.
Tensor read_image_to_edit(const std::string& path, int64_t side) {
  const RgbImage rgb = read_png(path);
  if (rgb.width != side || rgb.height != side)
    throw Error("image '" + path + "' is " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                ": this model edits " + std::to_string(side) + "x" + std::to_string(side) + " images");
  const Tensor chw = rgb8_to_signed_chw(rgb);
  return Tensor(Shape{1, 3, side, side}, chw.data);
}

EditMask read_mask(const std::string& path, int64_t image_side, int64_t token_side) {
  const RgbImage rgb = read_png(path);
  if (rgb.width != image_side || rgb.height != image_side)
    throw Error("mask '" + path + "' is " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                ": it must have the image's size, " + std::to_string(image_side) + "x" + std::to_string(image_side));
  return mask_from_image(rgb, token_side);
}

}  // namespace

void add_edit(CLI::App& app, EditArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "edit",
      "Zero-shot editing: keep an image's tokens where a mask says so and generate the rest (in-painting, "
      "out-painting, class-conditional editing)");
  add_model_flags(cmd, a.model, "; --image needs its encoder");
  auto* image = cmd->add_option("--image", a.image,
                                "The image to edit: a PNG of the model's resolution (256x256 for the released "
                                "256-pixel models), encoded with the VQVAE")
                    ->type_name("IN.png");
  auto* tokens = cmd->add_option("--input-tokens", a.input_tokens,
                                 "Instead of --image: token maps in the layout `generate --tokens-out` writes, one "
                                 "or more images (exact tokens, for scripted pipelines)")
                     ->type_name("FILE");
  image->excludes(tokens);
  auto* box = cmd->add_option("--box", a.box,
                              "Fractions of the image y0,x0,y1,x1 (rows, then columns): by default the box is "
                              "generated and the rest kept (in-painting); see --outpaint")
                  ->type_name("Y0,X0,Y1,X1");
  auto* mask = cmd->add_option("--mask", a.mask,
                               "Instead of --box: a PNG of the image's size, white = generate, black = keep; "
                               "resized to the last token map bilinearly, as VAR's edit demo does")
                   ->type_name("MASK.png");
  box->excludes(mask);
  cmd->add_flag("--outpaint", a.outpaint, "Keep the box and generate what lies outside it (out-painting)")
      ->needs(box);
  cmd->add_option("--class,-c", a.classes,
                  "Class of the generated part: 'uncond' (or the number of classes) for plain in-painting, a class "
                  "id for class-conditional editing. With --image, one edit of the image per class; with "
                  "--input-tokens, one class per image, or one for all")
      ->type_name("ID")
      ->delimiter(',')
      ->required();
  add_sampling_flags(cmd, a.sampling);
  cmd->add_option("--seed", a.seed, "Seed of the first output; output i uses seed + i")
      ->type_name("S")
      ->capture_default_str();
  cmd->add_option("--streams,-P", a.streams,
                  "Variants of each edit, seeds continuing the count, all through the backbone in one batched pass "
                  "per scale")
      ->type_name("P")
      ->capture_default_str();
  add_adapter_flag(cmd, a.adapter, "every edit runs as the adapter's P streams");
  cmd->add_option("--out,-o", a.out, "Output directory (created if missing); writes 000000.png, 000001.png, ...")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--tokens-out", a.tokens_out, "Also write the edited token maps as JSON (the --input-tokens layout)")
      ->type_name("FILE");
  add_device_flags(cmd, a.device);
  add_fast_mode_flags(cmd, a.fast);
  auto* verbose = cmd->add_flag("--verbose,-v", a.verbose, "Print the model description, progress and timings");
  cmd->add_flag("--quiet,-q", a.quiet, "Print nothing but errors")->excludes(verbose);
  cmd->footer(
      "Give the image (--image or --input-tokens), the region (--box or --mask) and at least one --class.\n\n"
      "How it works: the image's multi-scale tokens are kept where the mask keeps them and the model generates "
      "the rest, scale by scale: at each scale the mask is resized to the token map (bilinear, kept above 0.5; "
      "scales of at most 3 tokens are kept whole) and, after sampling, the kept positions take the image's "
      "tokens before the next scale is formed.\n\n"
      "Examples:\n"
      "  varps edit --var var_d16.pth --vae vae_ch160v4096z32.pth --image in.png --box 0.25,0.25,0.75,0.75 "
      "--class uncond --out inpainted\n"
      "  varps edit --var var_d16.pth --vae vae_ch160v4096z32.pth --image in.png --box 0.2,0.2,0.8,0.8 "
      "--outpaint --class 207 --cfg 1.5 --out outpainted\n\n"
      "Each PNG carries tEXt metadata: varps:edit (inpaint, outpaint or mask), varps:box or varps:mask, "
      "varps:source, varps:class, varps:seed and the sampling parameters.\n\n" +
      std::string(kExitStatusHelp));
}

int run_edit(const EditArgs& a) {
  // ---- flags alone (usage errors, exit 2) ----
  const SamplingParams sp = parse_sampling(a.sampling);
  const uint64_t seed = parse_u64("--seed", a.seed);
  const PipelineOptions device = parse_device(a.device);
  const int streams = parse_int("--streams", a.streams, 1);
  const ModelChoice model = choose_model(a.model);
  const FastModes fast = parse_fast_modes(a.fast);
  if (a.image.empty() == a.input_tokens.empty()) throw UsageError("give the image to edit: --image or --input-tokens");
  if (a.box.empty() == a.mask.empty()) throw UsageError("give the region to edit: --box or --mask");
  std::optional<EditBox> box;
  if (!a.box.empty()) box = parse_box(a.box);
  std::vector<std::optional<int64_t>> classes;
  for (const std::string& c : a.classes) classes.push_back(parse_class("--class", c));
  Console con(a.verbose, a.quiet);

  // ---- checks against the model and the inputs (exit 1) ----
  const VarConfig vc = peek_var_config(model);
  check_fast_modes(fast, vc, !a.fast.refiner.empty());
  const int64_t token_side = vc.patch_nums.back();
  const EditMask edit_mask = box ? box_mask(*box, token_side, a.outpaint)
                                 : EditMask{};  // a mask image is read once the tokenizer's factor is known
  std::vector<TokenMaps> inputs;
  if (!a.input_tokens.empty()) {
    inputs = read_tokens_json(a.input_tokens, vc);
    if (classes.size() != 1 && classes.size() != inputs.size())
      throw UsageError("--input-tokens holds " + std::to_string(inputs.size()) + " images: give one --class for " +
                       "all of them or one per image, not " + std::to_string(classes.size()));
  }
  std::vector<int> class_ids;
  for (const auto& c : classes) class_ids.push_back(c ? check_class(*c, vc) : vc.num_classes);
  const std::optional<ParScaleAdapter> adapter = read_adapter(a.adapter, vc);
  const fs::path out_dir = a.out;
  prepare_output_dir(out_dir);
  if (!a.tokens_out.empty()) check_output_file_dir(a.tokens_out, "--tokens-out");

  // ---- load ----
  const auto t_load = std::chrono::steady_clock::now();
  Pipeline pipe = load_model(model, device, con, /*with_encoder=*/!a.image.empty());
  attach_adapter(pipe, adapter, a.adapter, con);
  attach_refiner(pipe, a.fast, model, con);
  const int64_t image_side = token_side * pipe.vae_config().downsample();
  const EditMask mask = box ? edit_mask : read_mask(a.mask, image_side, token_side);
  const double load_ms = ms_since(t_load);

  // ---- the edits: image-major, then class, then stream ----
  const auto t_encode = std::chrono::steady_clock::now();
  std::vector<std::string> sources;
  if (!a.image.empty()) {
    if (!pipe.vae_config().has_encoder())
      throw Error("VQVAE checkpoint '" + a.model.vae + "' has no encoder: it cannot encode --image (give --input-tokens)");
    inputs = pipe.tokenize(read_image_to_edit(a.image, image_side));
    sources.push_back(a.image);
  } else {
    for (size_t i = 0; i < inputs.size(); ++i) sources.push_back(a.input_tokens + "#" + std::to_string(i));
  }
  const double encode_ms = ms_since(t_encode);
  std::vector<EditRequest> edits;
  std::vector<size_t> edit_source;
  const uint64_t total = static_cast<uint64_t>(a.image.empty() ? inputs.size() : class_ids.size()) *
                         static_cast<uint64_t>(streams);
  if (total - 1 > std::numeric_limits<uint64_t>::max() - seed)
    throw UsageError("--seed " + a.seed + " + " + std::to_string(total - 1) + " (one seed per output) does not fit in 64 bits");
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<int> ids;
    if (!a.image.empty()) ids = class_ids;
    else ids = {class_ids.size() == 1 ? class_ids[0] : class_ids[i]};
    for (int c : ids)
      for (int p = 0; p < streams; ++p) {
        edits.push_back({{c, seed + edits.size(), sp}, inputs[i], mask});
        edit_source.push_back(i);
      }
  }

  GenerateOptions go;
  go.fast = fast;
  con.start_task();
  go.progress = [&con](int si, int n) { con.progress("scale", si + 1, n, si + 1 == n ? "decoding" : ""); };
  const GeneratedImages imgs = pipe.edit(edits, go);
  con.end_task();

  // ---- write ----
  const int64_t H = imgs.height, W = imgs.width;
  const std::string kind = box ? (a.outpaint ? "outpaint" : "inpaint") : "mask";
  std::vector<std::pair<std::string, std::string>> png_model = model_metadata(model, pipe);
  add_adapter_metadata(png_model, a.adapter, pipe);
  add_fast_mode_metadata(png_model, fast, a.fast);
  for (size_t i = 0; i < edits.size(); ++i) {
    const ImageRequest& r = edits[i].image;
    const std::vector<std::pair<std::string, std::string>> text =
        image_png_text(r, vc.num_classes, png_model,
                       {{"varps:edit", kind},
                        {box ? "varps:box" : "varps:mask", box ? a.box : a.mask},
                        {"varps:source", sources[edit_source[i]]}});
    char name[32];
    std::snprintf(name, sizeof name, "%06zu.png", i);
    write_png(out_dir / name, to_rgb8(imgs.pixels.data() + i * 3 * H * W, static_cast<int>(H), static_cast<int>(W)),
              text);
  }
  if (!a.tokens_out.empty()) {
    std::vector<TokenRecord> recs;
    for (size_t i = 0; i < edits.size(); ++i)
      recs.push_back({edits[i].image.class_id, edits[i].image.seed, &imgs.tokens[i]});
    write_tokens_json(a.tokens_out, vc.patch_nums, recs);
  }
  if (a.verbose) {
    char line[160];
    std::snprintf(line, sizeof line, "timings (ms): load %.2f, encode %.2f, edit %.2f (decode %.2f)", load_ms,
                  encode_ms, imgs.timings.total_ms, imgs.timings.decode_ms);
    con.info(line);
  }
  con.status("wrote " + std::to_string(edits.size()) + " edited image" + (edits.size() == 1 ? "" : "s") + " (" +
             std::to_string(W) + "x" + std::to_string(H) + ") to " + out_dir.string() +
             (a.tokens_out.empty() ? "" : ", tokens to " + a.tokens_out));
  return 0;
}

}  // namespace varps::cli
