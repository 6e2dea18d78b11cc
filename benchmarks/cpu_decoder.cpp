// The whole VQVAE decoder of the released tokenizer (random weights, the
// d16 preset's), one image: a 16×16 latent to a 256×256 image, on the CPU
// backend in each precision. It measures the decoder alone, without the
// transformer's time around it that a generation's stage times carry.
//
//   ./build/benchmarks/varps_microbench --benchmark_filter=BM_Decode
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "varps/pipeline.hpp"

namespace varps {
namespace {

void BM_Decode(benchmark::State& state, const char* precision) {
  PipelineOptions opts;
  opts.precision = precision;
  opts.vae_encoder = false;
  const Pipeline pipeline = Pipeline::from_preset("d16", opts);
  const int64_t C = 32, side = 16;
  std::vector<float> f(static_cast<size_t>(C * side * side));
  for (size_t i = 0; i < f.size(); ++i) f[i] = std::sin(0.37f * static_cast<float>(i));
  const Tensor f_hat({1, C, side, side}, f);
  for (auto _ : state) benchmark::DoNotOptimize(pipeline.decode(f_hat));
}
BENCHMARK_CAPTURE(BM_Decode, fp32, "fp32")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, bf16, "bf16")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, int8, "int8")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace varps
