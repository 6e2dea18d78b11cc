// `varps sample` run as a separate process on the tiny model: the archive's
// layout (read with libzip here, and by numpy), agreement with the library,
// resumption after kills between and during shards, refusal of a different
// command, and mpirun -np 2 against one process.
#include <gtest/gtest.h>
#include <zip.h>

#include <cstdlib>

#include "io/npz_writer.hpp"
#include "unit/cli_run.hpp"
#include "unit/test_files.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace varps::test {
namespace {

namespace fs = std::filesystem;

const fs::path kTiny = fs::path(VARPS_TEST_DATA) / "golden" / "tiny";

// The entries of a zip archive, by name.
std::map<std::string, std::string> zip_entries(const fs::path& path) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY, &err);
  EXPECT_NE(z, nullptr) << path;
  std::map<std::string, std::string> out;
  if (!z) return out;
  for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0); ++i) {
    zip_stat_t st;
    zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st);
    EXPECT_EQ(st.comp_method, ZIP_CM_STORE) << st.name;
    std::string data(st.size, '\0');
    zip_file_t* f = zip_fopen_index(z, static_cast<zip_uint64_t>(i), 0);
    EXPECT_EQ(zip_fread(f, data.data(), st.size), static_cast<zip_int64_t>(st.size));
    zip_fclose(f);
    out[st.name] = data;
  }
  zip_discard(z);
  return out;
}

// Environment variables for the runs of one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { ::setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

const std::vector<std::string> kJob = {"sample", "--preset", "tiny", "--classes", "2:5", "--per-class", "3", "--shard-size", "2",
                                       "--seed", "40", "--top-k", "20", "--quiet"};

std::vector<std::string> job_args(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = kJob;
  a.insert(a.end(), {"--out", out});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(CliSample, ArchiveHoldsTheLibrarysImagesAndLabelsClassMajor) {
  TempDir dir;
  expect_ok(run_cli(dir, job_args("s", {"--batch", "2", "--png"})));
  const auto entries = zip_entries(dir / "s/samples.npz");
  ASSERT_EQ(entries.size(), 2u);
  const std::string h0 = io::npy_header("|u1", {9, 8, 8, 3}), h1 = io::npy_header("<i8", {9});
  ASSERT_EQ(entries.at("arr_0.npy").substr(0, h0.size()), h0);
  ASSERT_EQ(entries.at("arr_1.npy").substr(0, h1.size()), h1);
  EXPECT_EQ(h0.size() % 64, 0u);
  EXPECT_NE(h0.find("'shape': (9, 8, 8, 3)"), std::string::npos) << h0;
  EXPECT_NE(h1.find("'shape': (9,)"), std::string::npos) << h1;
  const std::string pixels = entries.at("arr_0.npy").substr(h0.size());
  const std::string labels = entries.at("arr_1.npy").substr(h1.size());
  ASSERT_EQ(pixels.size(), 9u * 8 * 8 * 3);
  ASSERT_EQ(labels.size(), 9u * 8);

  const Pipeline pipe = Pipeline::from_preset("tiny");
  std::vector<ImageRequest> reqs;
  for (int i = 0; i < 9; ++i) reqs.push_back({2 + i / 3, 40u + static_cast<uint64_t>(i), SamplingParams{1.5, 20, 0.96}});
  const GeneratedImages g = pipe.generate(reqs);
  for (int i = 0; i < 9; ++i) {
    const RgbImage want = to_rgb8(g.pixels.data() + i * 3 * 64, 8, 8);
    EXPECT_EQ(pixels.substr(static_cast<size_t>(i) * 192, 192),
              std::string(want.pixels.begin(), want.pixels.end()))
        << "image " << i;
    int64_t label = 0;
    std::memcpy(&label, labels.data() + i * 8, 8);
    EXPECT_EQ(label, 2 + i / 3) << "image " << i;
    char name[32];
    std::snprintf(name, sizeof name, "s/png/%06d.png", i);
    EXPECT_EQ(read_png(dir / name).pixels, want.pixels) << name;
    auto text = test::png_text(dir / name);
    EXPECT_EQ(text["varps:seed"], std::to_string(40 + i));
    EXPECT_EQ(text["varps:num_classes"], "10") << "as generate writes it";
    EXPECT_EQ(text["varps:index"], std::to_string(i));
  }
  const nlohmann::json m = read_json(dir / "s/manifest.json");
  EXPECT_EQ(m["images"], 9);
  EXPECT_EQ(m["shards"], 5);
  EXPECT_EQ(m["job"]["cfg"], 1.5);
  EXPECT_EQ(m["job"]["top_p"], 0.96);
  EXPECT_EQ(m["job"]["classes"], nlohmann::json({2, 3, 4}));
  EXPECT_EQ(m["this_run"]["images_generated"], 9);
  EXPECT_GT(m["this_run"]["images_per_s"].get<double>(), 0.0);
}

TEST(CliSample, ManifestNamesTheWeightsBySha256) {
  TempDir dir;
  expect_ok(run_cli(dir, {"sample", "--var", (kTiny / "var.safetensors").string(), "--vae",
                          (kTiny / "vae.safetensors").string(), "--class", "1,uncond", "--per-class", "1", "--out",
                          "s", "--quiet"}));
  const nlohmann::json m = read_json(dir / "s/manifest.json");
  // sha256sum of the files
  EXPECT_EQ(m["job"]["var_sha256"], "a9050550b57b614dbd9814a1fdfc13e494a5e87cc556fd02459a6c4a0a06fca4");
  EXPECT_EQ(m["job"]["vae_sha256"], "cdc06ea948e8e511c3608d2c692563b7c5ed533682c79c448c900a10789ad393");
  EXPECT_EQ(m["job"]["classes"], nlohmann::json({1, 10}));
}

TEST(CliSample, NumpyLoadsTheArchive) {
#ifndef VARPS_TEST_PYTHON
  GTEST_SKIP() << "no python3 found at configure time";
#else
  if (std::system((std::string(VARPS_TEST_PYTHON) + " -c 'import numpy' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << VARPS_TEST_PYTHON << " has no numpy (apt-get install python3-numpy)";
  TempDir dir;
  expect_ok(run_cli(dir, job_args("s")));
  const std::string script =
      "import numpy as np; d = np.load('s/samples.npz'); a, l = d['arr_0'], d['arr_1']; "
      "assert sorted(d.files) == ['arr_0', 'arr_1'], d.files; "
      "assert a.dtype == np.uint8 and a.shape == (9, 8, 8, 3), (a.dtype, a.shape); "
      "assert l.dtype == np.int64 and list(l) == [2, 2, 2, 3, 3, 3, 4, 4, 4], l; "
      "raw = open('s/shards/000000.rgb', 'rb').read(); "
      "assert a[:2].tobytes() == raw, 'shard 0 differs'; print('ok')";
  const std::string cmd = "cd " + test::sh_quote(dir.path().string()) + " && " + VARPS_TEST_PYTHON + " -c " +
                          test::sh_quote(script) + " > py.txt 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_bytes(dir / "py.txt");
  EXPECT_EQ(read_bytes(dir / "py.txt"), "ok\n");
#endif
}

// Killed (SIGKILL) after a whole shard, then in the middle of one, then run
// to the end: the archive is byte for byte the uninterrupted run's.
TEST(CliSample, ResumesAfterKillsBetweenAndDuringShards) {
  TempDir dir;
  expect_ok(run_cli(dir, job_args("whole", {"--batch", "1"})));
  {
    ScopedEnv kill("VARPS_SAMPLE_KILL_AFTER", "2");  // shard 0 complete, then killed
    const test::CliRun r = run_cli(dir, job_args("resumed", {"--batch", "1"}));
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(fs::exists(dir / "resumed/shards/000000.rgb"));
    EXPECT_FALSE(fs::exists(dir / "resumed/shards/000001.rgb"));
    EXPECT_FALSE(fs::exists(dir / "resumed/samples.npz"));
  }
  {
    ScopedEnv kill("VARPS_SAMPLE_KILL_AFTER", "3");  // shard 1 whole, shard 2 half written
    const test::CliRun r = run_cli(dir, job_args("resumed", {"--batch", "1"}));
    EXPECT_NE(r.code, 0);
    EXPECT_TRUE(fs::exists(dir / "resumed/shards/000001.rgb"));
    EXPECT_TRUE(fs::exists(dir / "resumed/shards/000002.rgb.tmp0"));
    EXPECT_FALSE(fs::exists(dir / "resumed/shards/000002.rgb"));
  }
  expect_ok(run_cli(dir, job_args("resumed", {"--batch", "3"})));  // the batch is not part of the job
  EXPECT_EQ(read_bytes(dir / "resumed/samples.npz"), read_bytes(dir / "whole/samples.npz"));
  EXPECT_FALSE(fs::exists(dir / "resumed/shards/000002.rgb.tmp0"));
  EXPECT_EQ(read_json(dir / "resumed/manifest.json")["this_run"]["images_generated"], 5);  // shards 2, 3, 4
}

TEST(CliSample, ADifferentCommandOnTheSameDirectoryIsRefusedByParameter) {
  TempDir dir;
  expect_ok(run_cli(dir, job_args("s")));
  std::vector<std::string> a = job_args("s");
  a[10] = "30";  // --seed
  expect_error(run_cli(dir, a), 1, {"'s'", "--seed was 40, now 30"});
  a = job_args("s");
  a[6] = "4";  // --per-class
  expect_error(run_cli(dir, a), 1, {"--per-class was 3, now 4"});
  expect_error(run_cli(dir, job_args("s", {"--cfg", "2"})), 1, {"--cfg"});
  expect_error(run_cli(dir, job_args("s", {"--png"})), 1, {"--png was false, now true"});
  expect_ok(run_cli(dir, job_args("s", {"--batch", "5"})));  // same job: done already, merged again
}

// A damaged record whose first parameter is a list nested a million levels
// deep: refused with a one-line error, not a stack overflow while it is read.
TEST(CliSample, ADeeplyNestedRecordIsRefusedWithoutRecursing) {
  TempDir dir;
  expect_ok(run_cli(dir, job_args("s")));
  const fs::path record = dir / "s" / "job.json";
  nlohmann::ordered_json doc = nlohmann::ordered_json::parse(std::ifstream(record));
  doc["job"].begin().value() = "NESTED";
  std::string text = doc.dump();
  const size_t at = text.find("\"NESTED\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 8, std::string(1000000, '[') + std::string(1000000, ']'));
  std::ofstream(record, std::ios::trunc) << text;
  expect_error(run_cli(dir, job_args("s")), 1, {"is not a sample job record", "nested more than 16 levels deep"});
}

TEST(CliSample, BadFlagsAndClasses) {
  TempDir dir;
  expect_error(run_cli_tiny(dir, {"sample", "--per-class", "0", "--out", "s", "-q"}), 2, {"--per-class"});
  expect_error(run_cli_tiny(dir, {"sample", "--classes", "5:2", "--out", "s", "-q"}), 2, {"--classes", "empty"});
  expect_error(run_cli_tiny(dir, {"sample", "--classes", "5", "--out", "s", "-q"}), 2, {"--classes", "A:B"});
  expect_error(run_cli_tiny(dir, {"sample", "--shard-size", "-3", "--out", "s", "-q"}), 2, {"--shard-size"});
  expect_error(run_cli_tiny(dir, {"sample", "--batch", "two", "--out", "s", "-q"}), 2, {"--batch"});
  expect_error(run_cli_tiny(dir, {"sample", "--classes", "0:20", "--out", "s", "-q"}), 1, {"class 10"});
  expect_error(run_cli_tiny(dir, {"sample", "--class", "3", "--classes", "0:2", "--out", "s", "-q"}), 2, {"--class"});
}

TEST(CliSample, MpirunWithTwoRanksEqualsOneProcess) {
#ifndef VARPS_TEST_MPIEXEC
  GTEST_SKIP() << "varps was built without MPI (install libopenmpi-dev and openmpi-bin)";
#else
  TempDir dir;
  expect_ok(run_cli(dir, job_args("one")));
  std::string cmd = "cd " + test::sh_quote(dir.path().string()) + " && OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 " +
                    VARPS_TEST_MPIEXEC + " --oversubscribe --allow-run-as-root -np 2 " + test::sh_quote(VARPS_CLI_PATH);
  for (const std::string& a : job_args("two")) cmd += " " + test::sh_quote(a);
  cmd += " > mpi.txt 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_bytes(dir / "mpi.txt");
  EXPECT_EQ(read_bytes(dir / "two/samples.npz"), read_bytes(dir / "one/samples.npz"));
  EXPECT_EQ(read_json(dir / "two/manifest.json")["ranks"], 2);
#endif
}

}  // namespace
}  // namespace varps::test
