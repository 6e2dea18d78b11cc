// Finding the shipped trained models on disk.
#include "varps/builtin_models.hpp"

#include <cstdlib>

#include "varps/error.hpp"

namespace varps {

namespace {

struct Entry {
  const char* name;
  const char* var_file;
  const char* summary;
};

constexpr Entry kModels[] = {
    {"fmnist", "var_d8.pth",
     "VAR depth 8 trained on Fashion-MNIST: 32x32 garments of 10 classes (0 T-shirt/top, 1 trouser, 2 pullover, "
     "3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot)"},
    {"fmnist-d4", "var_d4.pth", "VAR depth 4 trained on Fashion-MNIST (the smaller of the two; same tokenizer)"},
};

}  // namespace

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> out;
  for (const Entry& e : kModels) out.emplace_back(e.name);
  return out;
}

std::vector<std::filesystem::path> builtin_model_dirs() {
  std::vector<std::filesystem::path> dirs;
  if (const char* env = std::getenv("VARPS_MODEL_DIR"); env && *env) dirs.emplace_back(env);
#ifdef VARPS_INSTALLED_MODEL_DIR
  dirs.emplace_back(VARPS_INSTALLED_MODEL_DIR);
#endif
#ifdef VARPS_SOURCE_MODEL_DIR
  dirs.emplace_back(VARPS_SOURCE_MODEL_DIR);
#endif
  return dirs;
}

BuiltinModel find_builtin_model(const std::string& name) {
  const Entry* entry = nullptr;
  std::string known;
  for (const Entry& e : kModels) {
    if (name == e.name) entry = &e;
    known += (known.empty() ? "" : ", ") + std::string(e.name);
  }
  if (!entry) throw Error("unknown built-in model '" + name + "' (known: " + known + ")");
  std::string searched;
  for (const std::filesystem::path& dir : builtin_model_dirs()) {
    const std::filesystem::path folder = dir / "fmnist";
    std::error_code ec;
    if (std::filesystem::is_regular_file(folder / entry->var_file, ec) &&
        std::filesystem::is_regular_file(folder / "vae.pth", ec))
      return {entry->name, folder / entry->var_file, folder / "vae.pth", folder / "classifier.safetensors",
              entry->summary};
    searched += (searched.empty() ? "" : ", ") + folder.string();
  }
  throw Error("the built-in model '" + name + "' is not installed (looked for " + entry->var_file +
              " and vae.pth in " + (searched.empty() ? std::string("no folder") : searched) +
              "); set VARPS_MODEL_DIR, give --var/--vae, or use --preset tiny");
}

}  // namespace varps
