// Stretches of GPU work timed by pairs of CUDA events on LibTorch's stream (the CUDA IntervalTimer).
#pragma once

#include <cuda_runtime_api.h>

#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "runtime/device/interval_timer.h"

namespace mpitrain::device {

class CudaIntervalTimer : public IntervalTimer {
 public:
  explicit CudaIntervalTimer(const at::Device& device);
  ~CudaIntervalTimer() override;
  CudaIntervalTimer(const CudaIntervalTimer&) = delete;
  CudaIntervalTimer& operator=(const CudaIntervalTimer&) = delete;

  void measure(const std::function<void()>& work) override;
  double seconds() override;

 private:
  using EventPair = std::pair<cudaEvent_t, cudaEvent_t>;
  EventPair take_pair();                     // a recycled pair, or new events
  void add_elapsed(const EventPair& pair);  // pair has completed: its time counted, pair recycled
  void drain(bool wait);                    // pending pairs in order: the completed ones (all if wait)

  int device_index_;
  std::mutex mutex_;
  std::deque<EventPair> pending_;  // recorded, maybe not completed, in recording order
  std::vector<EventPair> free_;
  double seconds_ = 0;
};

}  // namespace mpitrain::device
