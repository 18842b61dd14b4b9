// Attention masks and scaled dot-product attention with transformers' eager semantics.
#pragma once

#include <torch/torch.h>

namespace mpitrain::models {

// Additive mask [batch, 1, seq, seq] in `dtype`: 0 where a query may attend a key, the
// dtype's lowest value where it may not (a padded key, or a future key when `causal`).
// An undefined attention_mask means every position is a real token.
// Built on `device`.
torch::Tensor additive_attention_mask(const torch::Tensor& attention_mask, std::int64_t batch, std::int64_t seq,
                                      bool causal, at::ScalarType dtype, const at::Device& device = at::kCPU);

// The mask a causal decoder's layers share, [batch, 1, seq, seq] in `hidden`'s dtype and on its
// device (`hidden` is [batch, seq, ...]): a query attends to itself and earlier keys, not to
// padded ones (attention_mask 0); with `position_ids` (packed examples, each numbered from 0),
// only to keys of its own example, as transformers' flash-attention path reads position_ids;
// with `sliding_window` > 0, only to the window - 1 keys before it (Mistral, Gemma2's local
// layers: key j is cut where j <= i - window). Undefined where nothing but causality is asked
// and the fused kernel applies that itself.
torch::Tensor causal_decoder_mask(const torch::Tensor& attention_mask, const torch::Tensor& position_ids,
                                  std::int64_t sliding_window, const torch::Tensor& hidden);

// Whether dot_product_attention runs a fused kernel for tensors like `like`: LibTorch's flash or
// memory-efficient attention (LibTorch 2.1 or later, on a GPU) or cpu_causal_attention on the
// CPU. A causal model with no padding then passes no mask at all: the kernel applies causality
// itself (and the eager path builds the causal mask where a kernel declines the call).
bool fused_attention(const torch::Tensor& like);

struct AttentionOptions {
  double scale = 1.0;              // multiplies q·k
  bool softmax_in_float32 = true;  // Llama upcasts; GPT-2 and BERT do not
  double dropout = 0.0;
  bool training = false;
  bool causal = false;  // with no additive mask given, keys after the query are still masked
  // > 0: the scaled scores become cap * tanh(scores / cap) before the mask (Gemma2), which
  // the fused kernel cannot do: the eager path runs.
  double logit_softcap = 0.0;
};

// q [b, h, s, d], k/v [b, kv_heads, s, d] with kv_heads dividing h (query head i reads kv head
// i / (h / kv_heads)); returns [b, s, h*d]. Causal attention with no mask on the CPU runs
// cpu_causal_attention; the rest runs eagerly as transformers does.
torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& additive_mask, const AttentionOptions& options);

// [b, s, h*d] -> [b, h, s, d]
torch::Tensor split_heads(const torch::Tensor& x, std::int64_t heads);

}  // namespace mpitrain::models
