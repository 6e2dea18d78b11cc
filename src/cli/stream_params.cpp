// Class ids and per-stream parameters from the command line and from a
// --stream-params file.
#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "varps/error.hpp"

namespace varps::cli {

std::optional<int64_t> parse_class(const std::string& flag, const std::string& text) {
  if (text == "uncond") return std::nullopt;
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end)
    throw UsageError("invalid value '" + text + "' for " + flag + ": expected a class id (an integer) or 'uncond'");
  return v;
}

int check_class(int64_t id, const VarConfig& vc) {
  if (id < 0 || id > vc.num_classes)
    throw Error("class " + std::to_string(id) + " is out of range: this model has classes 0.." +
                std::to_string(vc.num_classes - 1) + ", and 'uncond' (= " + std::to_string(vc.num_classes) +
                ") for unconditional");
  return static_cast<int>(id);
}

namespace {

using Json = nlohmann::json;

[[noreturn]] void bad(const std::filesystem::path& file, size_t index, const std::string& what) {
  throw Error(file.string() + ": stream " + std::to_string(index) + ": " + what);
}

double number(const Json& v, const std::filesystem::path& file, size_t i, const char* key, double lo, double hi) {
  if (!v.is_number()) bad(file, i, std::string("\"") + key + "\" must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    bad(file, i, std::string("\"") + key + "\" = " + v.dump() + " is out of range");
  return d;
}

}  // namespace

std::vector<ImageRequest> read_stream_params(const std::filesystem::path& file, const VarConfig& vc,
                                             std::optional<int> default_class, uint64_t seed,
                                             const SamplingParams& defaults) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read --stream-params file " + file.string());
  Json doc;
  try {
    doc = Json::parse(in);
  } catch (const Json::exception& e) {
    throw Error(file.string() + ": not valid JSON: " + e.what());
  }
  if (!doc.is_array() || doc.empty()) throw Error(file.string() + ": expected a non-empty JSON list of streams");
  std::vector<ImageRequest> out;
  for (size_t i = 0; i < doc.size(); ++i) {
    const Json& s = doc[i];
    if (!s.is_object()) bad(file, i, "expected an object");
    ImageRequest r;
    r.sampling = defaults;
    r.seed = seed + i;
    bool has_class = false;
    for (const auto& [key, v] : s.items()) {
      if (key == "class") {
        if (v.is_string() && v.get<std::string>() == "uncond") {
          r.class_id = vc.num_classes;
        } else if (v.is_number_integer()) {
          r.class_id = check_class(v.get<int64_t>(), vc);
        } else {
          bad(file, i, "\"class\" must be an integer or \"uncond\"");
        }
        has_class = true;
      } else if (key == "seed") {
        if (!v.is_number_unsigned()) bad(file, i, "\"seed\" must be a non-negative integer");
        r.seed = v.get<uint64_t>();
      } else if (key == "cfg") {
        r.sampling.cfg = number(v, file, i, "cfg", 0.0, 1e9);
      } else if (key == "top_k") {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 30))
          bad(file, i, "\"top_k\" must be an integer >= 0");
        r.sampling.top_k = v.get<int>();
      } else if (key == "top_p") {
        r.sampling.top_p = number(v, file, i, "top_p", 0.0, 1.0);
      } else if (key == "temperature") {
        r.sampling.temperature = number(v, file, i, "temperature", 1e-6, 1e9);
      } else {
        bad(file, i, "unknown field \"" + key + "\" (known: class, seed, cfg, top_k, top_p, temperature)");
      }
    }
    if (!has_class) {
      if (!default_class) bad(file, i, "no \"class\" and no --class to default to");
      r.class_id = *default_class;
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace varps::cli
