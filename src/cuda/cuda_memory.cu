// The CUDA backend's device, stream and memory: construction, arrays from a
// stream-ordered pool, transfers and memory statistics.
#include <cublasLt.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>

#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_heap.hpp"
#include "cuda/kernels.hpp"
#include "cuda/lt_context.hpp"

namespace varps::cuda {

namespace {

// 256-byte granules: every array starts aligned for vector loads and the
// allocator's own rounding does not make the counted bytes drift.
size_t granule_bytes(size_t n, size_t elem) { return std::max<size_t>(256, ((n * elem + 255) / 256) * 256); }

Precision parse_precision(const std::string& p) {
  if (p == "fp32") return Precision::F32;
  if (p == "bf16") return Precision::BF16;
  if (p == "fp16") return Precision::F16;
  throw Error("unknown precision '" + p + "' (expected fp32, bf16 or fp16)");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32: return "float32";
    case Precision::BF16: return "bf16";
    case Precision::F16: return "fp16";
  }
  return "?";
}

}  // namespace

DeviceHeap::DeviceHeap(int device_index) : device(device_index) {
  VARPS_CUDA_CHECK(cudaSetDevice(device));
  VARPS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  VARPS_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
  // Keep freed memory in the pool instead of returning it at each
  // synchronisation: the next generation reuses the same blocks.
  uint64_t keep = std::numeric_limits<uint64_t>::max();
  VARPS_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
}

DeviceHeap::~DeviceHeap() {
  cudaStreamSynchronize(stream);
  for (auto& [key, s] : shadows)
    if (s.data != key) cudaFreeAsync(s.data, stream);
  cudaStreamSynchronize(stream);
  cudaMemPoolDestroy(pool);
  cudaStreamDestroy(stream);
}

void* DeviceHeap::allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMallocFromPoolAsync(&p, bytes, pool, stream);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state of a failed allocation
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error("out of device memory allocating " + std::to_string(bytes) + " bytes (" +
                std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) +
                " MiB): " + cudaGetErrorString(e));
  }
  std::lock_guard<std::mutex> lock(mutex);
  in_use += bytes;
  peak = std::max(peak, in_use);
  return p;
}

void DeviceHeap::release(void* p, size_t bytes) noexcept {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = shadows.find(p);
  if (it != shadows.end()) {
    if (it->second.data != p) cudaFreeAsync(it->second.data, stream);
    in_use -= it->second.bytes;
    shadows.erase(it);
  }
  cudaFreeAsync(p, stream);
  in_use -= bytes;
}

CudaBackend::CudaBackend(const BackendOptions& opts)
    : precision_(parse_precision(opts.precision)), graphs_(opts.graphs) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw Error(std::string("no CUDA device available (") +
                (e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports no device") + ")");
  }
  if (opts.device_index < 0 || opts.device_index >= count)
    throw Error("CUDA device " + std::to_string(opts.device_index) + " does not exist (" + std::to_string(count) +
                " present)");
  heap_ = std::make_shared<DeviceHeap>(opts.device_index);
  lt_ = std::make_unique<LtContext>(*heap_);
}

CudaBackend::~CudaBackend() {
  if (heap_) cudaStreamSynchronize(heap_->stream);
}

cudaStream_t CudaBackend::stream() const { return heap_->stream; }

std::string CudaBackend::info() const {
  cudaDeviceProp prop{};
  VARPS_CUDA_CHECK(cudaGetDeviceProperties(&prop, heap_->device));
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  std::ostringstream s;
  s << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount << " SMs, "
    << (prop.totalGlobalMem >> 20) << " MiB), matrix products in " << precision_name(precision_)
    << (precision_ == Precision::F32 ? "" : " with float32 accumulation") << " through cuBLASLt "
    << cublasLtGetVersion() << ", CUDA runtime " << runtime / 1000 << "." << (runtime % 1000) / 10;
  return s.str();
}

template <typename T>
Array<T> CudaBackend::device_array(size_t n, size_t elem_bytes) {
  // A graph would own an allocation made while capturing, and replays would
  // not count it: run_recorded falls back to running the step as it is.
  if (capturing_) throw Error("a recorded step allocated device memory");
  const size_t bytes = granule_bytes(n, elem_bytes);
  std::shared_ptr<DeviceHeap> heap = heap_;
  T* p = static_cast<T*>(heap->allocate(bytes));
  return Array<T>(std::shared_ptr<T>(p, [heap, bytes](T* q) { heap->release(q, bytes); }), n);
}

float* CudaBackend::scratch(size_t n) {
  // Grown to exactly what an op needs: sizes are bounded (workspace_bytes),
  // so it settles after the first request.
  if (scratch_.size() < n) scratch_ = device_array<float>(n);
  return scratch_.data();
}

uint64_t CudaBackend::workspace_bytes(const WorkspaceDemand& d) const {
  // One scratch region serves every op in turn, so it is the largest of
  // their needs, in float32 granules.
  // With bf16/fp16 products a k×k convolution builds its columns in shared
  // memory (cuda_conv_mma.cu) and only conversions need scratch.
  const bool half = precision_ != Precision::F32;
  const uint64_t floats = half ? std::max((d.linear_input + 1) / 2, (d.pointwise_input + 1) / 2)
                               : std::min<uint64_t>(d.im2col, kBandElements);
  return lt_->workspace_bytes() + (floats ? granule_bytes(floats, sizeof(float)) : 0);
}

Array<float> CudaBackend::alloc(size_t n) { return device_array<float>(n); }
uint64_t CudaBackend::array_bytes(uint64_t elements, size_t element_bytes) const {
  return granule_bytes(elements, element_bytes);
}

Array<float> CudaBackend::zeros(size_t n) {
  Array<float> a = device_array<float>(n);
  VARPS_CUDA_CHECK(cudaMemsetAsync(a.data(), 0, n * sizeof(float), heap_->stream));
  return a;
}

Array<int32_t> CudaBackend::alloc_i32(size_t n) { return device_array<int32_t>(n); }

Array<float> CudaBackend::upload(const Tensor& t) {
  Array<float> a = device_array<float>(t.data.size());
  // From pageable memory the copy is staged before the call returns, so the
  // tensor may go away at once.
  VARPS_CUDA_CHECK(
      cudaMemcpyAsync(a.data(), t.data.data(), t.data.size() * sizeof(float), cudaMemcpyHostToDevice, heap_->stream));
  return a;
}

Array<MatrixElement> CudaBackend::upload_matrix(const Tensor& t) {
  if (precision_ == Precision::F32) return upload(t).reinterpret_as<MatrixElement>(t.data.size());
  // Through a float32 staging array, freed in stream order after the cast.
  const Array<float> staged = upload(t);
  Array<float> a = device_array<float>(t.data.size(), 2);
  cast_to_half_precision(staged.data(), a.size(), a.data(), precision_, heap_->stream);
  std::lock_guard<std::mutex> lock(heap_->mutex);
  heap_->shadows[a.data()] = DeviceHeap::Shadow{a.data(), 0};
  return a.reinterpret_as<MatrixElement>(a.size());
}

size_t CudaBackend::matrix_element_bytes() const { return precision_ == Precision::F32 ? sizeof(float) : 2; }

Array<KvElement> CudaBackend::alloc_kv_cache(size_t n) {
  return device_array<float>(n, kv_element_bytes()).reinterpret_as<KvElement>(n);
}

size_t CudaBackend::kv_element_bytes() const { return precision_ == Precision::F32 ? sizeof(float) : 2; }

const void* CudaBackend::matrix_operand(const float* w, size_t n) {
  {
    std::lock_guard<std::mutex> lock(heap_->mutex);
    auto it = heap_->shadows.find(w);
    if (it != heap_->shadows.end()) return it->second.data;
  }
  // A float32 weight: its half-precision copy is made on first use and kept
  // as long as the weight.
  if (capturing_) throw Error("a recorded step made a weight copy");
  const size_t bytes = granule_bytes(n, 2);
  void* wh = heap_->allocate(bytes);
  cast_to_half_precision(w, n, wh, precision_, heap_->stream);
  std::lock_guard<std::mutex> lock(heap_->mutex);
  heap_->shadows[w] = DeviceHeap::Shadow{wh, bytes};
  return wh;
}

const void* CudaBackend::half_activations(const float* x, size_t n) {
  void* xh = scratch((n + 1) / 2);
  cast_to_half_precision(x, n, xh, precision_, heap_->stream);
  return xh;
}

Array<SampleJob> CudaBackend::alloc_sample_jobs(size_t n) { return device_array<SampleJob>(n); }

void CudaBackend::upload_sample_jobs(const SampleJob* host, size_t n, SampleJob* dst) {
  // From pageable memory: staged before the call returns, like upload().
  VARPS_CUDA_CHECK(cudaMemcpyAsync(dst, host, n * sizeof(SampleJob), cudaMemcpyHostToDevice, heap_->stream));
}

void CudaBackend::upload_into_i32(const int32_t* host, size_t n, int32_t* dst) {
  VARPS_CUDA_CHECK(cudaMemcpyAsync(dst, host, n * sizeof(int32_t), cudaMemcpyHostToDevice, heap_->stream));
}

void CudaBackend::upload_into(const float* host, size_t n, float* dst) {
  VARPS_CUDA_CHECK(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, heap_->stream));
}

void CudaBackend::download(const float* src, size_t n, float* host) {
  VARPS_CUDA_CHECK(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, heap_->stream));
  VARPS_CUDA_CHECK(cudaStreamSynchronize(heap_->stream));
}

void CudaBackend::download_i32(const int32_t* src, size_t n, int32_t* host) {
  VARPS_CUDA_CHECK(cudaMemcpyAsync(host, src, n * sizeof(int32_t), cudaMemcpyDeviceToHost, heap_->stream));
  VARPS_CUDA_CHECK(cudaStreamSynchronize(heap_->stream));
}

void CudaBackend::copy(const float* src, size_t n, float* dst) {
  if (n == 0 || src == dst) return;
  VARPS_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, heap_->stream));
}

void CudaBackend::do_fill_zero(float* x, size_t n) {
  if (n == 0) return;
  VARPS_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), heap_->stream));
}

void CudaBackend::synchronize() { VARPS_CUDA_CHECK(cudaStreamSynchronize(heap_->stream)); }

void CudaBackend::release_cached() {
  scratch_ = Array<float>();
  synchronize();
  VARPS_CUDA_CHECK(cudaMemPoolTrimTo(heap_->pool, 0));
}

DeviceMemoryStats CudaBackend::device_memory() const {
  DeviceMemoryStats s;
  s.available = true;
  {
    std::lock_guard<std::mutex> lock(heap_->mutex);
    s.in_use = heap_->in_use;
    s.peak = heap_->peak;
  }
  uint64_t reserved = 0;
  VARPS_CUDA_CHECK(cudaMemPoolGetAttribute(heap_->pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  s.reserved = reserved;
  size_t free_b = 0, total_b = 0;
  VARPS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  s.total = total_b;
  return s;
}

void CudaBackend::reset_peak_memory() {
  std::lock_guard<std::mutex> lock(heap_->mutex);
  heap_->peak = heap_->in_use;
}

}  // namespace varps::cuda

namespace varps {

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts) {
  return std::make_unique<cuda::CudaBackend>(opts);
}

}  // namespace varps
