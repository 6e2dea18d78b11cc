#include "cli/sample_set.hpp"

#include <cstdio>
#include <fstream>

#include "io/npz_writer.hpp"
#include "varps/error.hpp"

namespace varps::cli {

namespace fs = std::filesystem;

namespace {

// How a job parameter is spelled on the command line, for the refusal of a
// rerun that differs.
std::string flag_of(const std::string& key) {
  static const std::vector<std::pair<std::string, std::string>> flags = {
      {"var", "--var"},         {"var_sha256", "the --var checkpoint's contents"},
      {"vae", "--vae"},         {"vae_sha256", "the --vae checkpoint's contents"},
      {"preset", "--preset"},   {"adapter", "--adapter"},
      {"adapter_sha256", "the --adapter file's contents"},
      {"classes", "--classes/--class"}, {"per_class", "--per-class"},
      {"cfg", "--cfg"},         {"top_k", "--top-k"},
      {"top_p", "--top-p"},     {"temperature", "--temperature"},
      {"seed", "--seed"},       {"shard_size", "--shard-size"},
      {"png", "--png"},         {"device", "--device"},
      {"precision", "--precision"}};
  for (const auto& [k, f] : flags)
    if (k == key) return f;
  return key;
}

// A recorded value, for a message: scalars as they are written (long
// strings cut), lists and objects by their kind. dump() recurses once per
// level of nesting, so a deeply nested value in a damaged record would
// overflow the stack.
std::string short_text(const nlohmann::ordered_json& v) {
  if (v.is_array()) return "(a list)";
  if (v.is_object()) return "(an object)";
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

ImageRequest SampleSetJob::request(int64_t i) const {
  return {classes[static_cast<size_t>(i / per_class)], seed + static_cast<uint64_t>(i), sampling};
}

void claim_sample_dir(const fs::path& dir, const SampleSetJob& job) {
  const fs::path file = dir / "job.json";
  std::error_code ec;
  if (fs::exists(file, ec)) {
    nlohmann::ordered_json old;
    try {
      std::ifstream in(file);
      // A record is three levels deep; building a deeper one would recurse
      // once per level of nesting.
      const auto shallow = [](int depth, nlohmann::ordered_json::parse_event_t, nlohmann::ordered_json&) {
        if (depth > 16) throw Error("nested more than 16 levels deep");
        return true;
      };
      nlohmann::ordered_json record = nlohmann::ordered_json::parse(in, shallow);
      old = std::move(record.at("job"));
    } catch (const std::exception& e) {  // the JSON library's, or the depth limit's Error
      throw Error("'" + file.string() + "' is not a sample job record (" + e.what() +
                  "); remove it or use another --out");
    }
    for (const auto& [key, value] : job.identity.items()) {
      const auto it = old.find(key);
      if (it == old.end() || *it != value)
        throw Error("'" + dir.string() + "' holds a sample job with other parameters: " + flag_of(key) + " was " +
                    (it == old.end() ? std::string("unset") : short_text(*it)) + ", now " + short_text(value) +
                    " (rerun with the same parameters to resume, or use another --out)");
    }
    for (const auto& [key, value] : old.items())
      if (!job.identity.contains(key))
        throw Error("'" + dir.string() + "' holds a sample job with other parameters: " + flag_of(key) + " was " +
                    short_text(value) + ", now unset");
    return;
  }
  nlohmann::ordered_json doc;
  doc["job"] = job.identity;
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump(2) << '\n';
    if (!out) throw Error("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, file, ec);
  if (ec) throw Error("cannot write '" + file.string() + "': " + ec.message());
}

fs::path shard_path(const fs::path& dir, int64_t k) {
  char name[32];
  std::snprintf(name, sizeof name, "%06lld.rgb", static_cast<long long>(k));
  return dir / "shards" / name;
}

bool shard_complete(const fs::path& dir, const SampleSetJob& job, int64_t k) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(shard_path(dir, k), ec);
  return !ec && size == static_cast<uintmax_t>((job.shard_end(k) - job.shard_begin(k)) * job.height * job.width * 3);
}

fs::path merge_sample_set(const fs::path& dir, const SampleSetJob& job) {
  io::NpyArray images{"arr_0", "|u1", {job.images(), job.height, job.width, 3}, {}};
  for (int64_t k = 0; k < job.shards(); ++k) {
    if (!shard_complete(dir, job, k)) throw Error("shard " + shard_path(dir, k).string() + " is missing or incomplete");
    images.parts.push_back({shard_path(dir, k), {}});
  }
  std::string labels;
  for (int64_t i = 0; i < job.images(); ++i) {
    const int64_t c = job.request(i).class_id;
    for (int b = 0; b < 8; ++b) labels += static_cast<char>((static_cast<uint64_t>(c) >> (8 * b)) & 0xff);
  }
  const io::NpyArray label_array{"arr_1", "<i8", {job.images()}, {{{}, labels}}};
  const fs::path out = dir / "samples.npz";
  io::write_npz(out, {images, label_array});
  // Half-written shards of killed runs (every shard is whole by now).
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir / "shards", ec))
    if (e.path().filename().string().find(".rgb.tmp") != std::string::npos) fs::remove(e.path(), ec);
  return out;
}

}  // namespace varps::cli
