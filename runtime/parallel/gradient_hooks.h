// Calls back when autograd has accumulated each parameter's gradient: the hook both the DP reducer and ZeRO launch collectives from.
#pragma once

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

namespace mpitrain::parallel {

// Registers `ready(k)` to run after parameter k's gradient accumulator (once per backward,
// after every use of the parameter). The returned accumulators must be kept alive for the
// hooks to persist.
inline std::vector<std::shared_ptr<torch::autograd::Node>> on_each_gradient(
    const std::vector<torch::Tensor>& parameters, std::function<void(std::size_t)> ready) {
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    auto accumulator = torch::autograd::impl::grad_accumulator(parameters[k]);
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [ready, k](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          ready(k);
          return outputs;
        }));
    accumulators.push_back(std::move(accumulator));
  }
  return accumulators;
}

}  // namespace mpitrain::parallel
