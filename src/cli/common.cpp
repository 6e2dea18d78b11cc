// Helpers shared by the subcommands: strict flag parsing, output paths, the
// token-map JSON file, and stderr notes / progress.
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

#include "cli/commands.hpp"
#include "varps/device_memory.hpp"
#include "varps/error.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void bad_value(const std::string& flag, const std::string& text, const std::string& expected) {
  throw UsageError("invalid value '" + text + "' for " + flag + ": expected " + expected);
}

}  // namespace

uint64_t parse_u64(const std::string& flag, const std::string& text) {
  const std::string expected =
      "a non-negative integer (0.." + std::to_string(std::numeric_limits<uint64_t>::max()) + ")";
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  // from_chars takes no sign or whitespace, so "-1", "+1", " 1" all fail here.
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end) bad_value(flag, text, expected);
  return v;
}

int parse_int(const std::string& flag, const std::string& text, int min_value) {
  const std::string expected = "an integer >= " + std::to_string(min_value);
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v < min_value || v > std::numeric_limits<int>::max())
    bad_value(flag, text, expected);
  return static_cast<int>(v);
}

double parse_double(const std::string& flag, const std::string& text, double min_value, double max_value) {
  const std::string expected =
      std::isinf(max_value) ? "a finite number >= " + format_double(min_value)
                            : "a number between " + format_double(min_value) + " and " + format_double(max_value);
  double v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v, std::chars_format::general);
  if (text.empty() || ec != std::errc() || p != end || !std::isfinite(v) || v < min_value || v > max_value)
    bad_value(flag, text, expected);
  return v;
}

SamplingParams parse_sampling(const std::string& cfg, const std::string& top_k, const std::string& top_p,
                              const std::string& temperature) {
  const double inf = std::numeric_limits<double>::infinity();
  SamplingParams s;
  s.cfg = parse_double("--cfg", cfg, 0.0, inf);
  s.top_k = parse_int("--top-k", top_k, 0);
  s.top_p = parse_double("--top-p", top_p, 0.0, 1.0);
  s.temperature = parse_double("--temperature", temperature, 1e-6, inf);
  return s;
}

std::vector<std::pair<std::string, std::string>> image_png_text(
    const ImageRequest& r, int num_classes, const std::vector<std::pair<std::string, std::string>>& model,
    std::vector<std::pair<std::string, std::string>> before) {
  std::vector<std::pair<std::string, std::string>> text = std::move(before);
  text.emplace_back("varps:class", std::to_string(r.class_id));
  text.emplace_back("varps:num_classes", std::to_string(num_classes));
  text.emplace_back("varps:seed", std::to_string(r.seed));
  for (auto& kv : sampling_fields(r.sampling, "varps:")) text.push_back(std::move(kv));
  text.insert(text.end(), model.begin(), model.end());
  text.emplace_back("varps:version", kVersion);
  text.emplace_back("Software", std::string("varps ") + kVersion);
  return text;
}

std::vector<std::pair<std::string, std::string>> sampling_fields(const SamplingParams& s, const std::string& prefix) {
  return {{prefix + "cfg", format_double(s.cfg)},
          {prefix + "top_k", std::to_string(s.top_k)},
          {prefix + "top_p", format_double(s.top_p)},
          {prefix + "temperature", format_double(s.temperature)}};
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::vector<int> parse_int_list(const std::string& flag, const std::string& text) {
  std::vector<int> out;
  for (const std::string& item : split_commas(text)) {
    int v = 0;
    const char* end = item.data() + item.size();
    auto [p, ec] = std::from_chars(item.data(), end, v);
    if (item.empty() || ec != std::errc() || p != end || v <= 0)
      bad_value(flag, text, "a comma-separated list of positive integers such as 1,2,3,4");
    out.push_back(v);
  }
  return out;
}

std::string format_double(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : std::to_string(v);
}

std::string join_ints(const std::vector<int>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += sep;
    s += std::to_string(v[i]);
  }
  return s;
}

std::string format_bytes(uint64_t bytes) {
  return bytes < 1024 ? std::to_string(bytes) + " B" : std::to_string(bytes) + " B (" + bytes_text(bytes) + ")";
}

void prepare_output_dir(const fs::path& dir) {
  std::string name = "'";  // (built in steps: GCC 12 warns falsely on "'" + string)
  name += dir.string();
  name += '\'';
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st))
      throw Error("cannot use output directory " + name + ": it exists and is not a directory");
  } else {
    fs::create_directories(dir, ec);
    if (ec) throw Error("cannot create output directory " + name + ": " + ec.message());
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    throw Error("cannot write to output directory " + name + ": " + std::generic_category().message(err));
  }
}

void check_output_file_dir(const fs::path& file, const char* flag) {
  const fs::path parent = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    throw Error(std::string("cannot write ") + flag + " file '" + file.string() + "': directory '" + parent.string() +
                "' does not exist");
  if (fs::is_directory(file, ec))
    throw Error(std::string("cannot write ") + flag + " file '" + file.string() + "': it is a directory");
}

void write_tokens_json(const fs::path& path, const std::vector<int>& patch_nums,
                       const std::vector<TokenRecord>& images) {
  nlohmann::ordered_json doc;
  doc["patch_nums"] = patch_nums;
  doc["images"] = nlohmann::ordered_json::array();
  for (const TokenRecord& r : images) {
    nlohmann::ordered_json img;
    img["class"] = r.class_id ? nlohmann::ordered_json(*r.class_id) : nlohmann::ordered_json(nullptr);
    img["seed"] = r.seed ? nlohmann::ordered_json(*r.seed) : nlohmann::ordered_json(nullptr);
    img["tokens"] = r.tokens ? nlohmann::ordered_json(*r.tokens) : nlohmann::ordered_json::array();
    doc["images"].push_back(std::move(img));
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    const int err = errno;
    throw Error("cannot write tokens file '" + path.string() + "': " + std::generic_category().message(err));
  }
  out << doc.dump() << '\n';
  out.close();
  if (!out) throw Error("cannot write tokens file '" + path.string() + "': write failed");
}

namespace {

// A value of an untrusted file, for a message: numbers and short strings as
// they are written, anything else by its type. dump() recurses once per
// level of nesting, so a deeply nested value would overflow the stack.
std::string json_brief(const nlohmann::json& v) {
  if (v.is_number() || v.is_boolean() || v.is_null()) return v.dump();
  if (v.is_string() && v.get_ref<const std::string&>().size() <= 32) return v.dump();
  return std::string("(") + (v.is_string() ? "a long string" : v.is_array() ? "a list" : "an object") + ")";
}

}  // namespace

std::vector<TokenMaps> read_tokens_json(const fs::path& path, const VarConfig& vc) {
  const std::string where = "tokens file '" + path.string() + "'";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw Error("cannot read " + where + ": " + std::generic_category().message(err));
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + " is not valid JSON: " + e.what());
  }
  if (!doc.is_object() || !doc.contains("patch_nums") || !doc.contains("images") || !doc["images"].is_array())
    throw Error(where + " has no \"patch_nums\" and \"images\" (the layout `generate --tokens-out` writes)");
  // Each entry is checked before it is converted: get<int>() of 1e300 is
  // undefined, and of 4294967297 it wraps to 1.
  std::vector<int> pn;
  const nlohmann::json& pn_json = doc["patch_nums"];
  if (!pn_json.is_array()) throw Error(where + ": \"patch_nums\" must be a list of integers");
  for (const nlohmann::json& v : pn_json) {
    // (An unsigned value beyond int64 reads back negative.)
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > std::numeric_limits<int>::max())
      throw Error(where + ": \"patch_nums\" must be a list of positive integers, not " + json_brief(v));
    pn.push_back(static_cast<int>(v.get<int64_t>()));
  }
  if (pn != vc.patch_nums)
    throw Error(where + " holds token maps of scales " + join_ints(pn) + ", the model's are " +
                join_ints(vc.patch_nums));
  if (doc["images"].empty()) throw Error(where + " holds no image");
  std::vector<TokenMaps> out;
  for (size_t i = 0; i < doc["images"].size(); ++i) {
    const std::string image = where + ", image " + std::to_string(i);
    const nlohmann::json& img = doc["images"][i];
    if (!img.is_object() || !img.contains("tokens") || !img["tokens"].is_array())
      throw Error(image + " has no \"tokens\" list");
    const nlohmann::json& maps = img["tokens"];
    if (maps.size() != pn.size())
      throw Error(image + " has " + std::to_string(maps.size()) + " token maps, the model " +
                  std::to_string(pn.size()) + " scales");
    TokenMaps t(pn.size());
    for (size_t s = 0; s < pn.size(); ++s) {
      const size_t l = static_cast<size_t>(pn[s]) * static_cast<size_t>(pn[s]);
      const std::string scale = image + ", scale " + std::to_string(s);
      if (!maps[s].is_array() || maps[s].size() != l)
        throw Error(scale + ": expected a list of " + std::to_string(l) + " tokens (" + std::to_string(pn[s]) + "x" +
                    std::to_string(pn[s]) + ")");
      for (const nlohmann::json& v : maps[s]) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vc.vocab_size)
          throw Error(scale + ": token " + json_brief(v) + " is not an integer in [0, " +
                      std::to_string(vc.vocab_size) + ")");
        t[s].push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

Console::Console(bool verbose, bool quiet) : verbose_(verbose), quiet_(quiet), tty_(::isatty(STDERR_FILENO) == 1) {}

void Console::note(const std::string& msg) const {
  if (!quiet_) std::fprintf(stderr, "varps: note: %s\n", msg.c_str());
}

void Console::status(const std::string& msg) const {
  if (!quiet_) std::fprintf(stderr, "varps: %s\n", msg.c_str());
}

void Console::info(const std::string& msg) const {
  if (verbose_ && !quiet_) std::fprintf(stderr, "varps: %s\n", msg.c_str());
}

void Console::start_task() {
  shown_ = false;
  t0_ = std::chrono::steady_clock::now();
}

void Console::progress(const std::string& what, int done, int total, const std::string& next) {
  if (quiet_ || !(tty_ || verbose_)) return;
  if (ms_since(t0_) < 1000.0) return;
  if (tty_) {
    std::fprintf(stderr, "\rvarps: %s %d/%d%s%s", what.c_str(), done, total, next.empty() ? "" : ", ", next.c_str());
  } else {
    std::fprintf(stderr, "varps: %s %d/%d%s%s\n", what.c_str(), done, total, next.empty() ? "" : ", ",
                 next.c_str());
  }
  std::fflush(stderr);
  shown_ = true;
}

void Console::end_task() {
  if (shown_ && tty_) std::fprintf(stderr, "\n");
  shown_ = false;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace varps::cli
