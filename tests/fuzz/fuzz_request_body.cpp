// The body of POST /v1/generate (parse_generate_body,
// src/serve/request_body.cpp): it answers with a request or a reason and
// throws nothing; a request it accepts must be in range.
#include <string>
#include <variant>

#include "fuzz_support.hpp"
#include "serve/request_body.hpp"
#include "varps/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const varps::VarConfig d16 = varps::preset_var_config("d16");
  const std::string body(reinterpret_cast<const char*>(data), size);
  std::variant<varps::serve::GenerateBody, std::string> got;
  try {
    got = varps::serve::parse_generate_body(body, d16);
  } catch (const std::exception& e) {
    varps::fuzz::finding(std::string("parse_generate_body threw ") + typeid(e).name() + ": " + e.what());
  }
  if (const auto* b = std::get_if<varps::serve::GenerateBody>(&got)) {
    const varps::ImageRequest& r = b->request;
    const varps::SamplingParams& s = r.sampling;
    if (r.class_id < 0 || r.class_id > d16.num_classes || !(s.cfg >= 0) || s.top_k < 0 || !(s.top_p >= 0) ||
        !(s.top_p <= 1) || !(s.temperature > 0))
      varps::fuzz::finding("accepted an out-of-range request: " + body);
  } else if (std::get<std::string>(got).empty()) {
    varps::fuzz::finding("refused without a reason: " + body);
  }
  return 0;
}
