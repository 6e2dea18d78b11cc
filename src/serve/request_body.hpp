#pragma once
// The body of POST /v1/generate: {"class": 207 | "uncond", "seed", "cfg",
// "top_k", "top_p", "temperature", "format": "png" | "tokens"}; unset fields
// take the defaults of `varps generate`.
#include <string>
#include <variant>

#include "varps/config.hpp"
#include "varps/pipeline.hpp"

namespace varps::serve {

struct GenerateBody {
  ImageRequest request;
  bool tokens = false;  // "format": "tokens"
};

// The body, or the reason it is refused, naming the field
// ("field 'cfg': must be a number >= 0").
std::variant<GenerateBody, std::string> parse_generate_body(const std::string& body, const VarConfig& vc);

}  // namespace varps::serve
