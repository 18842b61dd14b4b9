// The task's forward pass, shared by training and evaluation: logits under the run's bf16 autocast, and the task's loss on them.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "runtime/comm/communicator.h"
#include "src/data/hdf5_dataset.h"
#include "src/models/model.h"
#include "src/train/losses.h"

namespace mpitrain::train {

// The batch's tensors on `device` (copies started without waiting, off the CPU).
data::Batch on_device(data::Batch batch, const at::Device& device);

// The model's logits for `batch`, under bfloat16 autocast on `device` where `bf16` (as HF's
// Trainer runs both its training and its evaluation forward under the same autocast).
torch::Tensor forward_logits(models::HfModel& model, const data::Batch& batch, const at::Device& device, bool bf16);

// The task's loss of those logits: classification cross-entropy, or the shifted causal-LM
// cross-entropy (vocab-parallel where the logits are this tp rank's vocabulary columns).
LossValue task_loss(const models::HfModel& model, const torch::Tensor& logits, const data::Batch& batch,
                    bool classification);

// The causal-LM targets of `batch` (positions after the first whose label is not -100 and is
// not padding): what the step's loss of prompt/completion rows is averaged over.
torch::Tensor target_count(const data::Batch& batch);
// Collective over `dp`: the targets of every micro-batch of a step on every rank (at least 1),
// as a double on `device`.
torch::Tensor global_target_count(const std::vector<data::Batch>& batches, comm::Communicator& dp, const at::Device& device);
// Collective over `dp`: the input ids of a step's micro-batches on every rank, padding included
// (`padding_too`, include_num_input_tokens_seen=all) or not (non_padding), as transformers counts them.
std::int64_t global_input_tokens(const std::vector<data::Batch>& batches, bool padding_too, comm::Communicator& dp,
                                 const at::Device& device);

}  // namespace mpitrain::train
