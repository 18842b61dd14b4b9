// Host copies of the blocks a rank writes, made (and converted to the saved dtype) block by block by a background thread while earlier blocks are written.
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
  // Host copies held at most (staged, not yet released): the next block is staged only when it
  // fits beside them, when none is held, or when the writer is waiting for it (a writer that
  // needs several blocks at once gets them). A writer that releases each block once written
  // holds about this much host memory, whatever its share of the model.
  std::uint64_t ahead_bytes = 64u << 20;
};

// One block to stage: its tensor (undefined when this rank does not write it) and the dtype
// it is written in (a conversion is made on the tensor's device, one block at a time).
struct BlockToStage {
  torch::Tensor data;
  at::ScalarType dtype;
};

// Blocks on a device are copied to host memory chunk by chunk through the copier's two
// buffers (chunk k+1 crosses the link while chunk k is copied out), on a thread of its own,
// in the order the writer will ask for them: the caller writes block i while the next ones
// are being copied. Pinned memory stays at two chunks; host copies at about ahead_bytes when
// the caller releases blocks as it goes. Blocks already on the host in their saved dtype (and
// undefined ones) are handed back as they are; CPU blocks in another dtype are converted on
// the thread.
class HostStaging {
 public:
  // Every block in its own dtype, asked for in index order.
  HostStaging(std::vector<torch::Tensor> tensors, const StagingOptions& options,
              std::unique_ptr<device::DeviceCopier> copier = nullptr);
  // `order`: the indices in the order the writer will ask for them (empty: index order).
  HostStaging(std::vector<BlockToStage> blocks, std::vector<std::size_t> order, const StagingOptions& options,
              std::unique_ptr<device::DeviceCopier> copier = nullptr);
  ~HostStaging();  // stops copying (an error left the save) and joins
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Blocks until block i is on the host; rethrows the copy's error.
  const torch::Tensor& host(std::size_t i);
  // The writer is done with block i: its host copy is freed (asking for it again is an error).
  void release(std::size_t i);
  // The most host-copy bytes held at once so far (what staging cost this rank's memory).
  std::uint64_t peak_held_bytes();
  // Seconds the staging thread spent copying and converting so far (beside the writes).
  double copy_seconds();
  // The host-copy bytes block i costs while held: 0 for a block handed back as it is.
  std::uint64_t staged_bytes(std::size_t i) const;

 private:
  bool staged(std::size_t i) const;
  void run();
  torch::Tensor stage(const BlockToStage& block);
  torch::Tensor copy_to_host(const torch::Tensor& source);

  std::vector<BlockToStage> blocks_;
  std::vector<torch::Tensor> host_;
  std::vector<std::size_t> order_, position_;  // position_[i]: where block i comes in order_
  std::vector<bool> released_;
  StagingOptions options_;
  std::unique_ptr<device::DeviceCopier> copier_;
  at::Device copier_device_ = at::kCPU;
  std::mutex mutex_;
  std::condition_variable progress_;  // both ways: a block staged, a block released or asked for
  std::size_t done_ = 0;              // blocks order_[0, done_) are on the host
  std::uint64_t held_ = 0, peak_held_ = 0;
  double copy_seconds_ = 0;
  std::size_t demanded_ = 0;  // blocks order_[0, demanded_) have been asked for
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace mpitrain::checkpoint
