// The CUDA backend's transformer kernels (transformer_kernels.cuh) run on
// the CPU through kernel_emulator.hpp, launched as cuda_transformer.cu
// launches them, and are compared with the CPU backend's ops: AdaLN, the
// fused residual + AdaLN (with its output over its delta), the KV-cache
// append, the SIMT attention of every head-dim variant and cache type, and
// the ParScale aggregation. The emulation uses the host's expf and sqrt, so
// it checks each kernel's logic, not its last bit on a device.
#include <gtest/gtest.h>

#ifdef VARPS_HAVE_CUDA
// First: the device built-ins of the kernel header below.
#include "cuda/kernel_emulator.hpp"
//
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cuda/attention_problem.hpp"
#include "cuda/normalised_error.hpp"
#include "cuda/rounded_operands.hpp"
#include "cuda/transformer_kernels.cuh"
#endif

namespace varps::testing {
namespace {

#ifdef VARPS_HAVE_CUDA

using emulator::launch;
namespace tk = cuda::transformer;

TEST(EmulatedTransformerKernels, AdaLn) {
  auto cpu = make_cpu_backend(1);
  for (const int64_t C : {int64_t{1}, int64_t{96}, int64_t{1000}}) {
    SCOPED_TRACE("C = " + std::to_string(C));
    const int64_t rows = 2, tokens = 3, stride = 6 * C;
    const auto x = random_vector(rows * tokens * C, 31, 3.0f), mod = random_vector(rows * stride, 32);
    std::vector<float> ref(x.size()), out(x.size(), NAN);
    extents::adaln_modulate(*cpu, x.data(), rows, tokens, C, mod.data() + C, mod.data(), stride, 1e-6f, ref.data());
    launch(tk::adaln_kernel, dim3(static_cast<unsigned>(rows * tokens)), dim3(tk::kThreads), 0, x.data(), tokens, C,
           mod.data() + C, mod.data(), stride, 1e-6f, out.data());
    EXPECT_CLOSE(out, ref, fp32_tol(C));
  }
}

// The block calls it with its output over its delta; x is updated in place.
TEST(EmulatedTransformerKernels, ResidualThenAdaLnOverItsDelta) {
  auto cpu = make_cpu_backend(1);
  for (const int64_t C : {int64_t{40}, int64_t{257}, int64_t{1024}}) {
    SCOPED_TRACE("C = " + std::to_string(C));
    const int64_t rows = 3, tokens = 2, g_stride = 6 * C, m_stride = 2 * C;
    const auto x0 = random_vector(rows * tokens * C, 33), delta = random_vector(rows * tokens * C, 34),
               gamma = random_vector(rows * g_stride, 35), mod = random_vector(rows * m_stride, 36);
    std::vector<float> x_ref = x0, out_ref = delta, x = x0, out = delta;
    extents::add_scaled_rows_then_adaln(*cpu, x_ref.data(), out_ref.data(), gamma.data() + 2 * C, g_stride, rows, tokens, C,
                                    mod.data() + C, mod.data(), m_stride, 1e-6f, out_ref.data());
    launch(tk::residual_adaln_kernel, dim3(static_cast<unsigned>(rows * tokens)), dim3(tk::kThreads), 0, x.data(),
           out.data(), gamma.data() + 2 * C, g_stride, tokens, C, mod.data() + C, mod.data(), m_stride, 1e-6f,
           out.data());
    EXPECT_EQ(x, x_ref) << "the residual is one rounding per element, as on the CPU";
    EXPECT_CLOSE(out, out_ref, fp32_tol(C));
  }
}

template <typename CacheT>
void check_split_qkv(int64_t hd, bool l2norm) {
  SCOPED_TRACE("hd = " + std::to_string(hd) + (l2norm ? ", l2norm" : ""));
  auto cpu = make_cpu_backend(1);
  const int64_t rows = 2, tokens = 5, H = 3, capacity = 12, pos = 4, C = H * hd;
  const auto qkv = random_vector(rows * tokens * 3 * C, 41), q_scale = random_vector(H, 42, 2.0f);
  const auto cache0 = random_vector(rows * H * capacity * hd, 43);
  // The reference appends the values the kernel's cache type can hold.
  std::vector<float> q_ref(rows * H * tokens * hd), k_ref = cache0, v_ref = cache0;
  extents::split_qkv_to_cache(*cpu, qkv.data(), rows, tokens, H, hd, l2norm, q_scale.data(), q_ref.data(), k_ref.data(),
                          v_ref.data(), capacity, pos);
  k_ref = rounded<CacheT>(k_ref);
  v_ref = rounded<CacheT>(v_ref);

  tk::HeadScales scales{};
  for (int64_t h = 0; h < H; ++h) scales.v[h] = q_scale[h];
  std::vector<float> q(q_ref.size(), NAN);
  std::vector<CacheT> k = to_precision<CacheT>(cache0), v = k;
  const size_t threads = static_cast<size_t>(rows * tokens * H) * 32;
  launch(tk::split_qkv_kernel<CacheT>, dim3(cuda::grid_for(threads, tk::kThreads)), dim3(tk::kThreads), 0, qkv.data(),
         rows, tokens, H, hd, l2norm, scales, q.data(), k.data(), v.data(), capacity, pos);
  EXPECT_CLOSE(q, q_ref, fp32_tol(hd));
  // Keys and values: one rounding each (after the norm's division), and
  // every entry outside the appended positions untouched.
  std::vector<float> k_got, v_got;
  for (const CacheT& e : k) k_got.push_back(static_cast<float>(e));
  for (const CacheT& e : v) v_got.push_back(static_cast<float>(e));
  EXPECT_CLOSE(k_got, k_ref, fp32_tol(hd) + (std::is_same_v<CacheT, float> ? 0.0 : kBf16Tol / 8));
  EXPECT_EQ(v_got, v_ref);
}

TEST(EmulatedTransformerKernels, SplitQkvToCache) {
  for (const bool l2norm : {false, true}) {
    check_split_qkv<float>(64, l2norm);
    check_split_qkv<float>(40, l2norm);
    check_split_qkv<__nv_bfloat16>(64, l2norm);
  }
}

template <typename CacheT>
void check_attention(const AttentionCase& c, double tol) {
  SCOPED_TRACE(c.what);
  // The kernel widens the cache to float32 and reads queries and prefix as they are.
  const auto p = attention_problem<CacheT>(c, false);
  std::vector<float> out(p.ref.size(), NAN);
  tk::with_attention_variant(c.hd, [&](auto dpl, auto exact) {
    launch(tk::attention_kernel<decltype(dpl)::value, decltype(exact)::value, CacheT>,
           tk::attention_grid(c.rows, c.H, c.tokens), dim3(tk::kWarps * 32), tk::attention_shared_bytes(c.hd),
           p.q.data(), p.k.data(), p.v.data(), c.H, c.tokens, static_cast<int>(c.hd), c.capacity, c.len, p.scale,
           p.prefix_k(), p.prefix_v(), c.prefix_tokens, c.rows_per_stream, out.data());
  });
  EXPECT_CLOSE(out, p.ref, tol);
}

// Every head-dim variant (exact 64 and 128; bounded ≤ 32, ≤ 64, ≤ 128,
// ≤ 256), one query, query counts that leave warps idle, key counts that
// end inside a 32-key tile, and a prefix shared by a stream's rows.
const AttentionCase kAttentionCases[] = {
    {"hd 64, one query over one key", 1, 2, 1, 64, 4, 1},
    {"hd 64, 9 queries over 40 keys", 2, 2, 9, 64, 48, 40},
    {"hd 128 with a prefix", 2, 1, 3, 128, 8, 5, 7, 1},
    {"hd 24", 1, 3, 4, 24, 40, 33},
    {"hd 40 with a prefix shared by two rows", 4, 2, 2, 40, 16, 16, 3, 2},
    {"hd 96", 1, 1, 5, 96, 20, 20},
    {"hd 200", 1, 1, 2, 200, 35, 35},
};

TEST(EmulatedTransformerKernels, AttentionFloat32Cache) {
  for (const AttentionCase& c : kAttentionCases) check_attention<float>(c, fp32_tol(c.prefix_tokens + c.len));
}

// A half-precision cache takes this kernel for scales of under 16 queries
// and head dims other than 64; the prefix stays float32.
TEST(EmulatedTransformerKernels, AttentionBf16Cache) {
  for (const AttentionCase& c : kAttentionCases) check_attention<__nv_bfloat16>(c, fp32_tol(c.prefix_tokens + c.len));
}

TEST(EmulatedTransformerKernels, StreamAggregation) {
  auto cpu = make_cpu_backend(1);
  const int64_t P = 3, M = 7, C = 33;
  const auto h = random_vector(P * M * C, 61), logits = random_vector(M * P, 62);
  std::vector<float> z_ref(P * M * C), z(z_ref.size(), NAN);
  extents::interleave_streams(*cpu, h.data(), P, M, C, z_ref.data());
  const size_t n = z.size();
  launch(tk::interleave_kernel, dim3(cuda::grid_for(n, tk::kThreads)), dim3(tk::kThreads), 0, h.data(), P, M, C, n,
         z.data());
  EXPECT_EQ(z, z_ref);

  const double smooth = 0.1;
  std::vector<float> w_ref = logits, w = logits;
  extents::stream_weights(*cpu, w_ref.data(), M, P, smooth);
  launch(tk::stream_weights_kernel, dim3(cuda::grid_for(M, tk::kThreads)), dim3(tk::kThreads), 0, w.data(), M, P,
         static_cast<float>(1.0 - smooth), static_cast<float>(smooth / static_cast<double>(P)));
  EXPECT_CLOSE(w, w_ref, fp32_tol(P));

  std::vector<float> sum_ref(M * C), sum(sum_ref.size(), NAN);
  extents::weighted_stream_sum(*cpu, h.data(), w_ref.data(), P, M, C, sum_ref.data());
  launch(tk::weighted_stream_sum_kernel, dim3(cuda::grid_for(sum.size(), tk::kThreads)), dim3(tk::kThreads), 0,
         h.data(), w_ref.data(), P, M, C, sum.size(), sum.data());
  EXPECT_EQ(sum, sum_ref) << "summed in stream order with one rounding per step, as on the CPU";
}

#else
TEST(EmulatedTransformerKernels, NeedsTheCudaBackend) {
  GTEST_SKIP() << "built without the CUDA backend (VARPS_CUDA=OFF)";
}
#endif

}  // namespace
}  // namespace varps::testing
