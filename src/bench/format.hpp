#pragma once
// Number and text formatting shared by the report writers (private to
// src/bench).
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "varps/bench.hpp"

namespace varps::bench::fmt {

std::string shortest(double v);             // round-trip exact, e.g. "0.1", "12.5", "nan"
std::string fixed(double v, int decimals);  // printf("%.*f")
std::string ms(double v);                   // fixed with decimals that suit the magnitude
std::string mib(uint64_t bytes);            // bytes in MiB, fixed decimals
std::string percent(double fraction);       // 0.05 -> "5%"
std::string join(const std::vector<int64_t>& v, const std::string& sep);
// "1 ×10" when all entries are equal (and more than one), else "1,2,3"; "—" when empty.
std::string compact(const std::vector<int64_t>& v);
std::string run_label(const RunResult& r);  // "batched P=4"

std::string xml_escape(const std::string& s);
std::string csv_field(const std::string& s);  // quoted when it holds , " CR or LF
std::string csv_line(const std::vector<std::string>& fields);  // csv_field of each, comma-separated, "\n"
std::string md_cell(const std::string& s);    // | and line breaks escaped
std::string md_row(const std::vector<std::string>& cells);  // "| a | b |\n"
// "## title", then "- key: value" lines (or "(none recorded)"), then a blank line.
std::string md_key_values(const std::string& title, const std::map<std::string, std::string>& m);

}  // namespace varps::bench::fmt

namespace varps::bench {
// Throws varps::Error naming the path when it cannot be written completely.
void write_text_file(const std::filesystem::path& path, const std::string& text);
// Creates dir (and parents); throws varps::Error when it is not a directory.
void create_report_dir(const std::filesystem::path& dir);
}  // namespace varps::bench
