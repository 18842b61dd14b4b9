// Float32 batched matrix products straight into BLAS, one call per matrix on ATen's threads.
#pragma once

#include <torch/torch.h>

namespace mpitrain::models::fused {

// out[i] = alpha · a[i] · b[i] + beta · out[i] for float32 a [n, m, k], b [n, k, p] and out
// [n, m, p] on the CPU. a and b may be transposed views; out's rows must be contiguous (any
// row and batch strides, as a narrowed view has). Beta 0 ignores out's contents. The same as
// at::baddbmm_, without LibTorch 1.13's dispatch of every matrix of the batch through
// addmm_ (tens of microseconds each, a third of the time of attention-sized products).
void gemm_into(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, float alpha, float beta);

// alpha · a[i] · b[i] in a new [n, m, p] tensor.
torch::Tensor gemm(const torch::Tensor& a, const torch::Tensor& b, float alpha = 1.0f);

}  // namespace mpitrain::models::fused
