// Every CUDA op against the CPU reference op on awkward shapes (odd sizes,
// one token, 257 tokens, head dims other than 64, prefixes, strides).
// Outputs are poisoned with NaN before each op so an element the op never
// writes fails; non-finite values are checked apart from the error, which is
// ‖gpu − cpu‖ / ‖cpu‖ against a bound from the operand precision and the
// reduction length. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/cuda_available.hpp"
#include "cuda/normalised_error.hpp"

namespace varps::testing {
namespace {

class CudaConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    VARPS_SKIP_WITHOUT_CUDA();
    cpu_ = make_cpu_backend(2);
    gpu_ = make_backend(BackendOptions{"cuda"});
  }

  // The same host data on both backends.
  struct Both {
    Array<float> cpu, gpu;
    size_t n = 0;
  };
  Both both(const std::vector<float>& host) {
    Tensor t({static_cast<int64_t>(host.size())}, host);
    return {cpu_->upload(t), gpu_->upload(t), host.size()};
  }
  // An output: the CPU side zeroed, the GPU side NaN so unwritten entries show.
  Both output(size_t n) { return {cpu_->zeros(n), gpu_->upload(Tensor({static_cast<int64_t>(n)}, std::vector<float>(n, NAN))), n}; }
  Both copy_of(const Both& b) { return both(host(*cpu_, b)); }

  std::vector<float> host(Backend& be, const Both& b) {
    std::vector<float> v(b.n);
    be.download(be.name() == "cpu" ? b.cpu.data() : b.gpu.data(), b.n, v.data());
    return v;
  }
  // Sampling parameters in each backend's memory.
  struct BothJobs {
    Array<SampleJob> cpu, gpu;
  };
  BothJobs jobs(const std::vector<SampleJob>& host) {
    BothJobs j{cpu_->alloc_sample_jobs(host.size()), gpu_->alloc_sample_jobs(host.size())};
    cpu_->upload_sample_jobs(host.data(), host.size(), j.cpu.data());
    gpu_->upload_sample_jobs(host.data(), host.size(), j.gpu.data());
    return j;
  }
  std::vector<float> cpu_result(const Both& b) { return host(*cpu_, b); }
  std::vector<float> gpu_result(const Both& b) { return host(*gpu_, b); }

  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_F(CudaConformance, LinearFloat32) {
  struct Shape {
    int64_t M, K, N;
    bool bias;
  };
  for (const Shape s : {Shape{1, 1, 1, false}, Shape{1, 64, 3, true}, Shape{7, 33, 65, true}, Shape{257, 128, 96, false},
                        Shape{13, 1024, 3072, true}}) {
    SCOPED_TRACE(std::to_string(s.M) + "x" + std::to_string(s.K) + "x" + std::to_string(s.N));
    Both x = both(random_vector(s.M * s.K, 1)), w = both(random_vector(s.N * s.K, 2, 0.05f)),
         b = both(random_vector(s.N, 3));
    Both y = output(s.M * s.N);
    extents::linear(*cpu_, x.cpu.data(), s.M, s.K, w.cpu.data(), s.bias ? b.cpu.data() : nullptr, s.N, y.cpu.data());
    extents::linear(*gpu_, x.gpu.data(), s.M, s.K, w.gpu.data(), s.bias ? b.gpu.data() : nullptr, s.N, y.gpu.data());
    EXPECT_CLOSE(gpu_result(y), cpu_result(y), fp32_tol(s.K));
  }
}

TEST_F(CudaConformance, LinearHalfPrecisionOperands) {
  for (const auto& [precision, tol] : {std::pair<std::string, double>{"bf16", kBf16Tol}, {"fp16", kFp16Tol}}) {
    SCOPED_TRACE(precision);
    auto half = make_backend(BackendOptions{"cuda", 0, precision});
    const int64_t M = 37, K = 320, N = 129;
    const auto xh = random_vector(M * K, 4), wh = random_vector(N * K, 5, 0.05f), bh = random_vector(N, 6);
    Both x = both(xh), w = both(wh), b = both(bh), y = output(M * N);
    extents::linear(*cpu_, x.cpu.data(), M, K, w.cpu.data(), b.cpu.data(), N, y.cpu.data());
    auto hx = half->upload(Tensor({M * K}, xh)), hw = half->upload(Tensor({N * K}, wh)),
         hb = half->upload(Tensor({N}, bh)), hy = half->alloc(M * N);
    extents::linear(*half, hx.data(), M, K, hw.data(), hb.data(), N, hy.data());
    // Twice: the second product reuses the weight's half-precision copy.
    extents::linear(*half, hx.data(), M, K, hw.data(), hb.data(), N, hy.data());
    std::vector<float> got(M * N);
    half->download(hy.data(), got.size(), got.data());
    const Compared c = compare(got, cpu_result(y));
    EXPECT_EQ(c.mismatched_nonfinite, 0);
    EXPECT_LE(c.error, tol);
    // And it is not secretly float32: rounding the operands must show.
    EXPECT_GT(c.error, fp32_tol(K));
  }
}

TEST_F(CudaConformance, HalfPrecisionWeightsAreStoredOnce) {
  for (const std::string precision : {"bf16", "fp16"}) {
    SCOPED_TRACE(precision);
    auto half = make_backend(BackendOptions{"cuda", 0, precision});
    ASSERT_EQ(half->matrix_element_bytes(), 2u);
    const int64_t M = 9, K = 384, N = 256;  // N·K·2 bytes is a whole number of 256-byte granules
    const auto xh = random_vector(M * K, 7), wh = random_vector(N * K, 8, 0.05f);
    auto hx = half->upload(Tensor({M * K}, xh)), hy = half->alloc(M * N), hz = half->alloc(M * N);
    {  // sizes the backend's scratch, which stays
      auto warm = half->upload(Tensor({N, K}, wh));
      extents::linear(*half, hx.data(), M, K, warm.data(), nullptr, N, hy.data());
    }
    half->synchronize();
    const uint64_t before = half->device_memory().in_use;
    {
      Array<MatrixElement> matrix = half->upload_matrix(Tensor({N, K}, wh));
      half->synchronize();
      // The staging copy is gone; only the half-precision weight stays.
      EXPECT_EQ(half->device_memory().in_use, before + static_cast<uint64_t>(N * K * 2));
      // The same rounding as the copy a float32 weight gets on first use.
      auto plain = half->upload(Tensor({N, K}, wh));
      extents::linear(*half, hx.data(), M, K, matrix.data(), nullptr, N, hy.data());
      extents::linear(*half, hx.data(), M, K, plain.data(), nullptr, N, hz.data());
      std::vector<float> a(M * N), b(M * N);
      half->download(hy.data(), a.size(), a.data());
      half->download(hz.data(), b.size(), b.data());
      EXPECT_EQ(a, b);
    }
    half->synchronize();
    EXPECT_EQ(half->device_memory().in_use, before) << "the weight and its copies are freed with their arrays";
  }
  // Float32 products keep float32 weights.
  EXPECT_EQ(gpu_->matrix_element_bytes(), sizeof(float));
  EXPECT_EQ(cpu_->matrix_element_bytes(), sizeof(float));
}

// A recorded step replays what it recorded on the arrays' current contents,
// and is captured again when the scratch it used has been reallocated.
TEST_F(CudaConformance, RecordedStepsReplayAndFollowTheScratch) {
  auto half = make_backend(BackendOptions{"cuda", 0, "bf16"});
  const int64_t M = 5, K = 64, N = 32;
  auto x = half->upload(Tensor({M * K}, random_vector(M * K, 40)));
  auto w = half->upload_matrix(Tensor({N, K}, random_vector(N * K, 41, 0.1f)));
  auto y = half->alloc(M * N);
  std::unique_ptr<StepRecording> slot;
  const auto step = [&] { extents::linear(*half, x.data(), M, K, w.data(), nullptr, N, y.data()); };
  auto result = [&] {
    std::vector<float> v(M * N);
    half->download(y.data(), v.size(), v.data());
    return v;
  };
  EXPECT_EQ(half->run_recorded(slot, step), StepRun::AsIs);
  const std::vector<float> first = result();
  EXPECT_EQ(half->run_recorded(slot, step), StepRun::Recorded);
  EXPECT_EQ(result(), first);

  // New inputs in the same arrays: the replay reads them.
  const auto other = half->upload(Tensor({M * K}, random_vector(M * K, 42)));
  half->copy(other.data(), other.size(), x.data());
  extents::linear(*half, x.data(), M, K, w.data(), nullptr, N, y.data());
  const std::vector<float> want = result();
  extents::fill_zero(*half, y.data(), y.size());
  EXPECT_EQ(half->run_recorded(slot, step), StepRun::Replayed);
  EXPECT_EQ(result(), want);

  // A larger product reallocates the scratch the recording converted x into.
  const int64_t big = 4096;
  auto xb = half->upload(Tensor({big * K}, random_vector(big * K, 43)));
  auto yb = half->alloc(big * N);
  extents::linear(*half, xb.data(), big, K, w.data(), nullptr, N, yb.data());
  extents::fill_zero(*half, y.data(), y.size());
  EXPECT_EQ(half->run_recorded(slot, step), StepRun::Recorded);
  EXPECT_EQ(result(), want);
  EXPECT_EQ(half->run_recorded(slot, step), StepRun::Replayed);

  // With graphs off every call runs as it is.
  auto plain = make_backend(BackendOptions{"cuda", 0, "bf16", 0, false});
  std::unique_ptr<StepRecording> none;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(plain->run_recorded(none, [] {}), StepRun::AsIs);
}

TEST_F(CudaConformance, GemmTransposesStridesAlphaBeta) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int64_t M = 5, N = 257, K = 33;
      // Leading dimensions wider than the matrices: sub-blocks of bigger arrays.
      const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
      const int64_t rows_a = ta ? K : M, rows_b = tb ? N : K;
      SCOPED_TRACE("trans_a " + std::to_string(ta) + " trans_b " + std::to_string(tb));
      Both A = both(random_vector(rows_a * lda, 7)), B = both(random_vector(rows_b * ldb, 8));
      Both C = both(random_vector(M * ldc, 9));
      extents::gemm(*cpu_, ta, tb, M, N, K, 0.75f, A.cpu.data(), lda, B.cpu.data(), ldb, 0.5f, C.cpu.data(), ldc);
      extents::gemm(*gpu_, ta, tb, M, N, K, 0.75f, A.gpu.data(), lda, B.gpu.data(), ldb, 0.5f, C.gpu.data(), ldc);
      EXPECT_CLOSE(gpu_result(C), cpu_result(C), fp32_tol(K));
    }
}

TEST_F(CudaConformance, Elementwise) {
  for (size_t n : {size_t{1}, size_t{257}, size_t{100003}}) {
    SCOPED_TRACE(n);
    const auto xh = random_vector(n, 10, 3.0f);
    Both x = both(xh), y = output(n);
    extents::silu(*cpu_, x.cpu.data(), n, y.cpu.data());
    extents::silu(*gpu_, x.gpu.data(), n, y.gpu.data());
    EXPECT_CLOSE(gpu_result(y), cpu_result(y), fp32_tol(1));

    Both g = both(xh);
    extents::gelu_tanh_inplace(*cpu_, g.cpu.data(), n);
    extents::gelu_tanh_inplace(*gpu_, g.gpu.data(), n);
    EXPECT_CLOSE(gpu_result(g), cpu_result(g), fp32_tol(1));

    Both a = both(xh), other = both(random_vector(n, 11));
    extents::add_inplace(*cpu_, a.cpu.data(), other.cpu.data(), n);
    extents::add_inplace(*gpu_, a.gpu.data(), other.gpu.data(), n);
    EXPECT_EQ(gpu_result(a), cpu_result(a));
    extents::axpby_inplace(*cpu_, a.cpu.data(), 0.3f, other.cpu.data(), -1.7f, n);
    extents::axpby_inplace(*gpu_, a.gpu.data(), 0.3f, other.gpu.data(), -1.7f, n);
    EXPECT_EQ(gpu_result(a), cpu_result(a));
    extents::clamp(*cpu_, a.cpu.data(), n, -1.0f, 0.5f);
    extents::clamp(*gpu_, a.gpu.data(), n, -1.0f, 0.5f);
    EXPECT_EQ(gpu_result(a), cpu_result(a));
  }
}

TEST_F(CudaConformance, RowBroadcasts) {
  const int64_t rows = 3, tokens = 5, C = 67, stride = 2 * C + 1;
  Both y = both(random_vector(rows * tokens * C, 12)), x = both(random_vector(rows * tokens * C, 13)),
       v = both(random_vector(rows * stride, 14));
  extents::add_scaled_rows(*cpu_, y.cpu.data(), x.cpu.data(), v.cpu.data() + 1, stride, rows, tokens, C);
  extents::add_scaled_rows(*gpu_, y.gpu.data(), x.gpu.data(), v.gpu.data() + 1, stride, rows, tokens, C);
  EXPECT_EQ(gpu_result(y), cpu_result(y));
  Both block = both(random_vector(tokens * C, 15));
  extents::add_broadcast_rows(*cpu_, y.cpu.data(), block.cpu.data(), rows, tokens, C);
  extents::add_broadcast_rows(*gpu_, y.gpu.data(), block.gpu.data(), rows, tokens, C);
  EXPECT_EQ(gpu_result(y), cpu_result(y));
}

TEST_F(CudaConformance, SoftmaxRows) {
  for (int64_t len : {int64_t{1}, int64_t{3}, int64_t{257}, int64_t{1000}}) {
    SCOPED_TRACE(len);
    auto h = random_vector(5 * len, 16, 4.0f);
    h[0] = -INFINITY;  // a masked entry
    Both x = both(h);
    extents::softmax_rows(*cpu_, x.cpu.data(), 5, len);
    extents::softmax_rows(*gpu_, x.gpu.data(), 5, len);
    EXPECT_CLOSE(gpu_result(x), cpu_result(x), fp32_tol(len));
  }
}

TEST_F(CudaConformance, AdaLnModulate) {
  for (int64_t C : {int64_t{1}, int64_t{129}, int64_t{1024}}) {
    SCOPED_TRACE(C);
    const int64_t rows = 2, tokens = 7, stride = 6 * C;
    auto xh = random_vector(rows * tokens * C, 17, 2.0f);
    for (float& v : xh) v += 30.0f;  // a large mean: the variance must not cancel
    Both x = both(xh), mod = both(random_vector(rows * stride, 18)), out = output(rows * tokens * C);
    extents::adaln_modulate(*cpu_, x.cpu.data(), rows, tokens, C, mod.cpu.data() + C, mod.cpu.data(), stride, 1e-6f,
                         out.cpu.data());
    extents::adaln_modulate(*gpu_, x.gpu.data(), rows, tokens, C, mod.gpu.data() + C, mod.gpu.data(), stride, 1e-6f,
                         out.gpu.data());
    EXPECT_CLOSE(gpu_result(out), cpu_result(out), fp32_tol(C));
  }
}

// The fused residual and LayerNorm against add_scaled_rows then
// adaln_modulate, with out in delta's memory as a transformer block calls it.
TEST_F(CudaConformance, ResidualThenAdaLn) {
  for (int64_t C : {int64_t{1}, int64_t{129}, int64_t{1024}}) {
    SCOPED_TRACE(C);
    const int64_t rows = 3, tokens = 5, g_stride = 6 * C, m_stride = 2 * C;
    auto xh = random_vector(rows * tokens * C, 50, 2.0f);
    for (float& v : xh) v += 30.0f;
    Both x = both(xh), delta = both(random_vector(rows * tokens * C, 51)),
         gamma = both(random_vector(rows * g_stride, 52)), mod = both(random_vector(rows * m_stride, 53));
    extents::add_scaled_rows(*cpu_, x.cpu.data(), delta.cpu.data(), gamma.cpu.data() + C, g_stride, rows, tokens, C);
    extents::adaln_modulate(*cpu_, x.cpu.data(), rows, tokens, C, mod.cpu.data(), mod.cpu.data() + C, m_stride, 1e-6f,
                         delta.cpu.data());
    extents::add_scaled_rows_then_adaln(*gpu_, x.gpu.data(), delta.gpu.data(), gamma.gpu.data() + C, g_stride, rows, tokens,
                                     C, mod.gpu.data(), mod.gpu.data() + C, m_stride, 1e-6f, delta.gpu.data());
    // The residual has one rounding per element, in the same order.
    EXPECT_EQ(gpu_result(x), cpu_result(x));
    EXPECT_CLOSE(gpu_result(delta), cpu_result(delta), fp32_tol(C));
  }
}

// GELU in the product's epilogue against linear then gelu_tanh_inplace.
TEST_F(CudaConformance, LinearGelu) {
  for (const auto& [precision, tol] :
       {std::pair<std::string, double>{"fp32", fp32_tol(320)}, {"bf16", kBf16Tol}, {"fp16", kFp16Tol}}) {
    SCOPED_TRACE(precision);
    auto be = make_backend(BackendOptions{"cuda", 0, precision});
    for (const bool bias : {false, true}) {
      const int64_t M = 37, K = 320, N = 129;
      const auto xh = random_vector(M * K, 54), wh = random_vector(N * K, 55, 0.1f), bh = random_vector(N, 56);
      Both x = both(xh), w = both(wh), b = both(bh), y = output(M * N);
      extents::linear(*cpu_, x.cpu.data(), M, K, w.cpu.data(), bias ? b.cpu.data() : nullptr, N, y.cpu.data());
      extents::gelu_tanh_inplace(*cpu_, y.cpu.data(), static_cast<size_t>(M * N));
      auto gx = be->upload(Tensor({M * K}, xh)), gb = be->upload(Tensor({N}, bh)), gy = be->alloc(M * N);
      auto gw = be->upload_matrix(Tensor({N, K}, wh));
      extents::linear_gelu(*be, gx.data(), M, K, gw.data(), bias ? gb.data() : nullptr, N, gy.data());
      std::vector<float> got(M * N);
      be->download(gy.data(), got.size(), got.data());
      EXPECT_CLOSE(got, cpu_result(y), tol);
    }
  }
}

// The block's MLP against linear, GELU, linear on the CPU. With bf16/fp16
// products the hidden layer is stored in that precision between the
// products (two chained roundings stay within the operand tolerance).
TEST_F(CudaConformance, Mlp) {
  for (const auto& [precision, tol] :
       {std::pair<std::string, double>{"fp32", fp32_tol(4 * 96)}, {"bf16", kBf16Tol}, {"fp16", kFp16Tol}}) {
    SCOPED_TRACE(precision);
    auto be = make_backend(BackendOptions{"cuda", 0, precision});
    const int64_t M = 37, C = 96, H = 4 * C, N = C;
    const auto xh = random_vector(M * C, 57), w1 = random_vector(H * C, 58, 0.1f), b1 = random_vector(H, 59),
               w2 = random_vector(N * H, 60, 0.05f), b2 = random_vector(N, 61);
    Both x = both(xh), cw1 = both(w1), cb1 = both(b1), cw2 = both(w2), cb2 = both(b2), hid = output(M * H),
         y = output(M * N);
    extents::linear(*cpu_, x.cpu.data(), M, C, cw1.cpu.data(), cb1.cpu.data(), H, hid.cpu.data());
    extents::gelu_tanh_inplace(*cpu_, hid.cpu.data(), static_cast<size_t>(M * H));
    extents::linear(*cpu_, hid.cpu.data(), M, H, cw2.cpu.data(), cb2.cpu.data(), N, y.cpu.data());
    auto gw1 = be->upload_matrix(Tensor({H, C}, w1)), gw2 = be->upload_matrix(Tensor({N, H}, w2));
    auto gx = be->upload(Tensor({M * C}, xh)), gb1 = be->upload(Tensor({H}, b1)), gb2 = be->upload(Tensor({N}, b2)),
         ghid = be->alloc(M * H),
         gy = be->upload(Tensor({M * N}, std::vector<float>(M * N, NAN)));
    extents::mlp(*be, gx.data(), M, C, gw1.data(), gb1.data(), H, gw2.data(), gb2.data(), N, ghid.data(), gy.data());
    std::vector<float> got(M * N);
    be->download(gy.data(), got.size(), got.data());
    EXPECT_CLOSE(got, cpu_result(y), tol);
  }
}

struct AttnShape {
  int64_t rows, H, tokens, hd, pos, prefix;
};

class CudaAttention : public CudaConformance, public ::testing::WithParamInterface<AttnShape> {};

// split_qkv_to_cache then attention, as a transformer block runs them.
TEST_P(CudaAttention, SplitThenAttend) {
  const AttnShape s = GetParam();
  const int64_t C = s.H * s.hd, capacity = s.pos + s.tokens + 3, len = s.pos + s.tokens;
  for (bool l2norm : {false, true}) {
    SCOPED_TRACE(l2norm ? "l2norm" : "plain");
    Both qkv = both(random_vector(s.rows * s.tokens * 3 * C, 19));
    // Earlier scales' keys already in the cache, identical on both sides.
    Both kc = both(random_vector(s.rows * s.H * capacity * s.hd, 20, l2norm ? 0.1f : 1.0f));
    Both vc = both(random_vector(s.rows * s.H * capacity * s.hd, 21));
    Both q = output(s.rows * s.H * s.tokens * s.hd);
    std::vector<float> q_scale(s.H);
    for (int64_t h = 0; h < s.H; ++h) q_scale[h] = 1.0f + 0.5f * static_cast<float>(h);
    extents::split_qkv_to_cache(*cpu_, qkv.cpu.data(), s.rows, s.tokens, s.H, s.hd, l2norm, q_scale.data(), q.cpu.data(),
                             kc.cpu.data(), vc.cpu.data(), capacity, s.pos);
    extents::split_qkv_to_cache(*gpu_, qkv.gpu.data(), s.rows, s.tokens, s.H, s.hd, l2norm, q_scale.data(), q.gpu.data(),
                             kc.gpu.data(), vc.gpu.data(), capacity, s.pos);
    EXPECT_CLOSE(gpu_result(q), cpu_result(q), fp32_tol(s.hd));
    EXPECT_CLOSE(gpu_result(kc), cpu_result(kc), fp32_tol(s.hd));
    EXPECT_EQ(gpu_result(vc), cpu_result(vc));

    const int64_t streams = s.prefix > 0 ? s.rows : 1;
    Both pk = both(random_vector(std::max<int64_t>(1, streams * s.H * s.prefix * s.hd), 22));
    Both pv = both(random_vector(std::max<int64_t>(1, streams * s.H * s.prefix * s.hd), 23));
    // Every row its own stream when there is a prefix: each row must read its own.
    const KvPrefix cpu_prefix{pk.cpu.data(), pv.cpu.data(), s.prefix, 1};
    const KvPrefix gpu_prefix{pk.gpu.data(), pv.gpu.data(), s.prefix, 1};
    Both out = output(s.rows * s.tokens * C);
    const float scale = l2norm ? 1.0f : 1.0f / std::sqrt(static_cast<float>(s.hd));
    extents::attention(*cpu_, q.cpu.data(), kc.cpu.data(), vc.cpu.data(), s.rows, s.H, s.tokens, s.hd, capacity, len, scale,
                    cpu_prefix, out.cpu.data());
    extents::attention(*gpu_, q.gpu.data(), kc.gpu.data(), vc.gpu.data(), s.rows, s.H, s.tokens, s.hd, capacity, len, scale,
                    gpu_prefix, out.gpu.data());
    EXPECT_CLOSE(gpu_result(out), cpu_result(out), fp32_tol(s.hd + len + s.prefix));
  }
}

// With bf16/fp16 products the KV cache is stored in that precision (2 bytes
// an element): keys and values are rounded as they are appended, and
// attention reads them back within the operand tolerance. With head_dim 64
// and 16 queries or more it runs on tensor cores, which round the queries
// and the softmax weights too (attention_mma_applies). The earlier
// scales' keys go in through split_qkv_to_cache too, as the handle is opaque.
TEST_P(CudaAttention, HalfPrecisionCache) {
  const AttnShape s = GetParam();
  const int64_t C = s.H * s.hd, capacity = s.pos + s.tokens + 3, len = s.pos + s.tokens;
  const size_t cache_n = static_cast<size_t>(s.rows * s.H * capacity * s.hd);
  for (const auto& [precision, tol] : {std::pair<std::string, double>{"bf16", kBf16Tol}, {"fp16", kFp16Tol}}) {
    SCOPED_TRACE(precision);
    auto half = make_backend(BackendOptions{"cuda", 0, precision});
    ASSERT_EQ(half->kv_element_bytes(), 2u);
    const uint64_t before = half->device_memory().in_use;
    Array<KvElement> hk = half->alloc_kv_cache(cache_n), hv = half->alloc_kv_cache(cache_n);
    EXPECT_LE(half->device_memory().in_use - before, 2 * (cache_n * 2 + 256)) << "2 bytes an element";
    Both kc = output(cache_n), vc = output(cache_n);
    std::vector<float> q_scale(s.H, 1.5f);
    auto append = [&](int64_t tokens, int64_t pos, uint32_t seed, Both& q, Array<float>& hq) {
      const auto host = random_vector(s.rows * tokens * 3 * C, seed);
      Both qkv = both(host);
      auto hqkv = half->upload(Tensor({static_cast<int64_t>(host.size())}, host));
      extents::split_qkv_to_cache(*cpu_, qkv.cpu.data(), s.rows, tokens, s.H, s.hd, true, q_scale.data(), q.cpu.data(),
                               kc.cpu.data(), vc.cpu.data(), capacity, pos);
      extents::split_qkv_to_cache(*half, hqkv.data(), s.rows, tokens, s.H, s.hd, true, q_scale.data(), hq.data(), hk.data(),
                               hv.data(), capacity, pos);
    };
    if (s.pos > 0) {
      Both earlier_q = output(s.rows * s.H * s.pos * s.hd);
      Array<float> hq = half->alloc(earlier_q.n);
      append(s.pos, 0, 40, earlier_q, hq);
    }
    Both q = output(s.rows * s.H * s.tokens * s.hd);
    Array<float> hq = half->alloc(q.n);
    append(s.tokens, s.pos, 41, q, hq);
    std::vector<float> got_q(q.n);
    half->download(hq.data(), q.n, got_q.data());
    EXPECT_CLOSE(got_q, cpu_result(q), fp32_tol(s.hd));  // queries stay float32

    const int64_t streams = s.prefix > 0 ? s.rows : 1;
    const auto pkh = random_vector(std::max<int64_t>(1, streams * s.H * s.prefix * s.hd), 22),
               pvh = random_vector(std::max<int64_t>(1, streams * s.H * s.prefix * s.hd), 23);
    Both pk = both(pkh), pv = both(pvh);
    auto hpk = half->upload(Tensor({static_cast<int64_t>(pkh.size())}, pkh));
    auto hpv = half->upload(Tensor({static_cast<int64_t>(pvh.size())}, pvh));
    Both out = output(s.rows * s.tokens * C);
    auto hout = half->upload(Tensor({static_cast<int64_t>(out.n)}, std::vector<float>(out.n, NAN)));
    extents::attention(*cpu_, q.cpu.data(), kc.cpu.data(), vc.cpu.data(), s.rows, s.H, s.tokens, s.hd, capacity, len, 1.0f,
                    KvPrefix{pk.cpu.data(), pv.cpu.data(), s.prefix, 1}, out.cpu.data());
    extents::attention(*half, hq.data(), hk.data(), hv.data(), s.rows, s.H, s.tokens, s.hd, capacity, len, 1.0f,
                    KvPrefix{hpk.data(), hpv.data(), s.prefix, 1}, hout.data());
    std::vector<float> got(out.n);
    half->download(hout.data(), out.n, got.data());
    const Compared cmp = compare(got, cpu_result(out));
    EXPECT_EQ(cmp.mismatched_nonfinite, 0);
    EXPECT_LE(cmp.error, tol);
    EXPECT_GT(cmp.error, fp32_tol(s.hd + len + s.prefix)) << "the cache was not rounded";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention,
                         ::testing::Values(AttnShape{1, 1, 1, 64, 0, 0},     // the first scale
                                           AttnShape{2, 3, 9, 64, 5, 0},     // hd 64, fast path
                                           AttnShape{3, 2, 257, 64, 40, 0},  // 257 queries, 297 keys
                                           AttnShape{2, 2, 13, 40, 7, 0},    // hd 40: general path
                                           AttnShape{2, 1, 5, 128, 3, 0},    // hd 128
                                           AttnShape{2, 2, 4, 16, 1, 0},     // hd below a warp
                                           AttnShape{3, 2, 9, 64, 5, 5},     // ParScale prefix
                                           AttnShape{2, 2, 33, 40, 2, 7},    // prefix, general path
                                           // hd 64, 16 queries or more: the tensor-core path with a
                                           // half-precision cache, a short last warp, two key tiles
                                           AttnShape{2, 2, 70, 64, 30, 9}),
                         [](const ::testing::TestParamInfo<AttnShape>& i) {
                           const AttnShape& s = i.param;
                           std::string name = "r";  // built with += (GCC 12 warns falsely on "r" + ...)
                           name += std::to_string(s.rows) + "_h" + std::to_string(s.H) + "_t" +
                                   std::to_string(s.tokens) + "_hd" + std::to_string(s.hd) + "_pos" +
                                   std::to_string(s.pos) + "_prefix" + std::to_string(s.prefix);
                           return name;
                         });

TEST_F(CudaConformance, StreamAggregation) {
  const int64_t P = 3, M = 37, C = 65;
  Both h = both(random_vector(P * M * C, 24)), z = output(M * C * P);
  extents::interleave_streams(*cpu_, h.cpu.data(), P, M, C, z.cpu.data());
  extents::interleave_streams(*gpu_, h.gpu.data(), P, M, C, z.gpu.data());
  EXPECT_EQ(gpu_result(z), cpu_result(z));
  Both a = both(random_vector(M * P, 25, 3.0f));
  extents::stream_weights(*cpu_, a.cpu.data(), M, P, 0.01);
  extents::stream_weights(*gpu_, a.gpu.data(), M, P, 0.01);
  EXPECT_CLOSE(gpu_result(a), cpu_result(a), fp32_tol(P));
  // The same weights on both sides, so the sum is compared alone.
  Both w = copy_of(a), out = output(M * C);
  extents::weighted_stream_sum(*cpu_, h.cpu.data(), w.cpu.data(), P, M, C, out.cpu.data());
  extents::weighted_stream_sum(*gpu_, h.gpu.data(), w.gpu.data(), P, M, C, out.gpu.data());
  EXPECT_EQ(gpu_result(out), cpu_result(out));
}

TEST_F(CudaConformance, Guidance) {
  const int64_t B = 3, lV = 257 * 5;
  Both logits = both(random_vector(5 * lV, 26, 5.0f)), out = output(B * lV);
  // cfg·ratio is rounded in double, then to float: 0.7 and 5.3 are not exact.
  const BothJobs j = jobs({{1, {0.0, 900, 0.95}}, {2, {1.5, 900, 0.95}}, {3, {5.3, 900, 0.95}}});
  const std::vector<int64_t> uncond = {3, -1, 4};
  extents::guidance(*cpu_, logits.cpu.data(), B, lV, j.cpu.data(), 0.7, uncond, out.cpu.data());
  extents::guidance(*gpu_, logits.gpu.data(), B, lV, j.gpu.data(), 0.7, uncond, out.gpu.data());
  EXPECT_EQ(gpu_result(out), cpu_result(out));  // the same float32 operations in the same order
}

TEST_F(CudaConformance, SamplingDrawsTheSameTokens) {
  struct Case {
    int64_t V;
    SamplingParams p;
    bool exact;  // greedy: no sum decides the token
  };
  const std::vector<Case> cases = {{64, {0, 1, 0.0, 1.0}, true},      {4096, {0, 1, 0.0, 1.0}, true},
                                   {4096, {0, 900, 0.95, 1.0}, false}, {64, {0, 0, 0.0, 1.0}, false},
                                   {257, {0, 5, 0.5, 0.7}, false},     {1, {0, 0, 0.9, 1.0}, true},
                                   {1000, {0, 0, 0.3, 1.3}, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE("V " + std::to_string(c.V) + " top_k " + std::to_string(c.p.top_k) + " top_p " +
                 std::to_string(c.p.top_p));
    const int64_t B = 2, l = 257;
    const auto h = random_vector(B * l * c.V, 27, 3.0f);
    Both logits = both(h);
    const std::vector<SampleJob> host_jobs = {{7, c.p}, {1234567890123ull, c.p}};
    const BothJobs j = jobs(host_jobs);
    const bool filters = sample_filters(host_jobs.data(), B, c.V);
    auto ci = cpu_->alloc_i32(B * l), gi = gpu_->alloc_i32(B * l);
    extents::sample(*cpu_, logits.cpu.data(), B, l, c.V, j.cpu.data(), filters, 4, ci.data());
    extents::sample(*gpu_, logits.gpu.data(), B, l, c.V, j.gpu.data(), filters, 4, gi.data());
    std::vector<int32_t> want(B * l), got(B * l);
    cpu_->download_i32(ci.data(), want.size(), want.data());
    gpu_->download_i32(gi.data(), got.size(), got.data());
    int64_t same = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      same += want[i] == got[i];
      ASSERT_GE(got[i], 0);
      ASSERT_LT(got[i], c.V);
    }
    if (c.exact) {
      EXPECT_EQ(got, want);
    } else {
      // Block sums round differently from the CPU's sequential ones, so a draw
      // landing within rounding of a boundary may pick the neighbour.
      EXPECT_GE(same, static_cast<int64_t>(want.size()) - 2) << same << " of " << want.size() << " tokens agree";
    }
  }
}

TEST_F(CudaConformance, Convolutions) {
  struct Conv {
    int64_t N, Ci, H, W, Co;
    int k, stride, pt, pl, pb, pr;
    bool bias;
  };
  for (const Conv& c : {Conv{2, 3, 7, 5, 4, 3, 1, 1, 1, 1, 1, true}, Conv{1, 5, 9, 9, 3, 3, 2, 0, 0, 1, 1, true},
                       Conv{2, 6, 4, 3, 5, 1, 1, 0, 0, 0, 0, false}, Conv{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, true},
                       Conv{1, 16, 33, 17, 8, 3, 1, 1, 1, 1, 1, false}}) {
    SCOPED_TRACE("Ci " + std::to_string(c.Ci) + " k " + std::to_string(c.k) + " stride " + std::to_string(c.stride));
    const int64_t Ho = (c.H + c.pt + c.pb - c.k) / c.stride + 1, Wo = (c.W + c.pl + c.pr - c.k) / c.stride + 1;
    Both x = both(random_vector(c.N * c.Ci * c.H * c.W, 28)), w = both(random_vector(c.Co * c.Ci * c.k * c.k, 29, 0.2f));
    Both b = both(random_vector(c.Co, 30)), out = output(c.N * c.Co * Ho * Wo);
    extents::conv2d(*cpu_, x.cpu.data(), c.N, c.Ci, c.H, c.W, w.cpu.data(), c.bias ? b.cpu.data() : nullptr, c.Co, c.k, c.stride,
                 c.pt, c.pl, c.pb, c.pr, out.cpu.data());
    extents::conv2d(*gpu_, x.gpu.data(), c.N, c.Ci, c.H, c.W, w.gpu.data(), c.bias ? b.gpu.data() : nullptr, c.Co, c.k, c.stride,
                 c.pt, c.pl, c.pb, c.pr, out.gpu.data());
    EXPECT_CLOSE(gpu_result(out), cpu_result(out), fp32_tol(c.Ci * c.k * c.k));
  }
}

// bf16/fp16 convolutions are the tensor-core implicit GEMM (a 1×1 one on a
// plain input is one product): shapes across its tiles of 64 channels, 128
// pixels and 32 rows, weights whose rows are not whole 16-byte loads, strides
// and the encoder's one-sided padding.
TEST_F(CudaConformance, ConvolutionsWithHalfPrecisionOperands) {
  struct Conv {
    int64_t N, Ci, H, W, Co;
    int k, stride, pt, pl, pb, pr;
    bool add_to_out;
  };
  for (const auto& [precision, tol] : {std::pair<std::string, double>{"bf16", kBf16Tol}, {"fp16", kFp16Tol}}) {
    auto half = make_backend(BackendOptions{"cuda", 0, precision});
    for (const Conv& c : {Conv{2, 16, 33, 17, 8, 3, 1, 1, 1, 1, 1, false},
                          Conv{1, 24, 9, 9, 5, 3, 2, 1, 1, 1, 1, false},
                          Conv{2, 32, 7, 9, 24, 1, 1, 0, 0, 0, 0, false},
                          Conv{1, 5, 10, 11, 70, 3, 1, 1, 1, 1, 1, true},
                          Conv{2, 3, 9, 8, 4, 3, 2, 0, 0, 1, 1, false},
                          Conv{1, 40, 12, 13, 129, 3, 1, 1, 1, 1, 1, true},
                          Conv{3, 8, 5, 4, 3, 1, 1, 1, 0, 0, 1, false}}) {
      SCOPED_TRACE(precision + " Ci " + std::to_string(c.Ci) + " Co " + std::to_string(c.Co) + " k " +
                   std::to_string(c.k) + " stride " + std::to_string(c.stride));
      const int64_t Ho = (c.H + c.pt + c.pb - c.k) / c.stride + 1, Wo = (c.W + c.pl + c.pr - c.k) / c.stride + 1;
      const auto xh = random_vector(c.N * c.Ci * c.H * c.W, 31), wh = random_vector(c.Co * c.Ci * c.k * c.k, 32, 0.2f),
                 bh = random_vector(c.Co, 33);
      const auto before = c.add_to_out ? random_vector(c.N * c.Co * Ho * Wo, 34) : std::vector<float>{};
      Both x = both(xh), w = both(wh), b = both(bh);
      Both out = c.add_to_out ? both(before) : output(c.N * c.Co * Ho * Wo);
      auto hx = half->upload(Tensor({static_cast<int64_t>(xh.size())}, xh));
      auto hw = half->upload_matrix(Tensor({static_cast<int64_t>(wh.size())}, wh));
      auto hb = half->upload(Tensor({c.Co}, bh));
      auto hy = half->upload(Tensor({static_cast<int64_t>(out.n)},
                                    c.add_to_out ? before : std::vector<float>(out.n, NAN)));
      if (c.add_to_out) {
        // conv2d has no add: the residual form is normalized_conv2d's, with
        // an identity norm (one group per channel, gamma = rstd = 1, beta =
        // mean = 0) so both sides read x itself.
        ASSERT_EQ(c.stride, 1);
        const std::vector<float> ones(c.Ci, 1.0f), zeros(c.Ci, 0.0f);
        std::vector<float> st(c.N * c.Ci * 2);
        for (size_t i = 0; i < st.size(); i += 2) st[i] = 0.0f, st[i + 1] = 1.0f;
        Both stats = both(st), gamma = both(ones), beta = both(zeros);
        auto hs = half->upload(Tensor({static_cast<int64_t>(st.size())}, st));
        auto hg = half->upload(Tensor({c.Ci}, ones)), hbe = half->upload(Tensor({c.Ci}, zeros));
        const int groups = static_cast<int>(c.Ci);
        extents::normalized_conv2d(*cpu_, x.cpu.data(), c.N, c.Ci, c.H, c.W,
                                NormOnRead{stats.cpu.data(), gamma.cpu.data(), beta.cpu.data(), groups, false},
                                w.cpu.data(), b.cpu.data(), c.Co, c.k, true, out.cpu.data());
        extents::normalized_conv2d(*half, hx.data(), c.N, c.Ci, c.H, c.W,
                                NormOnRead{hs.data(), hg.data(), hbe.data(), groups, false}, hw.data(), hb.data(),
                                c.Co, c.k, true, hy.data());
      } else {
        extents::conv2d(*cpu_, x.cpu.data(), c.N, c.Ci, c.H, c.W, w.cpu.data(), b.cpu.data(), c.Co, c.k, c.stride, c.pt, c.pl,
                     c.pb, c.pr, out.cpu.data());
        extents::conv2d(*half, hx.data(), c.N, c.Ci, c.H, c.W, hw.data(), hb.data(), c.Co, c.k, c.stride, c.pt, c.pl, c.pb,
                     c.pr, hy.data());
      }
      std::vector<float> got(out.n);
      half->download(hy.data(), got.size(), got.data());
      std::vector<float> ref = cpu_result(out);
      if (c.add_to_out) {  // compare the product: the residual would hide its error
        for (size_t i = 0; i < ref.size(); ++i) {
          ref[i] -= before[i];
          got[i] -= before[i];
        }
      }
      const Compared cmp = compare(got, ref);
      EXPECT_EQ(cmp.mismatched_nonfinite, 0);
      EXPECT_LE(cmp.error, tol);
      EXPECT_GT(cmp.error, fp32_tol(c.Ci * c.k * c.k)) << "the operands were not rounded";
    }
  }
}

// The tensor-core convolution builds its columns in shared memory: a
// convolution of a 64-channel 96×96 map (a 53 MB float32 im2col matrix)
// leaves the backend's memory as it was.
TEST_F(CudaConformance, HalfPrecisionConvolutionNeedsNoScratch) {
  auto half = make_backend(BackendOptions{"cuda", 0, "bf16"});
  const int64_t Ci = 64, S = 96, Co = 64;
  auto x = half->upload(Tensor({Ci * S * S}, random_vector(Ci * S * S, 35)));
  auto w = half->upload_matrix(Tensor({Co * Ci * 9}, random_vector(Co * Ci * 9, 36, 0.05f)));
  auto y = half->alloc(Co * S * S);
  half->synchronize();
  const uint64_t before = half->device_memory().in_use;
  extents::conv2d(*half, x.data(), 1, Ci, S, S, w.data(), nullptr, Co, 3, 1, 1, 1, 1, 1, y.data());
  half->synchronize();
  EXPECT_EQ(half->device_memory().in_use, before);
  EXPECT_EQ(half->workspace_bytes(WorkspaceDemand{0, static_cast<uint64_t>(Ci * 9 * S * S), 0, {}}),
            half->workspace_bytes(WorkspaceDemand{}));
}

TEST_F(CudaConformance, GroupNorm) {
  for (bool silu : {false, true}) {
    const int64_t N = 2, C = 8, HW = 33;
    Both x = both(random_vector(N * C * HW, 31, 3.0f)), g = both(random_vector(C, 32)), b = both(random_vector(C, 33));
    Both out = output(N * C * HW);
    extents::group_norm(*cpu_, x.cpu.data(), N, C, HW, 4, g.cpu.data(), b.cpu.data(), 1e-6f, silu, out.cpu.data());
    extents::group_norm(*gpu_, x.gpu.data(), N, C, HW, 4, g.gpu.data(), b.gpu.data(), 1e-6f, silu, out.gpu.data());
    EXPECT_CLOSE(gpu_result(out), cpu_result(out), fp32_tol(2 * HW));
    // In place, as the decoder may call it.
    extents::group_norm(*cpu_, x.cpu.data(), N, C, HW, 4, g.cpu.data(), b.cpu.data(), 1e-6f, silu, x.cpu.data());
    extents::group_norm(*gpu_, x.gpu.data(), N, C, HW, 4, g.gpu.data(), b.gpu.data(), 1e-6f, silu, x.gpu.data());
    EXPECT_CLOSE(gpu_result(x), cpu_result(x), fp32_tol(2 * HW));
  }
}

// The decoder's GroupNorm + SiLU + convolution with the norm applied as the
// im2col band is built, written or added into the output.
TEST_F(CudaConformance, NormalizedConvolution) {
  struct Conv {
    int64_t N, Ci, H, W, Co;
    int k, groups;
    bool add_to_out;
  };
  for (const Conv& c : {Conv{2, 4, 7, 5, 3, 3, 2, false}, Conv{1, 6, 9, 9, 6, 3, 3, true}, Conv{2, 8, 4, 3, 5, 1, 4, true},
                       Conv{1, 32, 17, 33, 16, 3, 32, true}}) {
    SCOPED_TRACE("Ci " + std::to_string(c.Ci) + " k " + std::to_string(c.k) + " add " + std::to_string(c.add_to_out));
    const int64_t HW = c.H * c.W;
    Both x = both(random_vector(c.N * c.Ci * HW, 40, 3.0f)), g = both(random_vector(c.Ci, 41)),
         b = both(random_vector(c.Ci, 42));
    Both w = both(random_vector(c.Co * c.Ci * c.k * c.k, 43, 0.2f)), bias = both(random_vector(c.Co, 44));
    Both stats = output(c.N * c.groups * 2);
    extents::group_norm_stats(*cpu_, x.cpu.data(), c.N, c.Ci, HW, c.groups, 1e-6f, stats.cpu.data());
    extents::group_norm_stats(*gpu_, x.gpu.data(), c.N, c.Ci, HW, c.groups, 1e-6f, stats.gpu.data());
    EXPECT_CLOSE(gpu_result(stats), cpu_result(stats), fp32_tol(c.Ci / c.groups * HW));
    // The same statistics on both sides, so the convolution is compared alone.
    Both same = copy_of(stats);
    Both out = c.add_to_out ? both(random_vector(c.N * c.Co * HW, 45)) : output(c.N * c.Co * HW);
    const NormOnRead cn{same.cpu.data(), g.cpu.data(), b.cpu.data(), static_cast<int>(c.groups), true};
    const NormOnRead gn{same.gpu.data(), g.gpu.data(), b.gpu.data(), static_cast<int>(c.groups), true};
    extents::normalized_conv2d(*cpu_, x.cpu.data(), c.N, c.Ci, c.H, c.W, cn, w.cpu.data(), bias.cpu.data(), c.Co, c.k,
                            c.add_to_out, out.cpu.data());
    const std::vector<float> out_before = gpu_result(out);
    extents::normalized_conv2d(*gpu_, x.gpu.data(), c.N, c.Ci, c.H, c.W, gn, w.gpu.data(), bias.gpu.data(), c.Co, c.k,
                            c.add_to_out, out.gpu.data());
    const std::vector<float> ref = cpu_result(out);
    EXPECT_CLOSE(gpu_result(out), ref, fp32_tol(c.Ci * c.k * c.k));

    // bf16 products: the tensor-core kernel normalises as it builds its tiles.
    auto half = make_backend(BackendOptions{"cuda", 0, "bf16"});
    auto up = [&](const Both& b) { return half->upload(Tensor({static_cast<int64_t>(b.n)}, cpu_result(b))); };
    auto hx = up(x), hg = up(g), hb = up(b), hs = up(same), hbias = up(bias);
    auto hw = half->upload_matrix(Tensor({static_cast<int64_t>(w.n)}, cpu_result(w)));
    auto hy = half->upload(Tensor({static_cast<int64_t>(out.n)}, out_before));
    extents::normalized_conv2d(*half, hx.data(), c.N, c.Ci, c.H, c.W,
                            NormOnRead{hs.data(), hg.data(), hb.data(), static_cast<int>(c.groups), true}, hw.data(),
                            hbias.data(), c.Co, c.k, c.add_to_out, hy.data());
    std::vector<float> got(out.n);
    half->download(hy.data(), got.size(), got.data());
    EXPECT_CLOSE(got, ref, kBf16Tol);
  }
}

TEST_F(CudaConformance, Resampling) {
  const int64_t NC = 6;
  Both small = both(random_vector(NC * 3 * 5, 34));
  Both up2 = output(NC * 6 * 10);
  extents::upsample_nearest2x(*cpu_, small.cpu.data(), NC, 3, 5, up2.cpu.data());
  extents::upsample_nearest2x(*gpu_, small.gpu.data(), NC, 3, 5, up2.gpu.data());
  EXPECT_EQ(gpu_result(up2), cpu_result(up2));
  // The same float operations in the same order: bit-identical.
  for (const auto& [h, H] : {std::pair<int64_t, int64_t>{1, 16}, {3, 7}, {13, 16}, {16, 16}}) {
    SCOPED_TRACE(std::to_string(h) + " -> " + std::to_string(H));
    Both x = both(random_vector(NC * h * (h + 2), 35)), up = output(NC * H * (H + 3));
    extents::upsample_bicubic(*cpu_, x.cpu.data(), NC, h, h + 2, H, H + 3, up.cpu.data());
    extents::upsample_bicubic(*gpu_, x.gpu.data(), NC, h, h + 2, H, H + 3, up.gpu.data());
    EXPECT_EQ(gpu_result(up), cpu_result(up));
    Both big = both(random_vector(NC * H * (H + 3), 36)), down = output(NC * h * (h + 2));
    extents::downsample_area(*cpu_, big.cpu.data(), NC, H, H + 3, h, h + 2, down.cpu.data());
    extents::downsample_area(*gpu_, big.gpu.data(), NC, H, H + 3, h, h + 2, down.gpu.data());
    EXPECT_EQ(gpu_result(down), cpu_result(down));
  }
}

TEST_F(CudaConformance, LayoutsAndLookups) {
  const int64_t N = 2, C = 7, P = 33, V = 64;
  Both x = both(random_vector(N * C * P, 37)), tokens = output(N * P * C);
  extents::chw_to_tokens(*cpu_, x.cpu.data(), N, C, P, tokens.cpu.data());
  extents::chw_to_tokens(*gpu_, x.gpu.data(), N, C, P, tokens.gpu.data());
  EXPECT_EQ(gpu_result(tokens), cpu_result(tokens));

  std::vector<int32_t> idx(N * P);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>((i * 37 + 5) % V);
  auto ci = cpu_->alloc_i32(idx.size()), gi = gpu_->alloc_i32(idx.size());
  cpu_->upload_into_i32(idx.data(), idx.size(), ci.data());
  gpu_->upload_into_i32(idx.data(), idx.size(), gi.data());
  Both table = both(random_vector(V * C, 38)), chw = output(N * C * P), rows = output(N * P * C);
  extents::embed_chw(*cpu_, table.cpu.data(), C, ci.data(), N, P, chw.cpu.data());
  extents::embed_chw(*gpu_, table.gpu.data(), C, gi.data(), N, P, chw.gpu.data());
  EXPECT_EQ(gpu_result(chw), cpu_result(chw));
  extents::gather_rows(*cpu_, table.cpu.data(), C, ci.data(), N * P, rows.cpu.data());
  extents::gather_rows(*gpu_, table.gpu.data(), C, gi.data(), N * P, rows.gpu.data());
  EXPECT_EQ(gpu_result(rows), cpu_result(rows));

  // Nearest codebook entry of 257 random vectors: random data has no ties
  // within the rounding of two summation orders.
  const int64_t n = 257, Cz = 8;
  Both z = both(random_vector(n * Cz, 39)), book = both(random_vector(V * Cz, 40));
  auto cn = cpu_->alloc_i32(n), gn = gpu_->alloc_i32(n);
  extents::nearest_code(*cpu_, z.cpu.data(), n, book.cpu.data(), V, Cz, cn.data());
  extents::nearest_code(*gpu_, z.gpu.data(), n, book.gpu.data(), V, Cz, gn.data());
  std::vector<int32_t> want(n), got(n);
  cpu_->download_i32(cn.data(), n, want.data());
  gpu_->download_i32(gn.data(), n, got.data());
  EXPECT_EQ(got, want);
}

TEST_F(CudaConformance, MemoryStatisticsFollowTheArrays) {
  gpu_->synchronize();
  const DeviceMemoryStats before = gpu_->device_memory();
  ASSERT_TRUE(before.available);
  {
    Array<float> a = gpu_->alloc(size_t{1} << 20);
    const DeviceMemoryStats during = gpu_->device_memory();
    EXPECT_EQ(during.in_use, before.in_use + (uint64_t{4} << 20));
    EXPECT_GE(during.peak, during.in_use);
    EXPECT_GT(during.total, during.in_use);
  }
  EXPECT_EQ(gpu_->device_memory().in_use, before.in_use);
  EXPECT_FALSE(cpu_->device_memory().available);
}

}  // namespace
}  // namespace varps::testing
