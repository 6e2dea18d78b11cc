// The CPU backend's matrix products and convolutions at the shapes a d16
// generation runs, beside OpenBLAS's SGEMM on the same operands, and the
// machine's ceilings they are measured against: the FMA rate on registers
// (BM_PeakFma), the memory read rate (BM_MemoryRead), SGEMM's rate on a
// large product, the rate at which a 2-row product streams its weights.
//
//   ./build/benchmarks/varps_microbench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   ./build/benchmarks/varps_microbench --benchmark_filter='Peak|Memory'    # the ceilings alone
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "backend.hpp"
#include "backend_extents.hpp"
#include "cpu/cpu_backend.hpp"
#include "cpu/cpu_isa.hpp"
#include "varps/tensor.hpp"

namespace varps {
namespace {

std::vector<float> wave(size_t n, float step, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * std::sin(static_cast<float>(i) * step);
  return v;
}

int threads() { return omp_get_max_threads(); }

void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

// Enough copies of the weight that a pass reads it from memory, not cache.
int64_t copies_beyond_cache(int64_t bytes) { return std::max<int64_t>(1, (int64_t{96} << 20) / std::max<int64_t>(bytes, 1) + 1); }

// y[M, N] = x[M, K]·wᵀ + b through the backend (weights packed at upload).
void BM_Linear(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  auto be = make_cpu_backend(threads());
  const int64_t copies = copies_beyond_cache(N * K * 4);
  std::vector<Array<MatrixElement>> w;
  for (int64_t c = 0; c < copies; ++c) w.push_back(be->upload_matrix(Tensor({N, K}, wave(N * K, 0.11f + c, 0.01f))));
  auto x = be->upload(Tensor({M, K}, wave(M * K, 0.37f, 1.0f)));
  auto b = be->upload(Tensor({N}, wave(N, 0.5f, 0.1f)));
  auto y = be->alloc(static_cast<size_t>(M * N));
  int64_t i = 0;
  for (auto _ : state) extents::linear(*be, x.data(), M, K, w[i++ % copies].data(), b.data(), N, y.data());
  set_flops(state, 2.0 * M * N * K);
  state.counters["weights B/s"] =
      benchmark::Counter(4.0 * N * K, benchmark::Counter::kIsIterationInvariantRate);
}

// The same with reduced-precision weights and activations (--precision
// bf16 or int8), weights of `weight_bytes` each; int8 through oneDNN where
// it serves (the backend's choice), or on the int8 panels (`panels`).
void BM_ReducedLinear(benchmark::State& state, const char* precision, double weight_bytes, bool panels = false) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  cpu::CpuIsa isa = cpu::cpu_isa_from_environment();
  if (panels) isa.onednn = false;
  auto be = std::make_unique<CpuBackend>(threads(), precision, isa);
  const int64_t copies = copies_beyond_cache(static_cast<int64_t>(weight_bytes * N * K));
  std::vector<Array<MatrixElement>> w;
  for (int64_t c = 0; c < copies; ++c) w.push_back(be->upload_matrix(Tensor({N, K}, wave(N * K, 0.11f + c, 0.01f))));
  auto x = be->upload(Tensor({M, K}, wave(M * K, 0.37f, 1.0f)));
  auto b = be->upload(Tensor({N}, wave(N, 0.5f, 0.1f)));
  auto y = be->alloc(static_cast<size_t>(M * N));
  int64_t i = 0;
  for (auto _ : state) extents::linear(*be, x.data(), M, K, w[i++ % copies].data(), b.data(), N, y.data());
  set_flops(state, 2.0 * M * N * K);
  state.counters["weights B/s"] =
      benchmark::Counter(weight_bytes * N * K, benchmark::Counter::kIsIterationInvariantRate);
}

// The same product through OpenBLAS, the bias preset as the backend used to.
void BM_OpenBlasLinear(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  openblas_set_num_threads(threads());
  const int64_t copies = copies_beyond_cache(N * K * 4);
  std::vector<std::vector<float>> w;
  for (int64_t c = 0; c < copies; ++c) w.push_back(wave(N * K, 0.11f + c, 0.01f));
  const std::vector<float> x = wave(M * K, 0.37f, 1.0f), b = wave(N, 0.5f, 0.1f);
  std::vector<float> y(M * N);
  int64_t i = 0;
  for (auto _ : state) {
    for (int64_t m = 0; m < M; ++m) std::copy(b.begin(), b.end(), y.begin() + m * N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x.data(), K, w[i++ % copies].data(), K, 1.0f,
                y.data(), N);
  }
  set_flops(state, 2.0 * M * N * K);
  state.counters["weights B/s"] =
      benchmark::Counter(4.0 * N * K, benchmark::Counter::kIsIterationInvariantRate);
}

// Rows at the transformer's scales (2 rows per guided image: 1×1 … 16×16
// tokens), then a 4-image batch; the d16 block's products.
void TransformerShapes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {2, 50, 200, 512, 2048})
    for (auto [n, k] : {std::pair<int64_t, int64_t>{3072, 1024}, {1024, 1024}, {4096, 1024}, {1024, 4096}})
      b->Args({rows, n, k});
}

BENCHMARK(BM_Linear)->Apply(TransformerShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OpenBlasLinear)->Apply(TransformerShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ReducedLinear, bf16, "bf16", 2.0)->Apply(TransformerShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ReducedLinear, int8, "int8", 1.0)->Apply(TransformerShapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ReducedLinear, int8_panels, "int8", 1.0, true)
    ->Apply(TransformerShapes)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// One image's 3×3 convolution, C → C channels on a side×side map.
void BM_Conv3x3(benchmark::State& state) {
  const int64_t C = state.range(0), side = state.range(1);
  auto be = make_cpu_backend(threads());
  auto w = be->upload_matrix(Tensor({C, C, 3, 3}, wave(C * C * 9, 0.13f, 0.02f)));
  auto b = be->upload(Tensor({C}, wave(C, 0.7f, 0.1f)));
  auto x = be->upload(Tensor({C * side * side}, wave(C * side * side, 0.31f, 1.0f)));
  auto y = be->alloc(static_cast<size_t>(C * side * side));
  for (auto _ : state) extents::conv2d(*be, x.data(), 1, C, side, side, w.data(), b.data(), C, 3, 1, 1, 1, 1, 1, y.data());
  set_flops(state, 2.0 * C * C * 9 * side * side);
}

// The decoder's 3×3 convolutions: widths and sides of the released VQVAE.
BENCHMARK(BM_Conv3x3)
    ->Args({640, 16})
    ->Args({640, 32})
    ->Args({320, 64})
    ->Args({320, 128})
    ->Args({160, 128})
    ->Args({160, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// One block's attention at a scale of d16 (16 heads of 64; l queries per
// row over the cached tokens and their own): rows = 2 per guided image.
// With precision bf16 (and int8) the attention's operands are bf16.
void BM_Attention(benchmark::State& state, const char* precision) {
  const int64_t rows = state.range(0), l = state.range(1), len = state.range(2), H = 16, hd = 64, capacity = 680;
  auto be = make_cpu_backend(threads(), precision);
  auto q = be->upload(Tensor({rows * H * l * hd}, wave(rows * H * l * hd, 0.3f, 0.5f)));
  auto k = be->upload(Tensor({rows * H * capacity * hd}, wave(rows * H * capacity * hd, 0.7f, 0.5f)));
  auto v = be->upload(Tensor({rows * H * capacity * hd}, wave(rows * H * capacity * hd, 0.9f, 0.5f)));
  auto out = be->alloc(static_cast<size_t>(rows * l * H * hd));
  for (auto _ : state)
    extents::attention(*be, q.data(), k.data(), v.data(), rows, H, l, hd, capacity, len, 1.0f, KvPrefix{}, out.data());
  set_flops(state, 4.0 * rows * H * l * len * hd);
}
// rows, queries per row, keys: the last scale of one and of four guided
// images, and a middle one.
void AttentionShapes(benchmark::internal::Benchmark* b) {
  b->Args({2, 256, 680})->Args({2, 100, 255})->Args({8, 256, 680})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK_CAPTURE(BM_Attention, fp32, "fp32")->Apply(AttentionShapes);
BENCHMARK_CAPTURE(BM_Attention, bf16, "bf16")->Apply(AttentionShapes);

// The machine's compute ceiling: AVX2 FMAs on registers only, 12
// independent chains per thread (enough to hide the FMA latency), on every
// thread.
void BM_PeakFma(benchmark::State& state) {
  constexpr int64_t kSteps = 1 << 22;
  for (auto _ : state) {
    float sink = 0.0f;
#pragma omp parallel reduction(+ : sink)
    {
      __m256 acc[12];
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i + omp_get_thread_num()));
      const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-4f);
      for (int64_t k = 0; k < kSteps; ++k) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
      }
      __m256 s = acc[0];
      for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
      float lanes[8];
      _mm256_storeu_ps(lanes, s);
      sink += lanes[0];
    }
    benchmark::DoNotOptimize(sink);
  }
  set_flops(state, 2.0 * 8 * 12 * kSteps * threads());
}
BENCHMARK(BM_PeakFma)->UseRealTime()->Unit(benchmark::kMillisecond);

// The bf16 compute ceiling where the processor has AVX512_BF16: vdpbf16ps
// on registers, 12 independent chains per thread (each instruction: 16
// lanes, two products each).
__attribute__((target("avx512f,avx512bf16"))) float bf16_chains(int64_t steps, int seed) {
  __m512 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i + seed));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x38d138d1);
  for (int64_t k = 0; k < steps; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  return lanes[0];
}

void BM_PeakBf16(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512bf16")) {
    state.SkipWithError("this processor has no AVX512_BF16");
    return;
  }
  constexpr int64_t kSteps = 1 << 22;
  for (auto _ : state) {
    float sink = 0.0f;
#pragma omp parallel reduction(+ : sink)
    sink += bf16_chains(kSteps, omp_get_thread_num());
    benchmark::DoNotOptimize(sink);
  }
  set_flops(state, 2.0 * 32 * 12 * kSteps * threads());
}
BENCHMARK(BM_PeakBf16)->UseRealTime()->Unit(benchmark::kMillisecond);

// The int8 compute ceiling where the processor has AVX512_VNNI: vpdpbusd on
// registers, 12 independent chains per thread (each instruction: 16 lanes,
// four u8·s8 products each).
__attribute__((target("avx512f,avx512vnni"))) int32_t vnni_chains(int64_t steps, int seed) {
  __m512i acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i + seed);
  const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x01ff01ff);
  for (int64_t k = 0; k < steps; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  }
  __m512i s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_epi32(s, acc[i]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, s);
  return lanes[0];
}

void BM_PeakInt8(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512vnni")) {
    state.SkipWithError("this processor has no AVX512_VNNI");
    return;
  }
  constexpr int64_t kSteps = 1 << 22;
  for (auto _ : state) {
    int32_t sink = 0;
#pragma omp parallel reduction(+ : sink)
    sink += vnni_chains(kSteps, omp_get_thread_num());
    benchmark::DoNotOptimize(sink);
  }
  state.counters["OP/s"] =
      benchmark::Counter(2.0 * 64 * 12 * kSteps * threads(), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PeakInt8)->UseRealTime()->Unit(benchmark::kMillisecond);

// The machine's memory ceiling: every thread summing its share of 512 MiB,
// far beyond the caches.
void BM_MemoryRead(benchmark::State& state) {
  const size_t n = size_t{128} << 20;
  std::vector<float> data(n, 1.0f);
  for (auto _ : state) {
    float total = 0.0f;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t chunk = 0; chunk < n; chunk += 4096) {
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
      for (size_t i = chunk; i < chunk + 4096; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(data.data() + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(data.data() + i + 8));
      }
      float lanes[8];
      _mm256_storeu_ps(lanes, _mm256_add_ps(s0, s1));
      total += lanes[0];
    }
    benchmark::DoNotOptimize(total);
  }
  state.counters["B/s"] = benchmark::Counter(4.0 * n, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_MemoryRead)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace varps

BENCHMARK_MAIN();
