// GPU-to-host copies through two pinned buffers on a copy stream of their own (the CUDA DeviceCopier).
#pragma once

#include <cuda_runtime_api.h>

#include "runtime/device/device_copier.h"

namespace mpitrain::device {

class CudaCopier : public DeviceCopier {
 public:
  // Records where LibTorch's stream is now: copies start after the work that produced the tensors.
  CudaCopier(const at::Device& device, std::size_t chunk_bytes);
  ~CudaCopier() override;
  CudaCopier(const CudaCopier&) = delete;
  CudaCopier& operator=(const CudaCopier&) = delete;

  std::size_t chunk_bytes() const override { return chunk_; }
  const void* buffer(int slot) const override { return pinned_[slot]; }
  void copy_async(int slot, const void* source, std::size_t bytes) override;
  void wait(int slot) override;
  torch::Tensor convert(const torch::Tensor& source, at::ScalarType dtype) override;

 private:
  void release();

  int device_index_;
  std::size_t chunk_;
  void* pinned_[2] = {nullptr, nullptr};
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;  // created here (a build without LibTorch's CUDA streams)
  cudaEvent_t done_[2] = {nullptr, nullptr};
};

}  // namespace mpitrain::device
