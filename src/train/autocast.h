// bfloat16 autocast for one forward pass on the CPU or a GPU, across LibTorch versions.
#pragma once

#include <torch/torch.h>

namespace mpitrain::train {

// While alive (and `enabled`), matmuls and the like on `device` run in bfloat16 over float32
// parameters. On exit the cast-weight cache is cleared, as Python's autocast does: without
// that, the next forward would reuse bfloat16 copies of weights the optimizer has since changed.
class AutocastScope {
 public:
  AutocastScope(const at::Device& device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType type_;
  bool enabled_;
};

}  // namespace mpitrain::train
