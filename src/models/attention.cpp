// Attention masks and scaled dot-product attention with transformers' eager semantics.
#include "src/models/attention.h"

#include <torch/version.h>

#include <limits>

#include "src/models/autocast.h"
#include "src/models/cpu_causal_attention.h"
#include "src/models/fused/fused_ops.h"

// at::scaled_dot_product_attention takes a scale from LibTorch 2.1 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define MPITRAIN_FUSED_ATTENTION 1
#endif

namespace mpitrain::models {
namespace {

double lowest(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
    case at::kHalf: return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
    case at::kDouble: return std::numeric_limits<double>::lowest();
    default: return static_cast<double>(std::numeric_limits<float>::lowest());
  }
}

}  // namespace

torch::Tensor additive_attention_mask(const torch::Tensor& attention_mask, std::int64_t batch, std::int64_t seq,
                                      bool causal, at::ScalarType dtype, const at::Device& device) {
  auto options = torch::TensorOptions().dtype(torch::kBool).device(device);
  auto blocked = torch::zeros({batch, 1, seq, seq}, options);
  if (causal) blocked = blocked | torch::ones({seq, seq}, options).triu(1).view({1, 1, seq, seq});
  if (attention_mask.defined()) blocked = blocked | (attention_mask.to(device) == 0).view({batch, 1, 1, seq});
  // masked_fill (not an addition of two lowest values) keeps fully-masked rows finite, as
  // transformers' eager path does: such rows attend uniformly instead of producing NaN.
  return torch::zeros({batch, 1, seq, seq}, torch::TensorOptions().dtype(dtype).device(device))
      .masked_fill(blocked, lowest(dtype));
}

torch::Tensor causal_decoder_mask(const torch::Tensor& attention_mask, const torch::Tensor& position_ids,
                                  std::int64_t sliding_window, const torch::Tensor& hidden) {
  const auto batch = hidden.size(0), seq = hidden.size(1);
  if (sliding_window >= seq) sliding_window = 0;  // a window the sequence never outgrows cuts nothing
  if (!attention_mask.defined() && !position_ids.defined() && sliding_window <= 0 && fused_attention(hidden)) return {};
  auto options = torch::TensorOptions().dtype(torch::kBool).device(hidden.device());
  auto blocked = torch::ones({seq, seq}, options).triu(1).view({1, 1, seq, seq});
  if (sliding_window > 0) blocked = blocked | torch::ones({seq, seq}, options).tril(-sliding_window).view({1, 1, seq, seq});
  if (position_ids.defined()) {  // a position 0 starts an example; keys of another are cut
    const auto example = (position_ids.to(hidden.device()) == 0).cumsum(1);
    blocked = blocked | (example.unsqueeze(2) != example.unsqueeze(1)).unsqueeze(1);
  }
  if (attention_mask.defined()) blocked = blocked | (attention_mask.to(hidden.device()) == 0).view({batch, 1, 1, seq});
  return torch::zeros({batch, 1, seq, seq}, torch::TensorOptions().dtype(hidden.scalar_type()).device(hidden.device()))
      .masked_fill(blocked, lowest(hidden.scalar_type()));
}

bool fused_attention(const torch::Tensor& like) {
  if (like.device().is_cpu()) return fused::cpu_fused_kernels();  // cpu_causal_attention
#ifdef MPITRAIN_FUSED_ATTENTION
  return like.is_cuda();
#else
  return false;
#endif
}

namespace {

// Whether cpu_causal_attention computes this call in `dtype`: plain causality on the CPU, in
// float32 or bfloat16, with the softmax in float32 (which is the same thing in float32).
bool cpu_kernel_applies(const torch::Tensor& q, const torch::Tensor& k, at::ScalarType dtype,
                        const torch::Tensor& additive_mask, const AttentionOptions& options) {
  return fused::cpu_fused_kernels() && q.device().is_cpu() && !additive_mask.defined() && options.causal &&
         options.logit_softcap <= 0 && (options.dropout <= 0 || !options.training) && q.size(2) == k.size(2) &&
         (dtype == at::kFloat || (dtype == at::kBFloat16 && options.softmax_in_float32));
}

}  // namespace

torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& additive_mask, const AttentionOptions& options) {
  const auto merged = [&](const torch::Tensor& out) {  // [b, h, s, d] -> [b, s, h*d]
    return out.transpose(1, 2).contiguous().view({q.size(0), q.size(2), q.size(1) * q.size(3)});
  };
  // Under autocast the eager products run in bfloat16 (q may be float32 after RoPE): so does the kernel.
  const auto dtype = current_autocast().cpu ? at::kBFloat16 : q.scalar_type();
  if (cpu_kernel_applies(q, k, dtype, additive_mask, options))
    return cpu_causal_attention(q.to(dtype), k.to(dtype), v.to(dtype), options.scale);
  if (k.size(1) != q.size(1)) return dot_product_attention(q, k.repeat_interleave(q.size(1) / k.size(1), 1),
                                                           v.repeat_interleave(q.size(1) / k.size(1), 1),
                                                           additive_mask, options);
#ifdef MPITRAIN_FUSED_ATTENTION
  if (q.is_cuda() && options.logit_softcap <= 0) {
    // The kernel accumulates in float32 whatever the inputs' dtype. An additive mask must have
    // q's dtype: the float32 lowest value is clamped first so that it does not round to -inf.
    c10::optional<at::Tensor> mask;
    if (additive_mask.defined())
      mask = additive_mask.clamp_min(lowest(q.scalar_type())).to(q.scalar_type());
    return merged(at::scaled_dot_product_attention(q, k, v, mask, options.training ? options.dropout : 0.0,
                                                   /*is_causal=*/options.causal && !additive_mask.defined(),
                                                   options.scale));
  }
#endif
  auto scores = torch::matmul(q, k.transpose(2, 3)) * options.scale;
  if (options.logit_softcap > 0) scores = torch::tanh(scores / options.logit_softcap) * options.logit_softcap;
  if (additive_mask.defined())
    scores = scores + additive_mask;
  else if (options.causal)
    scores = scores + additive_attention_mask({}, q.size(0), q.size(2), true, scores.scalar_type(), q.device());
  auto probs = options.softmax_in_float32 ? torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type())
                                          : torch::softmax(scores, -1);
  if (options.dropout > 0 && options.training) probs = torch::dropout(probs, options.dropout, true);
  return merged(torch::matmul(probs, v));
}

torch::Tensor split_heads(const torch::Tensor& x, std::int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

}  // namespace mpitrain::models
