// The CPU holds a recorded step to the rules a CUDA graph imposes: from its
// second run on it may not allocate, transfer to or from the host, or
// synchronise. So a model step that breaks them fails in CI, not only as a
// silent fallback to unrecorded launches on a GPU.
#include <gtest/gtest.h>

#include <thread>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "test_files.hpp"
#include "varps/error.hpp"

namespace varps {
namespace {

// The message of the Error the second run of `step` throws ("" if none).
std::string second_run_error(Backend& be, const std::function<void()>& step) {
  std::unique_ptr<StepRecording> slot;
  EXPECT_EQ(be.run_recorded(slot, step), StepRun::AsIs) << "the first run is free";
  EXPECT_NE(slot, nullptr);
  try {
    be.run_recorded(slot, step);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RecordedSteps, TheCpuRefusesWhatARecordingCouldNotHold) {
  const auto be = make_cpu_backend(1);
  Array<float> f = be->alloc(4);
  Array<int32_t> i = be->alloc_i32(4);
  Array<SampleJob> jobs = be->alloc_sample_jobs(1);
  float host_f[4] = {};
  int32_t host_i[4] = {};
  const SampleJob host_job{};
  const std::vector<std::pair<std::string, std::function<void()>>> refused = {
      {"an allocation", [&] { be->alloc(4); }},
      {"an allocation", [&] { be->alloc_i32(4); }},
      {"an allocation", [&] { be->zeros(4); }},
      {"an allocation", [&] { be->upload(Tensor({2}, {1.0f, 2.0f})); }},
      {"an allocation", [&] { be->alloc_kv_cache(4); }},
      {"an allocation", [&] { be->alloc_sample_jobs(1); }},
      {"upload_into_i32", [&] { be->upload_into_i32(host_i, 4, i.data()); }},
      {"upload_sample_jobs", [&] { be->upload_sample_jobs(&host_job, 1, jobs.data()); }},
      {"download", [&] { be->download(f.data(), 4, host_f); }},
      {"download_i32", [&] { be->download_i32(i.data(), 4, host_i); }},
      {"synchronize", [&] { be->synchronize(); }},
  };
  for (const auto& [what, step] : refused) {
    SCOPED_TRACE(what);
    const std::string error = second_run_error(*be, step);
    EXPECT_CONTAINS(error, "a recorded step called " + what);
    // Outside the step the call is allowed again.
    EXPECT_NO_THROW(step());
  }
}

TEST(RecordedSteps, DeviceWorkOnExistingArraysIsAllowed) {
  const auto be = make_cpu_backend(1);
  Array<float> a = be->zeros(8), b = be->zeros(8);
  const auto step = [&] {
    be->copy(a.data(), 8, b.data());
    extents::add_inplace(*be, b.data(), a.data(), 8);
    extents::fill_zero(*be, a.data(), 8);
  };
  EXPECT_EQ(second_run_error(*be, step), "");
}

TEST(RecordedSteps, OnlyTheThreadInTheStepIsHeldToTheRules) {
  // One pipeline may serve requests from several threads: another thread's
  // request allocates while this one is inside a step.
  const auto be = make_cpu_backend(1);
  bool other_allocated = false;
  const auto step = [&] {
    std::thread other([&] {
      try {
        be->alloc(16);
        other_allocated = true;
      } catch (const Error&) {
      }
    });
    other.join();
  };
  EXPECT_EQ(second_run_error(*be, step), "");
  EXPECT_TRUE(other_allocated);
}

}  // namespace
}  // namespace varps
