// Raw-pointer CPU kernels behind the fused operations, one table per instruction set, chosen at run time.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace mpitrain::models::fused {

using bf16 = c10::BFloat16;

// Rows [begin, end) of a rotary input x [batch, heads, seq, dim] (dim contiguous, any other
// strides), numbered batch-major; cos and sin are float32 [batch or 1, seq, dim] with these strides.
struct RopeRows {
  std::int64_t heads = 0, seq = 0, dim = 0;
  std::int64_t x_batch = 0, x_head = 0, x_seq = 0;
  std::int64_t angle_batch = 0, angle_seq = 0;
};

// A block of causal attention scores: query rows of several heads stacked, `rows_per_head` each.
struct CausalRows {
  std::int64_t keys = 0, rows_per_head = 0, first_keys = 0;
  std::int64_t visible(std::int64_t row) const { return first_keys + row % rows_per_head; }
};

// Every kernel computes in float32 and rounds where transformers' eager ops round in bfloat16
// (each op's result in its output dtype), so that a bfloat16 run matches the unfused one.
struct KernelTable {
  const char* instruction_set;
  // out = silu(gate) * up over n elements; its gradients for the upstream gradient dout.
  void (*swiglu_forward_f32)(const float* gate, const float* up, float* out, std::int64_t n);
  void (*swiglu_forward_bf16)(const bf16* gate, const bf16* up, bf16* out, std::int64_t n);
  void (*swiglu_backward_f32)(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                              std::int64_t n);
  void (*swiglu_backward_bf16)(const bf16* gate, const bf16* up, const bf16* dout, bf16* dgate, bf16* dup,
                               std::int64_t n);
  // RMSNorm of `rows` rows of `dim` in float32: out = weight * (x * r), r = 1/sqrt(mean(x²) + eps),
  // r kept per row for the backward, which adds each row's dy * x * r into dweight.
  void (*rms_norm_forward)(const float* x, const float* weight, float* out, float* inv_rms, std::int64_t rows,
                           std::int64_t dim, float eps);
  void (*rms_norm_backward)(const float* x, const float* weight, const float* inv_rms, const float* dout, float* dx,
                            float* dweight, std::int64_t rows, std::int64_t dim);
  // out (float32, contiguous [batch, heads, seq, dim]) = x * cos + rotate_half(x) * sin for the
  // rows [begin, end); the backward gives dx (contiguous, x's dtype) from a contiguous dout.
  void (*rope_forward_f32)(const float* x, const float* cos, const float* sin, float* out, const RopeRows& shape,
                           std::int64_t begin, std::int64_t end);
  void (*rope_forward_bf16)(const bf16* x, const float* cos, const float* sin, float* out, const RopeRows& shape,
                            std::int64_t begin, std::int64_t end);
  void (*rope_backward_f32)(const float* dout, const float* cos, const float* sin, float* dx, const RopeRows& shape,
                            std::int64_t begin, std::int64_t end);
  void (*rope_backward_bf16)(const float* dout, const float* cos, const float* sin, bf16* dx, const RopeRows& shape,
                             std::int64_t begin, std::int64_t end);
  // The softmax of rows [begin, end) of a causal block's scores [rows, keys] (row-major, keys
  // each), where row r sees keys [0, first_keys + r % rows_per_head) and the rest are masked:
  // probabilities in float32 and (bfloat16 scores) rounded to bfloat16 too; masked ones are 0.
  void (*causal_softmax_forward_f32)(const float* scores, float* probs, float* probs_in_dtype, const CausalRows& rows,
                                     std::int64_t begin, std::int64_t end);
  void (*causal_softmax_forward_bf16)(const bf16* scores, float* probs, bf16* probs_in_dtype, const CausalRows& rows,
                                      std::int64_t begin, std::int64_t end);
  // Its backward: dscores = probs · (dprobs − Σ dprobs·probs) per row, in the scores' dtype;
  // `scratch` holds `keys` floats for this call alone.
  void (*causal_softmax_backward_f32)(const float* dprobs, const float* probs, float* dscores, const CausalRows& rows,
                                      std::int64_t begin, std::int64_t end, float* scratch);
  void (*causal_softmax_backward_bf16)(const bf16* dprobs, const float* probs, bf16* dscores, const CausalRows& rows,
                                       std::int64_t begin, std::int64_t end, float* scratch);
};

// The widest table this CPU runs (AVX-512, AVX2 or portable C++), picked once.
const KernelTable& kernels();

// Each instruction set's table (kernels_isa.cpp compiled once per set).
namespace isa_default { KernelTable table(); }
namespace isa_avx2 { KernelTable table(); }
namespace isa_avx512 { KernelTable table(); }

}  // namespace mpitrain::models::fused
