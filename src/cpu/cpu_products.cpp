// Matrix products of the CPU backend: x·wᵀ on the panels of
// cpu/panel_gemm.hpp, and general products through OpenBLAS.
#include <cblas.h>

#include "cpu/bf16_panels.hpp"
#include "cpu/cpu_backend.hpp"
#include "cpu/int8_panels.hpp"
#include "cpu/packed_matrices.hpp"
#include "cpu/panel_gemm.hpp"
#include "varps/error.hpp"

namespace varps {

const float* CpuBackend::panels_of(const float* w, int64_t rows, int64_t depth, bool as_a,
                                   cpu::ScratchPool::Lease& lease) const {
  const auto role = as_a ? cpu::PackedMatrix::Role::A : cpu::PackedMatrix::Role::B;
  if (const std::optional<cpu::PackedMatrix> m = packed_->find(w)) {
    if (m->role != role || m->rows != rows || m->depth != depth || m->element != cpu::PackedMatrix::Element::F32)
      throw Error("a packed weight of " + std::to_string(m->rows) + "x" + std::to_string(m->depth) +
                  " used as one of " + std::to_string(rows) + "x" + std::to_string(depth));
    return w;
  }
  if (as_a) {
    lease = scratch_->take(cpu::a_panel_floats(rows, depth));
    cpu::pack_a_panels(w, rows, depth, depth, lease.data());
  } else {
    lease = scratch_->take(cpu::b_panel_floats(rows, depth));
    cpu::pack_b_panels_from_rows(w, rows, depth, depth, lease.data());
  }
  return lease.data();
}

void CpuBackend::product(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, bool gelu,
                         float* y) {
  if (M == 0) return;
  if (const std::optional<cpu::PackedMatrix> m = packed_->find(w);
      m && m->element != cpu::PackedMatrix::Element::F32) {
    const bool bf16 = m->element == cpu::PackedMatrix::Element::Bf16;
    if (m->rows != N || m->depth != K)
      throw Error(std::string("a ") + (bf16 ? "bf16" : "int8") + " weight of " + std::to_string(m->rows) + "x" +
                  std::to_string(m->depth) + " used as one of " + std::to_string(N) + "x" + std::to_string(K));
    const cpu::ProductOutput out{y, N, false, b, gelu};
    if (bf16)
      cpu::multiply_bf16_panels(x, K, reinterpret_cast<const uint32_t*>(w), M, N, K, out, isa_, scratch_.get());
    else if (onednn_int8_)
      onednn_int8_->multiply(x, K, w, M, N, K, out, *scratch_);
    else
      cpu::multiply_int8_panels(x, K, w, M, N, K, out, isa_, scratch_.get());
    return;
  }
  cpu::ScratchPool::Lease lease;
  const float* panels = panels_of(w, N, K, false, lease);
  cpu::multiply_panels(cpu::AOperand{x, K, false}, cpu::BOperand::panels(panels, K), M, N, K,
                       cpu::ProductOutput{y, N, false, b, gelu}, isa_);
}

void CpuBackend::do_linear(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N, float* y) {
  product(x, M, K, w, b, N, false, y);
}

void CpuBackend::do_linear_gelu(const float* x, int64_t M, int64_t K, const float* w, const float* b, int64_t N,
                             float* y) {
  product(x, M, K, w, b, N, true, y);
}

void CpuBackend::do_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
              static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

}  // namespace varps
