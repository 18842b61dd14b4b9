// bfloat16 autocast for one forward pass on the CPU or a GPU, across LibTorch versions.
#pragma once

#include <torch/torch.h>

namespace mpitrain::models {

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

// Which devices autocast is on for now (bfloat16 is the only dtype this project autocasts to).
struct AutocastState {
  bool cpu = false, gpu = false;
  bool operator==(const AutocastState& o) const { return cpu == o.cpu && gpu == o.gpu; }
};
AutocastState current_autocast();

// While alive, autocast is as `state` says; the state before comes back after (with the cache
// cleared where this turned autocast on). A recomputation in backward runs the forward again
// under the autocast that forward had.
class AutocastAs {
 public:
  explicit AutocastAs(const AutocastState& state);
  ~AutocastAs();
  AutocastAs(const AutocastAs&) = delete;
  AutocastAs& operator=(const AutocastAs&) = delete;

 private:
  AutocastState before_, state_;
};

}  // namespace mpitrain::models
