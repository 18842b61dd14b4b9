// Activation checkpointing: a part of the forward pass keeps only its input, and backward runs it again to get its activations back.
#pragma once

#include <torch/torch.h>

#include <functional>

namespace mpitrain::models {

using ForwardPart = std::function<torch::Tensor(const torch::Tensor&)>;

// With gradients enabled: runs `part` on `input` keeping none of its activations, and returns
// its output attached to a backward step that runs `part` again on the saved input, with the
// random numbers (dropout) and the autocast state the first run had, then backpropagates
// through that recomputation: parameter gradients accumulate there (gradient hooks fire as
// usual) and the input's gradient flows on. The random-number generators are left as they
// were, so training draws the same numbers as without checkpointing. Unlike PyTorch's
// reentrant checkpoint, parameters get their gradients even where `input` needs none (a
// frozen embedding). `part` is kept until backward: it must capture what it uses by value.
// Without gradients: just `part(input)`.
torch::Tensor run_checkpointed(ForwardPart part, const torch::Tensor& input);

}  // namespace mpitrain::models
