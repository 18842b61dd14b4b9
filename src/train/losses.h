// The training losses transformers computes inside its models: shifted causal-LM cross-entropy and classification.
#pragma once

#include <torch/torch.h>

#include "runtime/parallel/tensor_parallel.h"

namespace mpitrain::train {

struct LossValue {
  torch::Tensor loss;   // mean over counted targets
  torch::Tensor count;  // targets counted (tokens or rows): a 0-dim int64 tensor where the
                        // logits are, so that training never waits to read it
};

// logits [b, s, v], labels [b, s]: position t predicts label t+1; masked positions (mask 0) are ignored.
// With `tp` of more than one rank the logits are this rank's vocabulary columns from
// `vocab_start` and the cross-entropy is computed vocab-parallel.
LossValue causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& attention_mask,
                         const parallel::TensorParallel* tp = nullptr, std::int64_t vocab_start = 0);
// logits [b, n], labels [b]
LossValue classification_loss(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace mpitrain::train
