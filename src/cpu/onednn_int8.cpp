#include "cpu/onednn_int8.hpp"

#include <omp.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "cpu/int8_panels.hpp"
#include "varps/error.hpp"

#if VARPS_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace varps::cpu {

namespace {

size_t aligned64(size_t bytes) { return (bytes + 63) / 64 * 64; }

}  // namespace

bool OnednnInt8::serves(const CpuIsa& isa) {
#if VARPS_HAVE_ONEDNN
  // oneDNN would use a host's AMX tiles on its own, so a host capped below
  // AMX keeps to the panels.
  return isa.onednn && (isa.amx_int8 || (isa.avx512_vnni && !processor_has_amx_tiles()));
#else
  (void)isa;
  return false;
#endif
}

#if VARPS_HAVE_ONEDNN

using dnnl::memory;
using Tag = memory::format_tag;
using Type = memory::data_type;

struct OnednnInt8::State {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex mutex;
  std::map<std::pair<int64_t, int64_t>, memory::desc> weight_descs;            // (N, K)
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, dnnl::matmul> products;  // (M, N, K, ldc)

  dnnl::matmul::primitive_desc product_desc(int64_t M, int64_t N, int64_t K, int64_t ldc, const memory::desc& w) {
    const memory::desc src({M, K}, Type::u8, Tag::ab);
    const memory::desc dst({M, N}, Type::s32, memory::dims{ldc, 1});
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, dst), engine);
  }

  // The layout oneDNN picks for a 512-row product: it takes the same for
  // every row count (a test checks the kernel it then runs).
  memory::desc weight_desc(int64_t N, int64_t K) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = weight_descs.find({N, K});
    if (it != weight_descs.end()) return it->second;
    const memory::desc any({K, N}, Type::s8, Tag::any);
    const memory::desc chosen = product_desc(512, N, K, N, any).weights_desc();
    weight_descs.emplace(std::pair{N, K}, chosen);
    return chosen;
  }

  // w: weight_desc(N, K).
  dnnl::matmul product(int64_t M, int64_t N, int64_t K, int64_t ldc, const memory::desc& w) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::tuple{M, N, K, ldc};
    auto it = products.find(key);
    if (it != products.end()) return it->second;
    // Serving sees many row counts; the primitives are cheap to make again.
    if (products.size() >= 512) products.clear();
    return products.emplace(key, dnnl::matmul(product_desc(M, N, K, ldc, w))).first->second;
  }
};

OnednnInt8::OnednnInt8(const CpuIsa& isa) : state_(std::make_unique<State>()) {
  if (!serves(isa)) throw Error("oneDNN's int8 products need AVX512_VNNI or AMX-INT8, which CPU " + isa.name() + " lacks");
}

OnednnInt8::~OnednnInt8() = default;

std::string OnednnInt8::name() const {
  const dnnl_version_t* v = dnnl_version();
  const memory::desc w = state_->weight_desc(1024, 1024);
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
         " " + state_->product_desc(512, 1024, 1024, 1024, w).impl_info_str();
}

size_t OnednnInt8::weight_bytes(int64_t N, int64_t K) const {
  return aligned64(state_->weight_desc(N, K).get_size()) + 2 * static_cast<size_t>(N) * 4;
}

void OnednnInt8::pack_weight(const float* w, int64_t N, int64_t K, int64_t ldw, void* weight) const {
  const memory::desc blocked = state_->weight_desc(N, K);
  auto* bytes = static_cast<unsigned char*>(weight);
  float* scales = reinterpret_cast<float*>(bytes + aligned64(blocked.get_size()));
  int32_t* sums = reinterpret_cast<int32_t*>(scales + N);
  // Row n of w quantised is column n of the K×N operand: its "ba" layout.
  std::vector<int8_t> q(static_cast<size_t>(N * K));
#pragma omp parallel for schedule(static) if (N * K > 65536)
  for (int64_t n = 0; n < N; ++n) {
    scales[n] = quantize_weight_row(w + n * ldw, K, q.data() + n * K, &sums[n]);
  }
  memory plain(memory::desc({K, N}, Type::s8, Tag::ba), state_->engine, q.data());
  memory packed(blocked, state_->engine, weight);
  dnnl::stream stream(state_->engine);
  dnnl::reorder(plain, packed).execute(stream, plain, packed);
  stream.wait();
}

void OnednnInt8::multiply(const float* a, int64_t lda, const void* weight, int64_t M, int64_t N, int64_t K,
                          const ProductOutput& out, ScratchPool& scratch) const {
  if (out.accumulate) throw Error("int8 products cannot add to their output");
  if (M <= 0 || N <= 0) return;
  const memory::desc blocked = state_->weight_desc(N, K);
  const auto* bytes = static_cast<const unsigned char*>(weight);
  const float* col_scales = reinterpret_cast<const float*>(bytes + aligned64(blocked.get_size()));
  const int32_t* col_sums = reinterpret_cast<const int32_t*>(col_scales + N);

  // A quantised a row at a time as unsigned bytes (q + 128), then the rows'
  // scales: within int8_product_scratch_floats(M, K).
  const ScratchPool::Lease lease = scratch.take(int8_product_scratch_floats(M, K));
  auto* x = reinterpret_cast<uint8_t*>(lease.data());
  float* row_scales = lease.data() + (M * K + 3) / 4;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M * K > 65536)
  for (int64_t m = 0; m < M; ++m) {
    auto* q = reinterpret_cast<int8_t*>(x + m * K);
    row_scales[m] = quantize_row(a + m * lda, K, q);
    for (int64_t k = 0; k < K; ++k) x[m * K + k] = static_cast<uint8_t>(q[k]) ^ 0x80u;
  }

  // The int32 sums go into C itself (an int32 per float), each row then
  // dequantised in place: dequantize_row reads a value before it writes it.
  const dnnl::matmul product = state_->product(M, N, K, out.ldc, blocked);
  memory src(memory::desc({M, K}, Type::u8, Tag::ab), state_->engine, x);
  memory wts(blocked, state_->engine, const_cast<void*>(weight));
  memory dst(memory::desc({M, N}, Type::s32, memory::dims{out.ldc, 1}), state_->engine, out.c);
  dnnl::stream stream(state_->engine);
  product.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wts}, {DNNL_ARG_DST, dst}});
  stream.wait();
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M * N > 65536)
  for (int64_t m = 0; m < M; ++m) {
    float* c = out.c + m * out.ldc;
    dequantize_row(reinterpret_cast<const int32_t*>(c), static_cast<int>(N), row_scales[m], col_scales, col_sums,
                   out.column_bias, out.gelu, c);
  }
}

#else  // a build without oneDNN: serves() is false, so nothing below is reached.

struct OnednnInt8::State {};

OnednnInt8::OnednnInt8(const CpuIsa& isa) {
  throw Error("this build of varps has no oneDNN (CPU " + isa.name() + ")");
}
OnednnInt8::~OnednnInt8() = default;
std::string OnednnInt8::name() const { return "no oneDNN"; }
size_t OnednnInt8::weight_bytes(int64_t, int64_t) const { return 0; }
void OnednnInt8::pack_weight(const float*, int64_t, int64_t, int64_t, void*) const {}
void OnednnInt8::multiply(const float*, int64_t, const void*, int64_t, int64_t, int64_t, const ProductOutput&,
                          ScratchPool&) const {}

#endif

}  // namespace varps::cpu
