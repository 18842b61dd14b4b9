// Device-to-host copies through two pinned buffers: the one device-specific part of staging a save.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <memory>

namespace mpitrain::device {

// Two slots, each a host buffer of chunk_bytes (page-locked for a GPU, so copies run at the
// link's speed and asynchronously). A slot is refilled only after wait(slot).
class DeviceCopier {
 public:
  virtual ~DeviceCopier() = default;
  virtual std::size_t chunk_bytes() const = 0;
  virtual const void* buffer(int slot) const = 0;
  // Queues the copy of `bytes` (<= chunk_bytes) from device address `source` into `slot`,
  // after all work LibTorch had queued when this copier was made.
  virtual void copy_async(int slot, const void* source, std::size_t bytes) = 0;
  virtual void wait(int slot) = 0;  // blocks until slot's copy has landed
  // `source` in `dtype`, made on its device in order with this copier's copies (the copies
  // queued after it see the converted bytes). A saved dtype is made one block at a time.
  virtual torch::Tensor convert(const torch::Tensor& source, at::ScalarType dtype) { return source.to(dtype); }
};

// For a GPU: pinned buffers, a copy stream and events. For the CPU: plain buffers and memcpy
// (staging a CPU tensor is a snapshot; the tests drive the pipeline with it). Throws when
// this build has no CUDA backend and `device` is a GPU.
std::unique_ptr<DeviceCopier> copier_for(const at::Device& device, std::size_t chunk_bytes);

}  // namespace mpitrain::device
