#include "bench/format.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace varps::bench::fmt {

std::string shortest(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string ms(double v) {
  const double a = std::fabs(v);
  return fixed(v, a >= 100 ? 1 : a >= 10 ? 2 : 3);
}

std::string mib(uint64_t bytes) {
  const double m = static_cast<double>(bytes) / (1024.0 * 1024.0);
  return fixed(m, m >= 100 ? 0 : m >= 10 ? 1 : 2);
}

std::string percent(double fraction) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g%%", fraction * 100);
  return buf;
}

std::string join(const std::vector<int64_t>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += sep;
    s += std::to_string(v[i]);
  }
  return s;
}

std::string compact(const std::vector<int64_t>& v) {
  if (v.empty()) return "—";
  bool uniform = true;
  for (int64_t x : v) uniform = uniform && x == v[0];
  if (uniform && v.size() > 1) return std::to_string(v[0]) + " ×" + std::to_string(v.size());
  return join(v, ",");
}

std::string run_label(const RunResult& r) { return r.schedule + " P=" + std::to_string(r.streams); }

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and line breaks are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += csv_field(fields[i]);
  }
  return out + '\n';
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string md_row(const std::vector<std::string>& cells) {
  std::string s = "|";
  for (const std::string& c : cells) s += " " + c + " |";
  return s + "\n";
}

std::string md_key_values(const std::string& title, const std::map<std::string, std::string>& m) {
  std::string out = "## " + title + "\n\n";
  if (m.empty()) out += "(none recorded)\n";
  for (const auto& [k, v] : m) out += "- " + md_cell(k) + ": " + md_cell(v) + "\n";
  return out + "\n";
}

}  // namespace varps::bench::fmt
