// Time a device spends on stretches of work (on a GPU: CUDA events on LibTorch's stream, read back only when asked).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>

namespace mpitrain::device {

// Sums the time between the start and the end of measured stretches of work as the device
// sees it. A host clock cannot time a GPU's collectives: their wait is queued on the stream
// and the host returns at once (it would time the launch). On a GPU each stretch is a pair of
// CUDA events on the calling thread's LibTorch stream, so the sum is how long that stream was
// held up, e.g. waiting for an NCCL all-reduce; no host synchronisation until seconds().
// Thread-safe (the backward pass measures on autograd's thread).
class IntervalTimer {
 public:
  virtual ~IntervalTimer() = default;
  virtual void measure(const std::function<void()>& work) = 0;
  // The stretches measured so far (on a GPU, waits for the last one's end).
  virtual double seconds() = 0;
};

// The host clock for the CPU, CUDA events for a GPU (throws when this build has no CUDA backend).
std::unique_ptr<IntervalTimer> interval_timer_for(const at::Device& device);

}  // namespace mpitrain::device
