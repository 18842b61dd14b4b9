// bfloat16 autocast for one forward pass on the CPU or a GPU, across LibTorch versions.
#include "src/train/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace mpitrain::train {

namespace {

// LibTorch 2.4 made autocast's switches per device type; earlier ones name CPU and GPU apart.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
void set_autocast(at::DeviceType type, bool on) {
  at::autocast::set_autocast_enabled(type, on);
  if (on) at::autocast::set_autocast_dtype(type, at::kBFloat16);
}
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

}  // namespace mpitrain::train
