// Writes report files: bench.json, bench.csv, bench.md and bench.svg into one
// directory, and the text-file writer the other reports share.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "bench/format.hpp"
#include "varps/bench.hpp"
#include "varps/error.hpp"

namespace varps::bench {
namespace {

std::string quoted(const std::filesystem::path& p) {
  std::string s = "'";
  s += p.native();
  s += '\'';
  return s;
}

}  // namespace
void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    const int err = errno;
    throw Error("cannot write " + quoted(path) + ": " + std::strerror(err));
  }
  const size_t written = std::fwrite(text.data(), 1, text.size(), f);
  const int write_err = written == text.size() ? 0 : errno;
  const bool closed = std::fclose(f) == 0;
  const int close_err = closed ? 0 : errno;
  if (written != text.size() || !closed) {
    const int err = write_err ? write_err : close_err;
    throw Error("cannot write " + quoted(path) + ": " + (err ? std::strerror(err) : "write failed"));
  }
}

void create_report_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create report directory " + quoted(dir) + ": " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error("cannot create report directory " + quoted(dir) + ": not a directory");
  }
}

void write_report(const std::filesystem::path& dir, const Report& r) {
  create_report_dir(dir);
  write_text_file(dir / "bench.json", report_json(r));
  write_text_file(dir / "bench.csv", report_csv(r));
  write_text_file(dir / "bench.md", report_markdown(r));
  write_text_file(dir / "bench.svg", report_svg(r));
}

}  // namespace varps::bench
