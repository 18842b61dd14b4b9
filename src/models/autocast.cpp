// bfloat16 autocast for one forward pass on the CPU or a GPU, across LibTorch versions.
#include "src/models/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace mpitrain::models {

namespace {

// LibTorch 2.4 made autocast's switches per device type; earlier ones name CPU and GPU apart.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
void set_autocast(at::DeviceType type, bool on) {
  at::autocast::set_autocast_enabled(type, on);
  if (on) at::autocast::set_autocast_dtype(type, at::kBFloat16);
}
bool autocast_enabled(at::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
#else
void set_autocast(at::DeviceType type, bool on) {
  if (type == at::kCPU) {
    at::autocast::set_cpu_enabled(on);
    if (on) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  } else {
    at::autocast::set_enabled(on);
    if (on) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  }
}
bool autocast_enabled(at::DeviceType type) {
  return type == at::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
#endif

}  // namespace

AutocastScope::AutocastScope(const at::Device& device, bool enabled) : type_(device.type()), enabled_(enabled) {
  if (enabled_) set_autocast(type_, true);
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  set_autocast(type_, false);
  at::autocast::clear_cache();
}

AutocastState current_autocast() { return {autocast_enabled(at::kCPU), autocast_enabled(at::kCUDA)}; }

AutocastAs::AutocastAs(const AutocastState& state) : before_(current_autocast()), state_(state) {
  if (state_ == before_) return;
  set_autocast(at::kCPU, state_.cpu);
  set_autocast(at::kCUDA, state_.gpu);
}

AutocastAs::~AutocastAs() {
  if (state_ == before_) return;
  set_autocast(at::kCPU, before_.cpu);
  set_autocast(at::kCUDA, before_.gpu);
  // bfloat16 copies of weights cast under the borrowed state must not outlive it.
  if ((state_.cpu && !before_.cpu) || (state_.gpu && !before_.gpu)) at::autocast::clear_cache();
}

}  // namespace mpitrain::models
