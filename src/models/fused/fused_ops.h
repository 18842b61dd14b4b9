// SwiGLU, RMSNorm and rotary embeddings as single passes on the CPU, with their own backward.
#pragma once

#include <torch/torch.h>

namespace mpitrain::models::fused {

// Whether the fused CPU paths (these operations and cpu_causal_attention) run; on by default.
// Off, every model runs transformers' eager ATen passes (training.cpu_fused_kernels=false).
void set_cpu_fused_kernels(bool on);
bool cpu_fused_kernels();

// The rows of `dim` elements a thread takes at the least in a row-parallel pass (16384
// elements, at least one row): below that a pass is not split over threads.
std::int64_t rows_per_grain(std::int64_t dim);

// silu(gate) * up for same-shaped CPU tensors in float32 or bfloat16.
bool swiglu_fusable(const torch::Tensor& gate, const torch::Tensor& up);
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// weight * (x * rsqrt(mean(x², -1) + eps)) for float32 x and weight [x.size(-1)] on the CPU.
bool rms_norm_fusable(const torch::Tensor& x, const torch::Tensor& weight);
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// x * cos + rotate_half(x) * sin in float32, for x [b, h, s, d] (float32 or bfloat16, d
// contiguous) and float32 cos, sin [b or 1, 1, s, d] that need no gradient.
bool rope_fusable(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace mpitrain::models::fused
