// `varps`: command-line front end of the VAR-ParScale inference engine.
// Parses the command line (CLI11), runs one subcommand, and turns every
// failure into a single "varps: error: <message>" line on stderr.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "varps/error.hpp"

namespace {

// One line: newlines and tabs become spaces, runs of spaces collapse.
std::string one_line(const std::string& msg) {
  std::string out;
  for (char c : msg) {
    const char ch = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.empty() ? "unknown error" : out;
}

int report(const std::string& msg, int code) {
  std::fprintf(stderr, "varps: error: %s\n", one_line(msg).c_str());
  std::fflush(stderr);
  return code;
}

// Parses and runs one command; every error propagates to main().
int run(int argc, char** argv) {
  using namespace varps::cli;
  CLI::App app{"varps: class-conditional image generation with VAR (visual autoregressive) models and ParScale parallel streams on the CPU", "varps"};
  app.set_version_flag("--version", std::string("varps ") + kVersion);
  app.require_subcommand(1);
  app.get_formatter()->column_width(34);
  app.footer(
      "Run 'varps <command> --help' for the flags of a command.\n\n"
      "Exit status: 0 on success; 1 when a command fails (unreadable or invalid files, a class outside the "
      "model's range, an image of the wrong size, ...); 2 for a usage error (unknown, missing, malformed or "
      "conflicting flags). Errors are printed as one line, 'varps: error: <message>', on stderr.");

  GenerateArgs gen;
  ReconstructArgs rec;
  InspectArgs ins;
  add_generate(app, gen);
  EditArgs edit;
  add_edit(app, edit);
  SampleArgs sample;
  add_sample(app, sample);
  ServeArgs serve;
  add_serve(app, serve);
  add_reconstruct(app, rec);
  add_inspect(app, ins);
  BenchArgs bench;
  add_bench(app, bench);
  AdapterArgs adapter;
  add_adapter(app, adapter);
  PrecisionErrorArgs precision;
  add_precision_error(app, precision);

  std::string hint = "run 'varps --help' for usage";
  const std::vector<std::string> commands = {"generate", "edit", "sample", "serve", "reconstruct", "inspect", "bench", "adapter",
                                            "precision-error"};
  if (argc >= 2 && argv[1][0] != '-' && std::find(commands.begin(), commands.end(), argv[1]) == commands.end())
    throw UsageError(std::string("unknown command '") + argv[1] + "' (commands: generate, edit, sample, serve, reconstruct, inspect, bench, adapter, precision-error; " +
                     hint + ")");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version: print to stdout, exit 0
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    for (const std::string& name : commands)
      if (app.got_subcommand(name)) hint = "run 'varps " + name + " --help' for usage";
    throw UsageError(std::string(e.what()) + " (" + hint + ")");
  }
  if (app.got_subcommand("generate")) return run_generate(gen);
  if (app.got_subcommand("edit")) return run_edit(edit);
  if (app.got_subcommand("sample")) return run_sample(sample);
  if (app.got_subcommand("serve")) return run_serve(serve);
  if (app.got_subcommand("reconstruct")) return run_reconstruct(rec);
  if (app.got_subcommand("inspect")) return run_inspect(ins);
  if (app.got_subcommand("bench")) return run_bench(bench);
  if (app.got_subcommand("adapter")) return run_adapter(adapter);
  if (app.got_subcommand("precision-error")) return run_precision_error(precision);
  throw UsageError("no command given (" + hint + ")");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const varps::cli::UsageError& e) {
    return report(e.what(), 2);
  } catch (const varps::Error& e) {
    return report(e.what(), 1);
  } catch (const std::bad_alloc&) {
    return report("out of memory", 1);
  } catch (const std::exception& e) {
    return report(e.what(), 1);
  } catch (...) {
    return report("unexpected failure (unknown exception)", 1);
  }
}
