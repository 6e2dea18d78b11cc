#pragma once
// SHA-256 of a file (OpenSSL's libcrypto), for manifests that name the
// exact weights a result came from.
#include <filesystem>
#include <string>

namespace varps::io {

// Lower-case hex digest; throws varps::Error naming the file when it cannot
// be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace varps::io
