#pragma once
// What every fuzz target shares: a file holding the input, for the readers
// that take paths, and the rule that a bad input may only end in a
// varps::Error. Anything else leaving a parser (std::bad_alloc, a JSON
// library exception, std::out_of_range) is a finding: it is printed and the
// process aborts, so libFuzzer keeps the input. So is a broken invariant,
// which VARPS_CHECK reports as a varps::Error starting "internal error".
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <typeinfo>

#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps::fuzz {

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what.c_str());
  std::abort();
}

// Runs `parse`; a varps::Error is the expected answer to a bad input.
template <typename F>
void only_varps_errors(F&& parse) {
  try {
    parse();
  } catch (const Error& e) {
    if (std::string_view(e.what()).starts_with("internal error")) finding(e.what());
  } catch (const std::exception& e) {
    finding(std::string("escaped ") + typeid(e).name() + ": " + e.what());
  }
}

// Reads every tensor of an open checkpoint as the model loader would (floats
// as float32, the rest as int64); each may fail on its own.
inline void read_every_tensor(const Checkpoint& c) {
  for (const TensorRecord& rec : c.tensors()) {
    only_varps_errors([&] {
      if (rec.dtype == DType::F32 || rec.dtype == DType::F64 || rec.dtype == DType::F16 || rec.dtype == DType::BF16)
        c.read_f32(rec);
      else
        c.read_i64(rec);
    });
  }
}

// A directory of this process's own (in memory under /dev/shm when there is
// one), made once and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  // A plain array outlives every static destructor, so the exit handler can
  // still read it.
  static char made[4096];
  static const std::filesystem::path dir = [] {
    const std::string base =
        std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path().string();
    std::snprintf(made, sizeof made, "%s/varps-fuzz-XXXXXX", base.c_str());
    if (::mkdtemp(made) == nullptr) finding(std::string("cannot create a scratch directory: ") + std::strerror(errno));
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(made, ec);
    });
    return std::filesystem::path(made);
  }();
  return dir;
}

// `name` in the scratch directory, now holding exactly `size` bytes of `data`.
inline std::filesystem::path input_file(const uint8_t* data, size_t size, const char* name) {
  const std::filesystem::path path = scratch_dir() / name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) finding("cannot write " + path.string() + ": " + std::strerror(errno));
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) finding("cannot write " + path.string() + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return path;
}

}  // namespace varps::fuzz
