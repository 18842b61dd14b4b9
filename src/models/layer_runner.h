// What a model's parts run through: a sharded runtime's hooks around each part, and activation checkpointing of whole layers.
#pragma once

#include <torch/torch.h>

#include "runtime/parallel/parameter_groups.h"
#include "src/models/activation_checkpoint.h"

namespace mpitrain::models {

class LayerRunner : public parallel::ParameterGroupRunner {
 public:
  // HF's gradient_checkpointing: a training forward keeps only each layer's input; backward
  // recomputes the layer (one more forward of the layers per step, for activation memory of
  // one layer instead of all of them).
  void set_checkpoint_layers(bool on) { checkpoint_layers_ = on; }
  bool checkpoint_layers() const { return checkpoint_layers_; }

  // Runs a repeated layer (forward group `group`) on `input`. Inside the group's hooks, so a
  // sharded runtime has the parameters back (before the output's backward) when it recomputes.
  torch::Tensor run_layer(int group, const torch::Tensor& input, ForwardPart layer) const {
    return run({group}, [&] { return checkpoint_layers_ ? run_checkpointed(std::move(layer), input) : layer(input); });
  }

 private:
  bool checkpoint_layers_ = false;
};

}  // namespace mpitrain::models
