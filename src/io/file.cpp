#include "io/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "varps/error.hpp"

namespace varps::io {

std::string quoted(const std::filesystem::path& path) {
  // Built by appending: `"'" + std::string&&` trips a GCC 12 -Wrestrict false positive.
  std::string s = "'";
  s += path.native();
  s += '\'';
  return s;
}

File File::open_read(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
  // refused below as not a regular file. Regular files ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    throw Error("cannot open " + quoted(path) + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error("cannot stat " + quoted(path) + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("cannot read " + quoted(path) + ": " +
                (S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a regular file"));
  }
  return File(path, fd, static_cast<uint64_t>(st.st_size));
}

File::File(File&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

void File::read_exact(uint64_t offset, void* dst, size_t n, const char* what) const {
  auto* out = static_cast<unsigned char*>(dst);
  uint64_t end = 0;
  if (__builtin_add_overflow(offset, static_cast<uint64_t>(n), &end) || end > size_) {
    throw Error("cannot read " + std::string(what) + " from " + quoted(path_) + ": bytes [" + std::to_string(offset) +
                ", " + std::to_string(offset) + "+" + std::to_string(n) + ") lie past the end of the file (" +
                std::to_string(size_) + " bytes)");
  }
  while (n > 0) {
    // pread may return fewer bytes than asked (and Linux caps one call near
    // 2 GiB), so loop; EINTR is retried.
    size_t chunk = n < (size_t{1} << 30) ? n : (size_t{1} << 30);
    ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      throw Error("cannot read " + std::string(what) + " from " + quoted(path_) + ": " + std::strerror(err));
    }
    if (got == 0) {
      throw Error("cannot read " + std::string(what) + " from " + quoted(path_) +
                  ": unexpected end of file (was it truncated while open?)");
    }
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
}

}  // namespace varps::io
