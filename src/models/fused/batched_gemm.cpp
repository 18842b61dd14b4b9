// Float32 batched matrix products straight into BLAS (see batched_gemm.h).
#include "src/models/fused/batched_gemm.h"

#include <ATen/Parallel.h>
#include <cblas.h>

#include <stdexcept>

namespace mpitrain::models::fused {
namespace {

// How BLAS reads one matrix operand of a batch: its transposition and leading dimension.
struct Operand {
  torch::Tensor tensor;  // `t`, or a contiguous copy where BLAS cannot read its strides
  CBLAS_TRANSPOSE transpose = CblasNoTrans;
  std::int64_t leading = 0;
};

Operand operand(const torch::Tensor& t) {
  if (t.stride(2) == 1 && t.stride(1) >= std::max<std::int64_t>(1, t.size(2))) return {t, CblasNoTrans, t.stride(1)};
  if (t.stride(1) == 1 && t.stride(2) >= std::max<std::int64_t>(1, t.size(1))) return {t, CblasTrans, t.stride(2)};
  const auto copy = t.contiguous();
  return {copy, CblasNoTrans, std::max<std::int64_t>(1, copy.size(2))};
}

}  // namespace

void gemm_into(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, float alpha, float beta) {
  if (a.scalar_type() != at::kFloat || b.scalar_type() != at::kFloat || out.scalar_type() != at::kFloat ||
      a.dim() != 3 || b.dim() != 3 || out.dim() != 3 || a.size(0) != b.size(0) || out.size(0) != a.size(0) ||
      a.size(2) != b.size(1) || out.size(1) != a.size(1) || out.size(2) != b.size(2) || out.stride(2) != 1 ||
      out.stride(1) < std::max<std::int64_t>(1, out.size(2)))
    throw std::invalid_argument("fused::gemm_into: float32 [n, m, k] x [n, k, p] into rows of [n, m, p] expected");
  const auto left = operand(a), right = operand(b);
  const auto m = out.size(1), n = out.size(2), k = a.size(2);
  const float* a_data = left.tensor.data_ptr<float>();
  const float* b_data = right.tensor.data_ptr<float>();
  float* c_data = out.data_ptr<float>();
  const auto a_batch = left.tensor.stride(0), b_batch = right.tensor.stride(0), c_batch = out.stride(0);
  // Inside ATen's parallel region OpenBLAS (the OpenMP build LibTorch uses) runs each call on
  // the calling thread.
  at::parallel_for(0, out.size(0), 1, [&](std::int64_t begin, std::int64_t end) {
    for (auto i = begin; i < end; ++i)
      cblas_sgemm(CblasRowMajor, left.transpose, right.transpose, static_cast<int>(m), static_cast<int>(n),
                  static_cast<int>(k), alpha, a_data + i * a_batch, static_cast<int>(left.leading),
                  b_data + i * b_batch, static_cast<int>(right.leading), beta, c_data + i * c_batch,
                  static_cast<int>(out.stride(1)));
  });
}

torch::Tensor gemm(const torch::Tensor& a, const torch::Tensor& b, float alpha) {
  auto out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options());
  gemm_into(out, a, b, alpha, 0.0f);
  return out;
}

}  // namespace mpitrain::models::fused
