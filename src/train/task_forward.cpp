// The task's forward pass, shared by training and evaluation: logits under the run's bf16 autocast, and the task's loss on them.
#include "src/train/task_forward.h"

#include "src/models/autocast.h"

namespace mpitrain::train {

data::Batch on_device(data::Batch batch, const at::Device& device) {
  if (device.is_cpu()) return batch;
  for (auto* t : {&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, &batch.labels, &batch.position_ids})
    if (t->defined()) *t = t->to(device, /*non_blocking=*/true);
  return batch;
}

torch::Tensor forward_logits(models::HfModel& model, const data::Batch& batch, const at::Device& device, bool bf16) {
  models::ModelInputs inputs{batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.position_ids};
  models::AutocastScope scope(device, bf16);
  return model.forward(inputs);
}

LossValue task_loss(const models::HfModel& model, const torch::Tensor& logits, const data::Batch& batch,
                    bool classification) {
  if (classification) return classification_loss(logits, batch.labels);
  // Under tp > 1 the logits are this rank's vocabulary columns: vocab-parallel cross-entropy.
  return causal_lm_loss(logits, batch.labels, batch.attention_mask, &model.tensor_parallel(), model.logits_vocab_start());
}

torch::Tensor target_count(const data::Batch& batch) {
  const auto length = batch.labels.size(1);
  auto targets = batch.labels.narrow(1, 1, length - 1) != -100;
  if (batch.attention_mask.defined()) targets = targets & (batch.attention_mask.narrow(1, 1, length - 1) != 0);
  return targets.sum();
}

std::int64_t global_input_tokens(const std::vector<data::Batch>& batches, bool padding_too, comm::Communicator& dp,
                                 const at::Device& device) {
  std::int64_t local = 0;
  for (const auto& b : batches) local += padding_too ? b.input_ids.numel() : b.tokens;
  auto total = torch::full({}, local, torch::TensorOptions().dtype(torch::kInt64).device(device));
  dp.allreduce(total, comm::ReduceOp::kSum);
  return total.item<std::int64_t>();
}

torch::Tensor global_target_count(const std::vector<data::Batch>& batches, comm::Communicator& dp, const at::Device& device) {
  // Where the batches are: a GPU run's dp group reduces device tensors (NCCL).
  auto total = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  for (const auto& b : batches) total += target_count(b);
  dp.allreduce(total, comm::ReduceOp::kSum);
  return total.clamp_min(1).to(torch::kDouble);
}

}  // namespace mpitrain::train
