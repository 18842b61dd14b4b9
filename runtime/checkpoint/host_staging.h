// Host copies of the blocks a rank writes, made from device memory in bounded chunks by a background thread while earlier blocks are written.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/device/device_copier.h"

namespace mpitrain::checkpoint {

struct StagingOptions {
  std::uint64_t chunk_bytes = 32u << 20;  // each of the two pinned buffers
  bool stage_cpu_tensors = false;         // copy CPU tensors too (a snapshot; the tests use it)
};

// Tensors on a device are copied to host memory in order, chunk by chunk through the copier's
// two buffers (chunk k+1 crosses the link while chunk k is copied out), on a thread of its
// own: the caller writes tensor i while tensors i+1, ... are still being copied. Pinned memory
// stays at two chunks whatever the model's size; the host copies (this rank's share of the
// save) live until the staging ends. CPU tensors (and undefined ones: blocks this rank does
// not write) are handed back as they are.
class HostStaging {
 public:
  HostStaging(std::vector<torch::Tensor> tensors, const StagingOptions& options,
              std::unique_ptr<device::DeviceCopier> copier = nullptr);
  ~HostStaging();  // stops copying (an error left the save) and joins
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Blocks until tensor i is on the host; rethrows the copy's error.
  const torch::Tensor& host(std::size_t i);

 private:
  bool staged(const torch::Tensor& t) const;
  void run();
  torch::Tensor copy_to_host(const torch::Tensor& source);

  std::vector<torch::Tensor> tensors_, host_;
  StagingOptions options_;
  std::unique_ptr<device::DeviceCopier> copier_;
  std::mutex mutex_;
  std::condition_variable progress_;
  std::size_t ready_ = 0;  // tensors [0, ready_) are on the host
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace mpitrain::checkpoint
