// Memory and elementwise ops of the CPU backend.
#include <cblas.h>
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cpu/bf16_panels.hpp"
#include "cpu/cpu_backend.hpp"
#include "cpu/int8_panels.hpp"
#include "cpu/packed_matrices.hpp"
#include "cpu/panel_gemm.hpp"
#include "cpu/vector_math.hpp"
#include "cpu/winograd.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

size_t padded_bytes(size_t n, size_t elem) { return std::max<size_t>(64, ((n * elem + 63) / 64) * 64); }

}  // namespace

// Freed buffers are kept by exact size and handed out again: a generation
// allocates the same activation sizes every time, and fresh pages from the
// kernel cost a page fault and a clear each.
struct CpuBufferPool {
  std::mutex mutex;
  std::multimap<size_t, void*> free;
  size_t cached_bytes = 0;
  static constexpr size_t kMaxCachedBytes = size_t{4} << 30;

  // Bytes of the arrays handed out and not yet returned, and their peak.
  uint64_t in_use = 0, peak = 0;

  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = free.find(bytes);
      if (it != free.end()) {
        void* p = it->second;
        free.erase(it);
        cached_bytes -= bytes;
        note_taken(bytes);
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
    std::lock_guard<std::mutex> lock(mutex);
    note_taken(bytes);
    return p;
  }
  void note_taken(size_t bytes) {
    in_use += bytes;
    peak = std::max(peak, in_use);
  }
  void put(size_t bytes, void* p) {
    std::lock_guard<std::mutex> lock(mutex);
    in_use -= bytes;
    if (cached_bytes + bytes > kMaxCachedBytes) {
      std::free(p);
      return;
    }
    free.emplace(bytes, p);
    cached_bytes += bytes;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& [bytes, p] : free) std::free(p);
    free.clear();
    cached_bytes = 0;
  }
  ~CpuBufferPool() { clear(); }
};

struct RecordedStepThreads {
  std::mutex mutex;
  std::vector<std::thread::id> inside;
  bool contains(std::thread::id id) {
    std::lock_guard<std::mutex> lock(mutex);
    return std::find(inside.begin(), inside.end(), id) != inside.end();
  }
};

namespace {

// A slot whose step has run once: its later runs are held to the rules.
struct CpuStepRan final : StepRecording {};

}  // namespace

StepRun CpuBackend::run_recorded(std::unique_ptr<StepRecording>& slot, const std::function<void()>& step) {
  if (!slot) {
    step();
    slot = std::make_unique<CpuStepRan>();
    return StepRun::AsIs;
  }
  RecordedStepThreads& threads = *recorded_steps_;
  const std::thread::id me = std::this_thread::get_id();
  {
    std::lock_guard<std::mutex> lock(threads.mutex);
    threads.inside.push_back(me);
  }
  struct Leave {
    RecordedStepThreads& threads;
    std::thread::id me;
    ~Leave() {
      std::lock_guard<std::mutex> lock(threads.mutex);
      threads.inside.erase(std::find(threads.inside.begin(), threads.inside.end(), me));
    }
  } leave{threads, me};
  step();
  return StepRun::AsIs;
}

void CpuBackend::check_outside_recorded_step(const char* what) const {
  if (recorded_steps_->contains(std::this_thread::get_id()))
    throw Error(std::string("a recorded step called ") + what +
                " after its first run: a step may not allocate, transfer to or from the host, or synchronise "
                "(a CUDA graph could not hold it)");
}

template <typename T>
Array<T> CpuBackend::pooled(size_t n) {
  check_outside_recorded_step("an allocation");
  // 64-byte alignment keeps AVX loads and OpenBLAS packing on cache lines.
  const size_t bytes = padded_bytes(n, sizeof(T));
  std::shared_ptr<CpuBufferPool> pool = pool_;
  T* p = static_cast<T*>(pool->get(bytes));
  return Array<T>(std::shared_ptr<T>(p, [pool, bytes](T* q) { pool->put(bytes, q); }), n);
}

CpuBackend::CpuBackend(int threads, const std::string& precision, const cpu::CpuIsa& isa)
    : threads_(threads > 0 ? threads : omp_get_num_procs()),
      products_(precision == "bf16"   ? cpu::PackedMatrix::Element::Bf16
                : precision == "int8" ? cpu::PackedMatrix::Element::Int8
                                      : cpu::PackedMatrix::Element::F32),
      isa_(isa),
      pool_(std::make_shared<CpuBufferPool>()),
      packed_(std::make_shared<cpu::PackedMatrices>()),
      scratch_(std::make_unique<cpu::ScratchPool>()),
      recorded_steps_(std::make_unique<RecordedStepThreads>()) {
  if (precision != "fp32" && precision != "bf16" && precision != "int8")
    throw Error("the CPU backend computes in fp32, bf16 or int8, not '" + precision + "'");
  if (products_ == cpu::PackedMatrix::Element::Int8 && cpu::OnednnInt8::serves(isa_))
    onednn_int8_ = std::make_unique<cpu::OnednnInt8>(isa_);
  // One thread count for both pools; OpenBLAS (OpenMP build) runs
  // single-threaded when called inside one of our parallel regions.
  omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
}

CpuBackend::~CpuBackend() = default;

std::string CpuBackend::info() const {
  std::string s;
  const std::string bf16_tile = isa_.avx512_bf16 ? "AVX512_BF16 vdpbf16ps" : "float32 FMA";
  if (products_ == cpu::PackedMatrix::Element::Bf16)
    s = "bf16 operands in x·wᵀ products, attention and large direct convolutions (" + bf16_tile +
        ", float32 sums), ";
  if (products_ == cpu::PackedMatrix::Element::Int8)
    s = std::string("int8 weights (per output channel) and activations (per row) in x·wᵀ products (") +
        (onednn_int8_        ? onednn_int8_->name()
         : isa_.avx512_vnni ? "AVX512_VNNI vpdpbusd"
         : isa_.avx2_fma    ? "AVX2 vpmaddubsw"
                            : "portable") +
        ", int32 sums), bf16 operands in attention and large direct convolutions (" + bf16_tile + "), ";
  s += "float32 " + std::string(isa_.avx512 ? "AVX-512" : isa_.avx2_fma ? "AVX2" : "portable") +
       " products and Winograd 3x3 convolutions, CPU " + isa_.name() + ", ";
  s += openblas_get_config();
  s += ", kernels ";
  s += openblas_get_corename();
  return s;
}

void CpuBackend::release_cached() {
  pool_->clear();
  scratch_->clear();
  // Hand freed heap pages back too, so the next run's peak is its own.
  malloc_trim(0);
}

DeviceMemoryStats CpuBackend::device_memory() const {
  DeviceMemoryStats m;  // not available: the process's memory is its RSS
  std::lock_guard<std::mutex> lock(pool_->mutex);
  m.in_use = pool_->in_use;
  m.peak = pool_->peak;
  return m;
}

void CpuBackend::reset_peak_memory() {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  pool_->peak = pool_->in_use;
}

std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& precision) {
  return std::make_unique<CpuBackend>(threads, precision, cpu::cpu_isa_from_environment());
}

namespace {

// memcpy and memset with n = 0 may be handed null pointers (an empty tensor's
// data, an empty pooled array), which the C library does not allow.
void copy_bytes(void* dst, const void* src, size_t n) {
  if (n > 0) std::memcpy(dst, src, n);
}

}  // namespace

Array<float> CpuBackend::alloc(size_t n) { return pooled<float>(n); }
uint64_t CpuBackend::array_bytes(uint64_t elements, size_t element_bytes) const {
  return padded_bytes(elements, element_bytes);
}
Array<float> CpuBackend::zeros(size_t n) {
  auto a = pooled<float>(n);
  if (n > 0) std::memset(a.data(), 0, n * sizeof(float));
  return a;
}
Array<int32_t> CpuBackend::alloc_i32(size_t n) { return pooled<int32_t>(n); }
Array<float> CpuBackend::upload(const Tensor& t) {
  auto a = pooled<float>(t.data.size());
  copy_bytes(a.data(), t.data.data(), t.data.size() * sizeof(float));
  return a;
}
namespace {

// Convolutions whose weights have at least this many elements and that the
// Winograd path never takes (a 3×3 of 640 channels, a 1×1 ...) run with
// bf16 operands in the reduced precisions: there they cost most of their
// time (the released decoder's 16×16 and 32×32 levels), and a direct sum
// in bf16 has the error of PyTorch's bf16 autocast. The others stay
// float32: Winograd's transforms amplify bf16's rounding tenfold
// (docs/tolerances.md), and the small ones (the residual path's Phi) are
// summed over every scale.
constexpr int64_t kBf16ConvolutionWeights = int64_t{1} << 20;

// The layout upload_matrix() keeps a weight of this shape in, if any: the
// B panels of x·wᵀ for [N, K] (of `products` elements), the A panels of a
// convolution for [Co, Ci, k, k]: bf16 in the form `isa`'s tile takes for
// the large convolutions above in the reduced precisions, else float32.
std::optional<cpu::PackedMatrix> packed_layout(const Shape& shape, cpu::PackedMatrix::Element products) {
  if ((shape.size() != 2 && shape.size() != 4) || numel(shape) == 0) return std::nullopt;
  if (shape.size() == 2) return cpu::PackedMatrix{cpu::PackedMatrix::Role::B, shape[0], shape[1], products};
  const bool bf16 = products != cpu::PackedMatrix::Element::F32 && shape[2] == shape[3] &&
                    numel(shape) >= kBf16ConvolutionWeights &&
                    !cpu::winograd_takes_weight(shape[1], shape[0], static_cast<int>(shape[2]));
  return cpu::PackedMatrix{cpu::PackedMatrix::Role::A, shape[0], numel(shape) / shape[0],
                           bf16 ? cpu::PackedMatrix::Element::Bf16 : cpu::PackedMatrix::Element::F32};
}

}  // namespace

// 4-byte words: floats, bf16 pairs, or int8 quads (or oneDNN's layout) with
// their scales and sums.
size_t CpuBackend::packed_words(const cpu::PackedMatrix& m) const {
  switch (m.element) {
    case cpu::PackedMatrix::Element::Bf16:
      return m.role == cpu::PackedMatrix::Role::A ? cpu::bf16_a_panel_bytes(isa_, m.rows, m.depth) / 4
                                                  : cpu::bf16_b_panel_words(m.rows, m.depth);
    case cpu::PackedMatrix::Element::Int8:
      return ((onednn_int8_ ? onednn_int8_->weight_bytes(m.rows, m.depth) : cpu::int8_b_panel_bytes(m.rows, m.depth)) +
              3) / 4;
    case cpu::PackedMatrix::Element::F32: break;
  }
  return m.role == cpu::PackedMatrix::Role::B ? cpu::b_panel_floats(m.rows, m.depth)
                                              : cpu::a_panel_floats(m.rows, m.depth);
}

Array<MatrixElement> CpuBackend::upload_matrix(const Tensor& t) {
  const std::optional<cpu::PackedMatrix> layout = packed_layout(t.shape, products_);
  if (!layout) return upload(t).reinterpret_as<MatrixElement>(t.data.size());
  check_outside_recorded_step("an allocation");
  const size_t n = packed_words(*layout), bytes = padded_bytes(n, sizeof(float));
  float* p = static_cast<float*>(pool_->get(bytes));
  if (layout->element == cpu::PackedMatrix::Element::Bf16 && layout->role == cpu::PackedMatrix::Role::A)
    cpu::pack_bf16_a_panels_for(isa_, t.data.data(), layout->rows, layout->depth, layout->depth, p);
  else if (layout->element == cpu::PackedMatrix::Element::Bf16)
    cpu::pack_bf16_b_panels_from_rows(t.data.data(), layout->rows, layout->depth, layout->depth,
                                      reinterpret_cast<uint32_t*>(p));
  else if (layout->element == cpu::PackedMatrix::Element::Int8 && onednn_int8_)
    onednn_int8_->pack_weight(t.data.data(), layout->rows, layout->depth, layout->depth, p);
  else if (layout->element == cpu::PackedMatrix::Element::Int8)
    cpu::pack_int8_b_panels_from_rows(t.data.data(), layout->rows, layout->depth, layout->depth, p);
  else if (layout->role == cpu::PackedMatrix::Role::B)
    cpu::pack_b_panels_from_rows(t.data.data(), layout->rows, layout->depth, layout->depth, p);
  else
    cpu::pack_a_panels(t.data.data(), layout->rows, layout->depth, layout->depth, p);
  packed_->add(p, *layout);
  std::shared_ptr<CpuBufferPool> pool = pool_;
  std::shared_ptr<cpu::PackedMatrices> packed = packed_;
  const Array<float> panels(std::shared_ptr<float>(p,
                                                   [pool, packed, bytes](float* q) {
                                                     packed->remove(q);
                                                     pool->put(bytes, q);
                                                   }),
                            n);
  // The handle counts the weight's elements (a view of it is checked
  // against them), however many words its panels take.
  return panels.reinterpret_as<MatrixElement>(std::max(n, t.data.size()));
}

size_t CpuBackend::matrix_element_bytes() const {
  switch (products_) {
    case cpu::PackedMatrix::Element::Bf16: return 2;
    case cpu::PackedMatrix::Element::Int8: return 1;
    case cpu::PackedMatrix::Element::F32: break;
  }
  return sizeof(float);
}

uint64_t CpuBackend::matrix_bytes(const Shape& shape) const {
  const std::optional<cpu::PackedMatrix> layout = packed_layout(shape, products_);
  return array_bytes(layout ? packed_words(*layout) : static_cast<size_t>(numel(shape)), sizeof(float));
}

Array<SampleJob> CpuBackend::alloc_sample_jobs(size_t n) { return pooled<SampleJob>(n); }
void CpuBackend::upload_sample_jobs(const SampleJob* host, size_t n, SampleJob* dst) {
  check_outside_recorded_step("upload_sample_jobs");
  std::copy(host, host + n, dst);
}
void CpuBackend::upload_into_i32(const int32_t* host, size_t n, int32_t* dst) {
  check_outside_recorded_step("upload_into_i32");
  copy_bytes(dst, host, n * sizeof(int32_t));
}
void CpuBackend::upload_into(const float* host, size_t n, float* dst) {
  check_outside_recorded_step("upload_into");
  copy_bytes(dst, host, n * sizeof(float));
}
void CpuBackend::download(const float* src, size_t n, float* host) {
  check_outside_recorded_step("download");
  copy_bytes(host, src, n * sizeof(float));
}
void CpuBackend::download_i32(const int32_t* src, size_t n, int32_t* host) {
  check_outside_recorded_step("download_i32");
  copy_bytes(host, src, n * sizeof(int32_t));
}
void CpuBackend::synchronize() { check_outside_recorded_step("synchronize"); }
void CpuBackend::copy(const float* src, size_t n, float* dst) { copy_bytes(dst, src, n * sizeof(float)); }

void CpuBackend::do_silu(const float* x, size_t n, float* y) {
  const size_t chunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i += chunk) cpu::silu_span(x + i, y + i, std::min(chunk, n - i));
}

void CpuBackend::do_gelu_tanh_inplace(float* x, size_t n) {
  const size_t chunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i += chunk) cpu::gelu_tanh_span(x + i, std::min(chunk, n - i));
}

void CpuBackend::do_add_inplace(float* y, const float* x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuBackend::do_axpby_inplace(float* y, float a, const float* x, float b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] = y[i] * a + x[i] * b;
}

void CpuBackend::do_add_scaled_rows(float* y, const float* x, const float* v, int64_t v_stride, int64_t rows,
                                 int64_t tokens, int64_t C) {
#pragma omp parallel for collapse(2) schedule(static) if (rows * tokens * C > 65536)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < tokens; ++i) {
      float* yy = y + (r * tokens + i) * C;
      const float* xx = x + (r * tokens + i) * C;
      const float* vv = v + r * v_stride;
      for (int64_t c = 0; c < C; ++c) yy[c] += xx[c] * vv[c];
    }
}

void CpuBackend::do_add_broadcast_rows(float* y, const float* v, int64_t rows, int64_t tokens, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) do_add_inplace(y + r * tokens * C, v, static_cast<size_t>(tokens * C));
}

void CpuBackend::do_softmax_rows(float* x, int64_t n, int64_t len) {
#pragma omp parallel for schedule(static) if (n * len > 16384)
  for (int64_t r = 0; r < n; ++r) cpu::softmax_span(x + r * len, static_cast<size_t>(len), 1.0f);
}

void CpuBackend::do_clamp(float* x, size_t n, float lo, float hi) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], lo), hi);
}

void CpuBackend::do_fill_zero(float* x, size_t n) { std::fill(x, x + n, 0.0f); }

void CpuBackend::do_gather_rows(const float* table, int64_t C, const int32_t* idx, int64_t n, float* out) {
  for (int64_t r = 0; r < n; ++r) copy_bytes(out + r * C, table + static_cast<int64_t>(idx[r]) * C, C * sizeof(float));
}

void CpuBackend::do_embed_chw(const float* table, int64_t C, const int32_t* idx, int64_t N, int64_t P, float* out) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p) {
      const float* e = table + static_cast<int64_t>(idx[n * P + p]) * C;
      for (int64_t c = 0; c < C; ++c) out[(n * C + c) * P + p] = e[c];
    }
}

void CpuBackend::do_chw_to_tokens(const float* x, int64_t N, int64_t C, int64_t P, float* out) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < P; ++p) out[(n * P + p) * C + c] = x[(n * C + c) * P + p];
}

}  // namespace varps
