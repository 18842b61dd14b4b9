// Causal attention for the CPU computed block by block, never holding the [batch, heads, seq, seq] scores.
#pragma once

#include <torch/torch.h>

namespace mpitrain::models {

// softmax(scale · q·kᵀ + causal mask) · v with transformers' eager numerics (scores in q's dtype,
// the softmax in float32, probabilities cast back to q's dtype before multiplying v), forward and
// backward, for q [b, h, s, d] and k, v [b, kv_heads, s, d] with kv_heads dividing h (query
// head i reads kv head i / (h / kv_heads), as repeat_interleave would give). Returns [b, s, h·d].
//
// The query rows go in blocks; each block is multiplied only by the keys up to its last row, so
// the masked upper triangle is neither computed nor stored, and every step is one batched ATen
// operation over all (batch, kv head) pairs (the query heads of a group stacked into one
// matrix: kv heads are never repeated). The backward recomputes a block's probabilities from q
// and k instead of keeping them: memory per layer is that of q, k, v and the output, and the
// scores of one block at a time. Causality only: padding, packed examples, a sliding window or
// a soft cap take the eager path.
torch::Tensor cpu_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   double scale);

// The query rows of a block (a multiple of 16; default 64; tests set it lower to cross block
// edges on short sequences). Returns the previous value.
std::int64_t set_cpu_attention_block_rows(std::int64_t rows);

}  // namespace mpitrain::models
