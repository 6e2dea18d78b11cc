// The CUDA backend's guidance and sampling kernels (sampling_kernels.cuh)
// run on the CPU through kernel_emulator.hpp, launched as cuda_sampling.cu
// launches them, and are compared with the CPU backend: guidance bit for
// bit, sampling token for token and clobbered row for clobbered row, over
// temperature, top-k (ties at the k-th value kept), top-p, their mixes,
// masked and all-masked rows, in one launch of images with different jobs.
// CUB's block reduction and scan are the emulator's (thread-order sums).
// The test's rows hold no near-tie, which block sums could resolve either
// way: a row whose decisions lie within rounding of a flip is redrawn.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
// First: the device built-ins of the kernel header below.
#include "cuda/kernel_emulator.hpp"
//
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/normalised_error.hpp"
#include "cuda/sampling_kernels.cuh"
#include "ops/philox.hpp"
#endif

namespace varps::testing {
namespace {

#ifdef VARPS_HAVE_CUDA

using emulator::launch;
namespace sk = cuda::sampling;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// CudaBackend::guidance's launches: chunks of kGuidanceRows rows.
void emulated_guidance(const float* logits, int64_t B, int64_t lV, const SampleJob* jobs, double ratio,
                       const std::vector<int64_t>& uncond_row, float* out) {
  for (int64_t b0 = 0; b0 < B; b0 += sk::kGuidanceRows) {
    const int n = static_cast<int>(std::min<int64_t>(sk::kGuidanceRows, B - b0));
    sk::GuidanceRows rows{};
    for (int r = 0; r < n; ++r) rows.uncond[r] = uncond_row[b0 + r];
    launch(sk::guidance_kernel, dim3(sk::guidance_blocks_x(lV), static_cast<unsigned>(n)), dim3(sk::kGuidanceThreads),
           0, logits, lV, b0, rows, jobs, ratio, out);
  }
}

SampleJob job(uint64_t seed, double cfg, int top_k, double top_p, double temperature) {
  SampleJob j;
  j.seed = seed;
  j.params.cfg = cfg;
  j.params.top_k = top_k;
  j.params.top_p = top_p;
  j.params.temperature = temperature;
  return j;
}

// Rows of two blocks of the grid-stride loop, and more images than one
// launch takes, each with its own cfg; one image unguided.
TEST(EmulatedSamplingKernels, Guidance) {
  auto cpu = make_cpu_backend(1);
  struct Case {
    int64_t B, lV;
  };
  for (const Case c : {Case{3, 1100}, Case{70, 5}}) {
    SCOPED_TRACE("B = " + std::to_string(c.B) + ", lV = " + std::to_string(c.lV));
    const std::vector<float> logits = random_vector(2 * c.B * c.lV, 141, 5.0f);
    std::vector<SampleJob> jobs;
    std::vector<int64_t> uncond(c.B);
    for (int64_t b = 0; b < c.B; ++b) {
      jobs.push_back(job(1, 0.5 + 0.37 * static_cast<double>(b), 0, 0.0, 1.0));
      uncond[b] = b == 1 ? -1 : c.B + b;
    }
    const double ratio = 0.3;
    std::vector<float> ref(c.B * c.lV), got(ref.size(), NAN);
    extents::guidance(*cpu, logits.data(), c.B, c.lV, jobs.data(), ratio, uncond, ref.data());
    emulated_guidance(logits.data(), c.B, c.lV, jobs.data(), ratio, uncond, got.data());
    EXPECT_EQ(got, ref) << "the CPU's float32 operations in its order";
  }
}

// CudaBackend::sample's launches: chunks of kSampleJobs images.
void emulated_sample(float* logits, int64_t B, int64_t l, int64_t V, const SampleJob* jobs, bool filters,
                     int scale_index, int32_t* idx) {
  const sk::SampleSort sort = sk::sample_sort(V, filters);
  for (int64_t b0 = 0; b0 < B; b0 += sk::kSampleJobs) {
    const int64_t n = std::min<int64_t>(sk::kSampleJobs, B - b0);
    launch(sk::sample_kernel, dim3(sk::sample_blocks(n, l)), dim3(sk::kSampleThreads), sort.shared_bytes(), logits, b0,
           l, V, sort.keys, scale_index, jobs, idx);
  }
}

// How far the CPU sampler's decisions on one row (sample_token, its steps
// redone here) lie from where they would flip: the top-p cut's cumulative
// sums from 1 − top_p, and the draw's target from the cumulative
// probabilities either side of it, as fractions of the total.
struct Margins {
  double top_p = 1.0, draw = 1.0;
  // The kernel's block sums associate differently from the CPU's loops.
  // Summing V terms of total at most 1, the two float32 cumulative sums
  // (and the normalising sum before them) each lie within V·2^-24 of the
  // exact one, the double ones within V·2^-53 of the total.
  bool clear_of_rounding(int64_t V) const {
    return top_p > 2.0 * static_cast<double>(V) * 0x1.0p-24 && draw > 2.0 * static_cast<double>(V) * 0x1.0p-53;
  }
};

Margins decision_margins(std::vector<float> x, const SamplingParams& sp, double u) {
  Margins m;
  const int64_t V = static_cast<int64_t>(x.size());
  if (sp.temperature != 1.0)
    for (float& v : x) v *= static_cast<float>(1.0 / sp.temperature);
  if (sp.top_k > 0 && sp.top_k < V) {
    std::vector<float> sorted = x;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    for (float& v : x)
      if (v < sorted[sp.top_k - 1]) v = kNegInf;
  }
  if (sp.top_p > 0.0) {
    std::vector<int64_t> order;
    for (int64_t i = 0; i < V; ++i)
      if (x[i] != kNegInf) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x[a] < x[b]; });
    if (!order.empty()) {
      const float mx = x[order.back()];
      float sum = 0.0f;
      for (const int64_t i : order) sum += std::exp(x[i] - mx);
      const float limit = static_cast<float>(1.0 - sp.top_p);
      float cum = 0.0f;
      for (size_t j = 0; j + 1 < order.size(); ++j) {
        cum += std::exp(x[order[j]] - mx) / sum;
        m.top_p = std::min(m.top_p, std::fabs(static_cast<double>(cum) - limit));
        if (cum <= limit) x[order[j]] = kNegInf;
      }
    }
  }
  const float mx = *std::max_element(x.begin(), x.end());
  if (mx == kNegInf) return m;
  double total = 0.0;
  for (const float v : x) total += v == kNegInf ? 0.0 : std::exp(static_cast<double>(v) - mx);
  const double target = u * total;
  double cum = 0.0;
  for (const float v : x) {
    if (v == kNegInf) continue;
    const double before = cum;
    cum += std::exp(static_cast<double>(v) - mx);
    if (cum > target) {
      m.draw = std::min(target - before, cum - target) / total;
      break;
    }
  }
  return m;
}

struct SampleCase {
  const char* what;
  int64_t V, l;
  std::vector<SampleJob> jobs;  // one per image
  bool coarse = false;          // logits on a grid of 1/4, so that many are equal
};

constexpr int kScale = 3;

// Logits of spread 3 with every 29th entry masked, and row 2 of image 0
// masked throughout. A row whose CPU decisions lie within rounding of a
// flip is drawn again (the next seed): a token either backend could
// rightly draw tells nothing.
std::vector<float> sample_logits(const SampleCase& c) {
  std::vector<float> x;
  for (size_t b = 0; b < c.jobs.size(); ++b)
    for (int64_t i = 0; i < c.l; ++i) {
      if (b == 0 && i == 2) {
        x.insert(x.end(), c.V, kNegInf);
        continue;
      }
      for (uint32_t seed = 1000 * static_cast<uint32_t>(b * c.l + i);; ++seed) {
        std::vector<float> row = random_vector(c.V, seed, 3.0f);
        if (c.coarse)
          for (float& v : row) v = std::round(v * 4.0f) / 4.0f;
        for (size_t k = 0; k < row.size(); k += 29) row[k] = kNegInf;
        if (decision_margins(row, c.jobs[b].params, token_uniform(c.jobs[b].seed, kScale, i)).clear_of_rounding(c.V)) {
          x.insert(x.end(), row.begin(), row.end());
          break;
        }
      }
    }
  return x;
}

void check_sample(const SampleCase& c) {
  SCOPED_TRACE(c.what);
  auto cpu = make_cpu_backend(1);
  const int64_t B = static_cast<int64_t>(c.jobs.size());
  const std::vector<float> logits = sample_logits(c);
  const bool filters = sample_filters(c.jobs.data(), B, c.V);
  std::vector<float> ref = logits, got = logits;
  std::vector<int32_t> ref_idx(B * c.l, -1), got_idx(ref_idx.size(), -1);
  extents::sample(*cpu, ref.data(), B, c.l, c.V, c.jobs.data(), filters, kScale, ref_idx.data());
  emulated_sample(got.data(), B, c.l, c.V, c.jobs.data(), filters, kScale, got_idx.data());
  EXPECT_EQ(got_idx, ref_idx) << "tokens";
  EXPECT_EQ(compare(got, ref).mismatched_nonfinite, 0) << "the same entries filtered out";
  EXPECT_EQ(compare(got, ref).error, 0.0) << "the temperature applied as the CPU rounds it";
}

TEST(EmulatedSamplingKernels, UnfilteredDraws) {
  check_sample({"plain and with a temperature, no sort", 700, 3,
                {job(11, 0, 0, 0.0, 1.0), job(12, 0, 0, 0.0, 0.7), job(13, 0, 700, 0.0, 1.6)}});
}

TEST(EmulatedSamplingKernels, TopK) {
  check_sample({"top-k over four scan tiles", 1000, 2,
                {job(21, 0, 50, 0.0, 1.0), job(22, 0, 1, 0.0, 1.0), job(23, 0, 999, 0.0, 1.3)}});
  check_sample({"top-k with ties at the k-th value", 300, 3,
                {job(24, 0, 20, 0.0, 1.0), job(25, 0, 77, 0.0, 1.0)}, true});
}

TEST(EmulatedSamplingKernels, TopP) {
  check_sample({"top-p", 700, 3, {job(31, 0, 0, 0.9, 1.0), job(32, 0, 0, 0.5, 1.0), job(33, 0, 0, 0.99, 0.8)}});
  check_sample({"top-p over equal logits, in index order", 300, 2, {job(34, 0, 0, 0.8, 1.0)}, true});
}

// Different jobs in one launch, one of them unfiltered, V below one tile of
// the block, and more images than one launch holds.
TEST(EmulatedSamplingKernels, MixedJobs) {
  check_sample({"top-k, top-p and temperature together", 700, 3,
                {job(41, 0, 100, 0.95, 1.3), job(42, 0, 0, 0.0, 1.0), job(43, 0, 900, 0.6, 1.0),
                 job(44, 0, 5, 0.99, 0.5)}});
  check_sample({"a vocabulary smaller than the block", 37, 3, {job(45, 0, 10, 0.9, 1.0), job(46, 0, 0, 0.7, 1.1)}});
  std::vector<SampleJob> many;
  for (int b = 0; b < 66; ++b) many.push_back(job(50 + b, 0, b % 3 == 0 ? 0 : 4, b % 2 ? 0.8 : 0.0, 1.0));
  check_sample({"66 images: two launches", 20, 1, many});
}

#else
TEST(EmulatedSamplingKernels, NeedsTheCudaBackend) {
  GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)";
}
#endif

}  // namespace
}  // namespace varps::testing
