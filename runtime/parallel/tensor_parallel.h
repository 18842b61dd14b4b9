// Megatron's tensor-parallel operators over a Communicator: the f/g conjugates, a logits gather and vocab-parallel cross-entropy.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "runtime/comm/communicator.h"
#include "runtime/device/interval_timer.h"

namespace mpitrain::parallel {

// The tensor-parallel group a model is split over. With no communicator (or one rank) every
// operator is the identity, so a model written against it runs unchanged on one rank.
class TensorParallel {
 public:
  explicit TensorParallel(std::shared_ptr<comm::Communicator> tp = nullptr);

  int rank() const { return tp_ ? tp_->rank() : 0; }
  int size() const { return tp_ ? tp_->size() : 1; }
  comm::Communicator* communicator() const { return tp_.get(); }

  // f: identity forward, all-reduce of the gradient backward (enters a column-parallel region).
  torch::Tensor copy_to_region(const torch::Tensor& x) const;
  // g: all-reduce forward, identity backward (leaves a row-parallel region).
  torch::Tensor reduce_from_region(const torch::Tensor& x) const;
  // Concatenates every rank's last-dim slice (full logits for inference); backward keeps this
  // rank's slice of the gradient.
  torch::Tensor gather_last_dim(const torch::Tensor& x) const;
  // Per-token cross-entropy of logits split along the vocabulary: `logits` [n, v/t] are this
  // rank's columns starting at `vocab_start`, `targets` [n] global ids (-100: ignored, loss 0).
  // Three small all-reduces (max, target logit, sum of exps); no rank builds [n, v]. float32.
  torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                             std::int64_t vocab_start) const;

  // The f/g all-reduces so far (forward and backward): how many, their bytes and their time
  // (as the device saw it: on a GPU how long the stream waited for them, not their launch).
  struct Stats {
    std::int64_t calls = 0, bytes = 0;
    double seconds = 0;
  };
  Stats stats() const;
  // In place over the group, counted in stats() (the operators' own all-reduces).
  void allreduce_counted(torch::Tensor& tensor) const;

 private:
  std::shared_ptr<comm::Communicator> tp_;
  mutable std::atomic<std::int64_t> calls_{0}, bytes_{0};
  mutable std::mutex timer_mutex_;
  mutable std::unique_ptr<device::IntervalTimer> timer_;  // made for the device of the first all-reduce
};

}  // namespace mpitrain::parallel
