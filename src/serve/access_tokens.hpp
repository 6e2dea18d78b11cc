#pragma once
// Who may use `varps serve`: the bearer tokens of --token-file, and which
// listening addresses are safe without them.
#include <filesystem>
#include <string>
#include <vector>

namespace varps::serve {

// What an Authorization header earns a request.
enum class Access {
  Granted,
  Missing,  // no credentials: 401, with WWW-Authenticate
  Refused,  // credentials that are not a token of the file: 403
};

class AccessTokens {
 public:
  // One token a line; surrounding spaces and tabs, empty lines and lines
  // starting with '#' are skipped. Throws varps::Error naming the file when
  // it cannot be read, holds no token, or holds a token with a character
  // outside printable ASCII (a header could not carry it).
  static AccessTokens load(const std::filesystem::path& file);
  explicit AccessTokens(std::vector<std::string> tokens);

  // `authorization`: the header's value ("" when absent). Granted for
  // "Bearer <token>" with a token of the file; every token is compared, each
  // in time that depends on neither its bytes nor where they differ.
  Access check(const std::string& authorization) const;
  size_t size() const { return tokens_.size(); }

 private:
  std::vector<std::string> tokens_;
};

// Whether `host` names only this machine (127.0.0.0/8, ::1, localhost): the
// addresses `varps serve` listens on without tokens unless told otherwise.
bool is_loopback_host(const std::string& host);

}  // namespace varps::serve
