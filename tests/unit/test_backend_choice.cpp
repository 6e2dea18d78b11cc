// Choosing a backend: bad names and combinations are refused by message, and
// asking for CUDA where there is none says why (no CUDA in the build, or no
// device) instead of crashing.
#include <gtest/gtest.h>

#include "backend.hpp"
#include "cuda/cuda_available.hpp"
#include "cli_run.hpp"
#include "test_files.hpp"
#include "varps/pipeline.hpp"

namespace varps::test {
namespace {

TEST(BackendChoice, RefusesUnknownDevicesAndPrecisions) {
  EXPECT_CONTAINS(error_of([] { make_backend(BackendOptions{"tpu"}); }), "unknown device 'tpu'");
  EXPECT_CONTAINS(error_of([] { make_backend(BackendOptions{"cpu", 0, "fp8"}); }), "unknown precision 'fp8'");
  EXPECT_CONTAINS(error_of([] { make_backend(BackendOptions{"cpu", 0, "fp16"}); }), "fp32, bf16 or int8");
  EXPECT_EQ(make_backend(BackendOptions{"cpu", 1})->name(), "cpu");
  EXPECT_EQ(make_backend(BackendOptions{"cpu", 1, "bf16"})->matrix_element_bytes(), 2u);
}

TEST(BackendChoice, CudaWithoutCudaSaysWhy) {
  const std::string& reason = testing::cuda_unavailable_reason();
  if (reason.empty()) GTEST_SKIP() << "a CUDA device is present";
  if (cuda_backend_compiled())
    EXPECT_CONTAINS(reason, "no CUDA device");
  else
    EXPECT_CONTAINS(reason, "-DVARPS_CUDA=ON");
  // The pipeline reports the same, before reading any weights.
  PipelineOptions opts;
  opts.device = "cuda";
  EXPECT_CONTAINS(error_of([&] { Pipeline::from_preset("tiny", opts); }), reason);
}

TEST(BackendChoice, CpuReportsNoDeviceMemory) {
  EXPECT_FALSE(make_cpu_backend(1)->device_memory().available);
}

// On the command line: bad names are usage errors (exit 2) naming the flags;
// a missing device is a runtime error (exit 1) saying why.
TEST(BackendChoice, CommandLine) {
  TempDir dir;
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "--device", "gpu"}), 2,
               {"--device/--precision", "unknown device 'gpu'"});
  expect_error(run_cli_tiny(dir, {"bench", "--out", "o", "--precision", "fp8"}), 2, {"unknown precision 'fp8'"});
  expect_error(run_cli_tiny(dir, {"generate", "--class", "1", "--out", "o", "--precision", "fp16"}), 2,
               {"fp32, bf16 or int8", "needs --device cuda"});
  expect_error(run_cli_tiny(dir, {"bench", "--out", "o", "--cuda-graphs", "yes"}), 2,
               {"--cuda-graphs", "expected on or off, got 'yes'"});
  const std::string& reason = testing::cuda_unavailable_reason();
  if (reason.empty()) GTEST_SKIP() << "a CUDA device is present";
  expect_error(run_cli_tiny(dir, {"generate", "--quiet", "--class", "1", "--out", "o", "--device", "cuda"}), 1, {reason});
}

}  // namespace
}  // namespace varps::test
