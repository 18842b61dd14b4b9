// Time a device spends on stretches of work (on a GPU: CUDA events on LibTorch's stream, read back only when asked).
#include "runtime/device/interval_timer.h"

#include <chrono>
#include <mutex>
#include <stdexcept>

#ifdef MPITRAIN_HAVE_CUDA
#include "runtime/device/cuda_interval_timer.h"
#endif

namespace mpitrain::device {

namespace {

class HostIntervalTimer : public IntervalTimer {
 public:
  void measure(const std::function<void()>& work) override {
    const auto start = std::chrono::steady_clock::now();
    work();
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::lock_guard<std::mutex> lock(mutex_);
    seconds_ += elapsed;
  }
  double seconds() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return seconds_;
  }

 private:
  std::mutex mutex_;
  double seconds_ = 0;
};

}  // namespace

std::unique_ptr<IntervalTimer> interval_timer_for(const at::Device& device) {
  if (device.is_cpu()) return std::make_unique<HostIntervalTimer>();
#ifdef MPITRAIN_HAVE_CUDA
  if (device.is_cuda()) return std::make_unique<CudaIntervalTimer>(device);
#endif
  throw std::runtime_error("no interval timer for device " + device.str() + " in this build");
}

}  // namespace mpitrain::device
