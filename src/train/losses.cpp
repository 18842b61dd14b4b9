// The training losses transformers computes inside its models: shifted causal-LM cross-entropy and classification.
#include "src/train/losses.h"

namespace mpitrain::train {

LossValue causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& attention_mask,
                         const parallel::TensorParallel* tp, std::int64_t vocab_start) {
  const auto vocab = logits.size(-1);
  auto shifted_logits = logits.narrow(1, 0, logits.size(1) - 1).to(torch::kFloat32).reshape({-1, vocab});
  auto targets = labels.narrow(1, 1, labels.size(1) - 1).clone();
  if (attention_mask.defined()) targets.masked_fill_(attention_mask.narrow(1, 1, labels.size(1) - 1) == 0, -100);
  targets = targets.reshape({-1});
  const auto count = (targets != -100).sum();
  if (tp && tp->size() > 1) {
    auto per_token = tp->vocab_parallel_cross_entropy(shifted_logits, targets, vocab_start);
    return {per_token.sum() / count.clamp_min(1), count};
  }
  auto loss = torch::nn::functional::cross_entropy(
      shifted_logits, targets, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
  return {loss, count};
}

LossValue classification_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  return {torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), labels),
          torch::scalar_tensor(labels.size(0), torch::TensorOptions().dtype(torch::kInt64).device(labels.device()))};
}

}  // namespace mpitrain::train
