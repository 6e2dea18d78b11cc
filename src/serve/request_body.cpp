#include "serve/request_body.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

namespace varps::serve {

namespace {

using Json = nlohmann::json;

struct Refusal {
  std::string message;
};

[[noreturn]] void refuse(const std::string& field, const std::string& why) {
  throw Refusal{"field '" + field + "': " + why};
}

double number(const Json& v, const std::string& field, double lo, double hi, const std::string& range) {
  if (!v.is_number()) refuse(field, "must be a number " + range);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) refuse(field, v.dump() + " is out of range: must be " + range);
  return d;
}

}  // namespace

std::variant<GenerateBody, std::string> parse_generate_body(const std::string& body, const VarConfig& vc) {
  Json doc;
  try {
    doc = Json::parse(body);
  } catch (const Json::exception& e) {
    return std::string("malformed JSON: ") + e.what();
  }
  try {
    if (!doc.is_object()) throw Refusal{"the body must be a JSON object"};
    GenerateBody out;
    out.request.sampling = SamplingParams{};
    for (const auto& [key, v] : doc.items()) {
      if (key == "class") {
        if (v.is_string() && v.get<std::string>() == "uncond") {
          out.request.class_id = vc.num_classes;
        } else if (v.is_number_integer()) {
          const int64_t c = v.get<int64_t>();
          if (c < 0 || c > vc.num_classes)
            refuse(key, std::to_string(c) + " is out of range: this model has classes 0.." +
                            std::to_string(vc.num_classes - 1) + ", and \"uncond\" (= " +
                            std::to_string(vc.num_classes) + ")");
          out.request.class_id = static_cast<int>(c);
        } else {
          refuse(key, "must be an integer class id or \"uncond\"");
        }
      } else if (key == "seed") {
        if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0))
          refuse(key, "must be a non-negative 64-bit integer");
        out.request.seed = v.get<uint64_t>();
      } else if (key == "cfg") {
        out.request.sampling.cfg = number(v, key, 0.0, 1e6, ">= 0");
      } else if (key == "top_k") {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 30))
          refuse(key, "must be an integer >= 0 (0 switches the filter off)");
        out.request.sampling.top_k = static_cast<int>(v.get<int64_t>());
      } else if (key == "top_p") {
        out.request.sampling.top_p = number(v, key, 0.0, 1.0, "in [0, 1]");
      } else if (key == "temperature") {
        const double t = number(v, key, 0.0, 1e6, "> 0");
        if (!(t > 0)) refuse(key, "must be > 0");
        out.request.sampling.temperature = t;
      } else if (key == "format") {
        if (!v.is_string() || (v.get<std::string>() != "png" && v.get<std::string>() != "tokens"))
          refuse(key, "must be \"png\" or \"tokens\"");
        out.tokens = v.get<std::string>() == "tokens";
      } else if (key == "timeout_ms") {
        if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxTimeoutMs)
          refuse(key, "must be an integer number of milliseconds in 1.." + std::to_string(kMaxTimeoutMs));
        out.timeout_ms = v.get<int64_t>();
      } else {
        refuse(key, "unknown (known: class, seed, cfg, top_k, top_p, temperature, format, timeout_ms)");
      }
    }
    if (!doc.contains("class")) throw Refusal{"field 'class': required (an integer class id or \"uncond\")"};
    return out;
  } catch (const Refusal& r) {
    return r.message;
  }
}

}  // namespace varps::serve
