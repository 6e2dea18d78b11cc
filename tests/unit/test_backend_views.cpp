// The typed entry of the backend ops: views that disagree are refused with
// the op and the view named, before the implementation runs.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend.hpp"
#include "unit/test_files.hpp"

namespace varps::testing {
using test::error_of;
namespace {

class BackendViews : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  Array<float> a = be->zeros(4096), b = be->zeros(4096), c = be->zeros(4096);
};

TEST_F(BackendViews, AgreeingViewsRun) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6}, w = {1, 0, 0, 1, 1, 1};  // x [2, 3], w [2, 3]
  const Array<float> xs = be->upload(Tensor({2, 3}, x));
  const Array<MatrixElement> ws = be->upload_matrix(Tensor({2, 3}, w));
  be->linear(xs.as({2, 3}), ws.as({2, 3}), {}, c.as({2, 2}));
  std::vector<float> y(4);
  be->download(c.data(), y.size(), y.data());
  EXPECT_EQ(y, (std::vector<float>{1, 1 + 2 + 3, 4, 4 + 5 + 6}));  // y = x·wᵀ
}

TEST_F(BackendViews, ASwappedDimensionIsRefusedNamingTheOpAndTheView) {
  // x [M=2, K=3] against w [N=3, K=2]: the K of x is w's N.
  EXPECT_CONTAINS(error_of([&] { be->linear(a.as({2, 3}), as_matrix(b.as({3, 2})), {}, c.as({2, 3})); }),
                  "linear: x is [2, 3], expected [2, 2]");
  EXPECT_CONTAINS(error_of([&] { be->linear(a.as({2, 2}), as_matrix(b.as({3, 2})), b.as({2}), c.as({2, 3})); }),
                  "linear: b is [2], expected [3]");
  EXPECT_CONTAINS(error_of([&] {
                    be->conv2d(a.as({1, 4, 5, 5}), as_matrix(b.as({8, 3, 3, 3})), {}, Backend::ConvGeometry::same(3),
                               c.as({1, 8, 5, 5}));
                  }),
                  "conv2d: w is [8, 3, 3, 3], expected [8, 4, 3, 3]");
  EXPECT_CONTAINS(error_of([&] { be->chw_to_tokens(a.as({2, 3, 4}), c.as({2, 3, 4})); }),
                  "chw_to_tokens: out is [2, 3, 4], expected [2, 4, 3]");
}

TEST_F(BackendViews, HostMemoryWhereTheBackendsIsExpectedIsRefused) {
  std::vector<float> host(6);
  EXPECT_CONTAINS(error_of([&] { be->silu(host_view(host.data(), {6}), c.as({6})); }), "silu: x is host memory");
  // And the other way: the unconditional rows travel with the launch.
  const Array<SampleJob> jobs = be->alloc_sample_jobs(1);
  const std::vector<int64_t> uncond = {1};
  EXPECT_NO_THROW(be->guidance(a.as({2, 8}), jobs.as({1}), 0.5, host_view(uncond.data(), {1}), c.as({1, 8})));
  const View<const int64_t> on_backend = view(uncond.data(), {1});
  EXPECT_CONTAINS(error_of([&] { be->guidance(a.as({2, 8}), jobs.as({1}), 0.5, on_backend, c.as({1, 8})); }),
                  "guidance: uncond_row must be host memory");
  const std::vector<int64_t> beyond = {2};
  EXPECT_CONTAINS(
      error_of([&] { be->guidance(a.as({2, 8}), jobs.as({1}), 0.5, host_view(beyond.data(), {1}), c.as({1, 8})); }),
      "beyond the logits' rows");
}

TEST_F(BackendViews, StridesAndCapacitiesAreChecked) {
  // A strided view where the op needs contiguous rows.
  EXPECT_CONTAINS(error_of([&] { be->softmax_rows(view(a.data(), {4, 8}, 16)); }), "softmax_rows: x must be contiguous");
  // Modulation slices may be strided, but scale and shift must share a stride.
  const Backend::Modulation m{view(b.data(), {2, 4}, 24), view(b.data() + 4, {2, 4}, 16), 1e-6f};
  EXPECT_CONTAINS(error_of([&] { be->adaln_modulate(a.as({2, 3, 4}), m, c.as({2, 3, 4})); }),
                  "scale and shift must be slices of one modulation");
  // New keys beyond the cache's capacity.
  const Array<KvElement> k = be->alloc_kv_cache(2 * 4 * 8), v = be->alloc_kv_cache(2 * 4 * 8);
  const std::vector<float> scales(2, 1.0f);
  EXPECT_CONTAINS(error_of([&] {
                    be->split_qkv_to_cache(a.as({1, 3, 3 * 2 * 8}), {2, true, host_view(scales.data(), {2})},
                                           b.as({1, 2, 3, 8}), k.as({1, 2, 4, 8}), v.as({1, 2, 4, 8}));
                  }),
                  "split_qkv_to_cache: positions 2..5 beyond the capacity 4");
  // A view larger than its array.
  EXPECT_CONTAINS(error_of([&] { (void)a.as({4097}); }), "a view of [4097] on an array of 4096 elements");
}

}  // namespace
}  // namespace varps::testing
