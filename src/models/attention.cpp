// Attention masks and scaled dot-product attention with transformers' eager semantics.
#include "src/models/attention.h"

#include <torch/version.h>

#include <limits>

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
#ifdef MPITRAIN_FUSED_ATTENTION
  return like.is_cuda();
#else
  (void)like;
  return false;
#endif
}

torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& additive_mask, const AttentionOptions& options) {
  const auto merged = [&](const torch::Tensor& out) {  // [b, h, s, d] -> [b, s, h*d]
    return out.transpose(1, 2).contiguous().view({q.size(0), q.size(2), q.size(1) * q.size(3)});
  };
#ifdef MPITRAIN_FUSED_ATTENTION
  if (fused_attention(q) && options.logit_softcap <= 0) {
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
