// AdamW with torch.optim.AdamW's arithmetic, whose state is plain named tensors (saved as safetensors).
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "runtime/comm/communicator.h"

namespace mpitrain::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  // Weight decay applies to parameters with 2 or more dims, as transformers' Trainer excludes
  // biases and norm weights.
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> parameters, AdamWOptions options);

  void step(double lr);
  std::int64_t steps() const { return steps_; }

  // "exp_avg.<param>" and "exp_avg_sq.<param>" for every parameter, in parameter order, each
  // with the index of the parameter it belongs to (laid out like it).
  struct Moment {
    std::string name;
    torch::Tensor tensor;
    std::size_t parameter;
  };
  std::vector<Moment> moments() const;
  std::uint64_t state_bytes() const;
  // Restores the moments (throws std::runtime_error naming a missing or misshapen tensor).
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, std::int64_t steps);

 private:
  struct Slot {
    std::string name;
    torch::Tensor parameter, exp_avg, exp_avg_sq;
    bool decay;
  };
  std::vector<Slot> slots_;
  AdamWOptions options_;
  std::int64_t steps_ = 0;
};

// The global L2 norm of the gradients; scales them down to max_norm when above it (max_norm > 0).
// Under tensor parallelism each rank holds slices: `shares[i]` is 1 / (ranks holding the same
// slice of parameter i) so shared slices count once, and `group` sums the squares over the tp ranks.
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& parameters, double max_norm,
                      const std::vector<double>& shares = {}, comm::Communicator* group = nullptr);

}  // namespace mpitrain::train
