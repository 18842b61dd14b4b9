// Activation checkpointing: a part of the forward pass keeps only its input, and backward runs it again to get its activations back.
#include "src/models/activation_checkpoint.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <mutex>
#include <utility>
#include <vector>

#include "src/models/autocast.h"

namespace mpitrain::models {

namespace {

// The states of the generators a part may draw from: the CPU's, and the input's GPU's.
class GeneratorStates {
 public:
  explicit GeneratorStates(const at::Device& device) {
    generators_.push_back(at::globalContext().defaultGenerator(at::kCPU));
    if (device.is_cuda()) generators_.push_back(at::globalContext().defaultGenerator(device));
    for (auto& g : generators_) states_.push_back(state_of(g));
  }
  const std::vector<at::Generator>& generators() const { return generators_; }
  const std::vector<at::Tensor>& states() const { return states_; }

  static at::Tensor state_of(at::Generator& g) {
    std::lock_guard<std::mutex> lock(g.mutex());
    return g.get_state();
  }
  static void set(at::Generator& g, const at::Tensor& state) {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
  }

 private:
  std::vector<at::Generator> generators_;
  std::vector<at::Tensor> states_;
};

// While alive, the generators are back where `saved` found them; after, where they were.
class LentGeneratorStates {
 public:
  explicit LentGeneratorStates(const GeneratorStates& saved) : generators_(saved.generators()) {
    for (std::size_t i = 0; i < generators_.size(); ++i) {
      now_.push_back(GeneratorStates::state_of(generators_[i]));
      GeneratorStates::set(generators_[i], saved.states()[i]);
    }
  }
  ~LentGeneratorStates() {
    for (std::size_t i = 0; i < generators_.size(); ++i) GeneratorStates::set(generators_[i], now_[i]);
  }
  LentGeneratorStates(const LentGeneratorStates&) = delete;
  LentGeneratorStates& operator=(const LentGeneratorStates&) = delete;

 private:
  std::vector<at::Generator> generators_;
  std::vector<at::Tensor> now_;
};

// While alive, autocast caches no casts.
class CastCacheOff {
 public:
  CastCacheOff() : before_(at::autocast::is_autocast_cache_enabled()) { at::autocast::set_autocast_cache_enabled(false); }
  ~CastCacheOff() { at::autocast::set_autocast_cache_enabled(before_); }
  CastCacheOff(const CastCacheOff&) = delete;
  CastCacheOff& operator=(const CastCacheOff&) = delete;

 private:
  bool before_;
};

class RecomputeBackward : public torch::autograd::Node {
 public:
  RecomputeBackward(ForwardPart part, const torch::Tensor& input, GeneratorStates generators, AutocastState autocast)
      : part_(std::move(part)),
        input_(input, /*is_output=*/false),
        input_requires_grad_(input.requires_grad()),
        generators_(std::move(generators)),
        autocast_(autocast) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    // The inner backward below makes no graph of itself: a double backward would be wrong.
    TORCH_CHECK(!torch::GradMode::is_enabled(), "double backward through a checkpointed layer is not supported");
    if (!grads[0].defined()) return {torch::Tensor()};  // the output was not used: nothing to recompute
    // unpack() refuses an input modified in place since the forward (a wrong recomputation).
    auto input = input_.unpack().detach().requires_grad_(input_requires_grad_);
    torch::Tensor output;
    {
      at::AutoGradMode with_gradients(true);
      LentGeneratorStates same_random_numbers(generators_);
      AutocastAs same_autocast(autocast_);
      output = part_(input);
    }
    if (grads[0].defined() && output.requires_grad()) torch::autograd::backward({output}, {grads[0]});
    return {input_requires_grad_ ? input.grad() : torch::Tensor()};
  }

  std::string name() const override { return "RecomputeBackward"; }

  void release_variables() override {
    input_.reset_data();
    part_ = nullptr;
  }

 private:
  ForwardPart part_;
  torch::autograd::SavedVariable input_;
  bool input_requires_grad_;
  GeneratorStates generators_;
  AutocastState autocast_;
};

}  // namespace

torch::Tensor run_checkpointed(ForwardPart part, const torch::Tensor& input) {
  if (!torch::GradMode::is_enabled()) return part(input);
  GeneratorStates generators(input.device());
  const auto autocast = current_autocast();
  torch::Tensor output;
  {
    torch::NoGradGuard no_activations_kept;
    // Autocast must not cache bfloat16 copies of weights made here, without gradients: a later
    // use inside the same autocast scope (the recomputation, were backward run inside it)
    // would take them and leave the weights without gradients.
    CastCacheOff no_cached_casts;
    output = part(input);
    // The backward step is attached to the output itself, so it must own its storage.
    if (output.is_view()) output = output.clone();
  }
  auto node = std::shared_ptr<RecomputeBackward>(
      new RecomputeBackward(std::move(part), input, std::move(generators), autocast), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(input));
  torch::autograd::set_history(output, node);
  return output;
}

}  // namespace mpitrain::models
