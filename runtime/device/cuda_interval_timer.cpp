// Stretches of GPU work timed by pairs of CUDA events on LibTorch's stream (the CUDA IntervalTimer).
#include "runtime/device/cuda_interval_timer.h"

#include "runtime/device/compute_stream.h"
#include "runtime/device/cuda_error.h"

namespace mpitrain::device {

CudaIntervalTimer::CudaIntervalTimer(const at::Device& device) : device_index_(device.index()) {}

CudaIntervalTimer::~CudaIntervalTimer() {
  // Destroying a recorded event is legal before it completes: no wait here (a rank unwinding
  // after a collective its peers never joined must not block on it).
  for (const auto& [start, stop] : pending_) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  for (const auto& [start, stop] : free_) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
}

CudaIntervalTimer::EventPair CudaIntervalTimer::take_pair() {
  if (!free_.empty()) {
    const auto pair = free_.back();
    free_.pop_back();
    return pair;
  }
  EventPair pair{nullptr, nullptr};
  MPITRAIN_CUDA(cudaEventCreate(&pair.first));  // with timing (the default flags)
  MPITRAIN_CUDA(cudaEventCreate(&pair.second));
  return pair;
}

void CudaIntervalTimer::add_elapsed(const EventPair& pair) {
  float ms = 0;
  MPITRAIN_CUDA(cudaEventElapsedTime(&ms, pair.first, pair.second));
  seconds_ += static_cast<double>(ms) * 1e-3;
  free_.push_back(pair);
}

void CudaIntervalTimer::drain(bool wait) {
  while (!pending_.empty()) {
    const auto pair = pending_.front();
    if (wait) {
      MPITRAIN_CUDA(cudaEventSynchronize(pair.second));
    } else {
      const auto state = cudaEventQuery(pair.second);
      if (state == cudaErrorNotReady) {
        (void)cudaGetLastError();  // not an error: LibTorch's next launch check must not see it
        return;                    // later pairs end later on their stream
      }
      MPITRAIN_CUDA(state);
    }
    pending_.pop_front();
    add_elapsed(pair);
  }
}

void CudaIntervalTimer::measure(const std::function<void()>& work) {
  EventPair pair;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    MPITRAIN_CUDA(cudaSetDevice(device_index_));
    drain(/*wait=*/false);  // keeps the pending pairs few without waiting for any
    pair = take_pair();
  }
  try {
    MPITRAIN_CUDA(cudaEventRecord(pair.first, compute_stream()));
    work();
    MPITRAIN_CUDA(cudaEventRecord(pair.second, compute_stream()));
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(pair);  // not timed; reusable (recording again resets it)
    throw;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.push_back(pair);
}

double CudaIntervalTimer::seconds() {
  std::lock_guard<std::mutex> lock(mutex_);
  drain(/*wait=*/true);
  return seconds_;
}

}  // namespace mpitrain::device
