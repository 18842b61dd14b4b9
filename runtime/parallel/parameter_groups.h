// The hook points a model's forward pass offers a sharded-parameter runtime (ZeRO-3): before and after each group of parameters is used.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace mpitrain::parallel {

// A group is the parameters one part of the forward pass uses (an embedding, a decoder layer,
// the final norm, the head): FSDP's wrapped module. A sharded runtime materialises a group's
// parameters before that part runs, frees them after, and arranges for them to be
// materialised again before the backward of the part's output.
class ParameterGroupHooks {
 public:
  virtual ~ParameterGroupHooks() = default;
  virtual void before_forward(const std::vector<int>& groups) = 0;
  // Returns `output` (the runtime may attach a hook to it for the backward pass).
  virtual torch::Tensor after_forward(const std::vector<int>& groups, const torch::Tensor& output) = 0;
};

// What a model calls around each part of its forward; does nothing until hooks are installed.
class ParameterGroupRunner {
 public:
  void install(std::shared_ptr<ParameterGroupHooks> hooks) { hooks_ = std::move(hooks); }

  template <class Body>
  torch::Tensor run(const std::vector<int>& groups, Body&& body) const {
    if (!hooks_) return body();
    hooks_->before_forward(groups);
    return hooks_->after_forward(groups, body());
  }

 private:
  std::shared_ptr<ParameterGroupHooks> hooks_;
};

}  // namespace mpitrain::parallel
