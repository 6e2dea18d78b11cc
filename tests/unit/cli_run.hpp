#pragma once
// Running the `varps` program as a separate process in tests, and checking
// its one-line errors and outputs.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "unit/test_files.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::test {

using Json = nlohmann::json;

struct CliRun {
  int code = -1;
  std::string out, err;
};

inline std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `varps args...` in `cwd`, capturing stdout and stderr to files.
inline CliRun run_cli(const TempDir& cwd, const std::vector<std::string>& args) {
  // Passive OpenMP waiting: on a busy machine, spinning worker threads can
  // make each tiny run take a time slice per barrier (about a second).
  std::string cmd = "cd " + sh_quote(cwd.path().string()) + " && OMP_WAIT_POLICY=PASSIVE " + sh_quote(VARPS_CLI_PATH);
  for (const std::string& a : args) {
    cmd += ' ';
    cmd += sh_quote(a);
  }
  cmd += " >cli_stdout.txt 2>cli_stderr.txt </dev/null";
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1000;
  r.out = read_bytes(cwd / "cli_stdout.txt");
  r.err = read_bytes(cwd / "cli_stderr.txt");
  fs::remove(cwd / "cli_stdout.txt");
  fs::remove(cwd / "cli_stderr.txt");
  return r;
}

// A model command (`args[0]`) on the random smoke-test model: "--preset tiny"
// after the subcommand. Most CLI tests compare the program with
// Pipeline::from_preset("tiny"); the default, the built-in trained model,
// has tests of its own.
inline CliRun run_cli_tiny(const TempDir& cwd, std::vector<std::string> args) {
  args.insert(args.begin() + (args.empty() ? 0 : 1), {"--preset", "tiny"});
  return run_cli(cwd, args);
}

inline std::string describe(const CliRun& r) {
  return "exit " + std::to_string(r.code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

// A failed run: the given status, and stderr is exactly one line
// "varps: error: ..." holding every needle.
inline void expect_error(const CliRun& r, int code, const std::vector<std::string>& needles) {
  EXPECT_EQ(r.code, code) << describe(r);
  EXPECT_EQ(r.err.rfind("varps: error: ", 0), 0u) << describe(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "not one line: " << describe(r);
  EXPECT_FALSE(r.err.empty() || r.err.back() != '\n') << describe(r);
  for (const std::string& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << "'" << n << "' missing: " << describe(r);
}

inline void expect_ok(const CliRun& r) { ASSERT_EQ(r.code, 0) << describe(r); }

inline std::map<std::string, std::string> png_text(const fs::path& p) {
  std::map<std::string, std::string> m;
  for (auto& [k, v] : read_png_text(p)) m[k] = v;
  return m;
}

inline Json read_json(const fs::path& p) {
  std::ifstream in(p);
  return Json::parse(in);
}

// The "tokens" arrays of a --tokens-out file, per image.
inline std::vector<TokenMaps> json_tokens(const Json& doc) {
  std::vector<TokenMaps> out;
  for (const Json& img : doc.at("images")) out.push_back(img.at("tokens").get<TokenMaps>());
  return out;
}

}  // namespace varps::test
