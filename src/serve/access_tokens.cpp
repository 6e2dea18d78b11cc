#include "serve/access_tokens.hpp"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include "varps/error.hpp"

namespace varps::serve {

namespace {

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

// a == b, in time that depends on the lengths only: every byte of the
// longer is visited whatever the others hold.
bool same_bytes(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

AccessTokens::AccessTokens(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

AccessTokens AccessTokens::load(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("--token-file " + file.string() + ": cannot read it");
  std::vector<std::string> tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string t = trimmed(line);
    if (t.empty() || t[0] == '#') continue;
    for (const char c : t)
      if (c < 0x21 || c > 0x7e)
        throw Error("--token-file " + file.string() + ": line " + std::to_string(number) +
                    ": a token is printable ASCII without spaces");
    tokens.push_back(t);
  }
  if (in.bad()) throw Error("--token-file " + file.string() + ": cannot read it");
  if (tokens.empty()) throw Error("--token-file " + file.string() + ": holds no token (one a line)");
  return AccessTokens(std::move(tokens));
}

Access AccessTokens::check(const std::string& authorization) const {
  const std::string value = trimmed(authorization);
  if (value.empty()) return Access::Missing;
  constexpr char kScheme[] = "Bearer ";
  if (value.size() <= sizeof kScheme - 1 || value.compare(0, sizeof kScheme - 1, kScheme) != 0) return Access::Refused;
  const std::string presented = trimmed(value.substr(sizeof kScheme - 1));
  bool granted = false;
  for (const std::string& t : tokens_) granted |= same_bytes(presented, t);
  return granted ? Access::Granted : Access::Refused;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace varps::serve
