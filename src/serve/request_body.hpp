#pragma once
// The body of POST /v1/generate: {"class": 207 | "uncond", "seed", "cfg",
// "top_k", "top_p", "temperature", "format": "png" | "tokens", "timeout_ms"};
// unset fields take the defaults of `varps generate`.
#include <string>
#include <variant>

#include "varps/config.hpp"
#include "varps/pipeline.hpp"

namespace varps::serve {

struct GenerateBody {
  ImageRequest request;
  bool tokens = false;  // "format": "tokens"
  int64_t timeout_ms = 0;  // the client's deadline from arrival; 0 without one
};

constexpr int64_t kMaxTimeoutMs = 86'400'000;  // a day

// The body, or the reason it is refused, naming the field
// ("field 'cfg': must be a number >= 0").
std::variant<GenerateBody, std::string> parse_generate_body(const std::string& body, const VarConfig& vc);

}  // namespace varps::serve
