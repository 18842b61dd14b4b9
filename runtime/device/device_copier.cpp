// Device-to-host copies through two pinned buffers: the one device-specific part of staging a save.
#include "runtime/device/device_copier.h"

#include <cstring>
#include <stdexcept>
#include <vector>

#ifdef MPITRAIN_HAVE_CUDA
#include "runtime/device/cuda_copier.h"
#endif

namespace mpitrain::device {

namespace {

class MemcpyCopier : public DeviceCopier {
 public:
  explicit MemcpyCopier(std::size_t chunk) : chunk_(chunk), buffers_{std::vector<char>(chunk), std::vector<char>(chunk)} {}
  std::size_t chunk_bytes() const override { return chunk_; }
  const void* buffer(int slot) const override { return buffers_[slot].data(); }
  void copy_async(int slot, const void* source, std::size_t bytes) override {
    std::memcpy(buffers_[slot].data(), source, bytes);
  }
  void wait(int) override {}

 private:
  std::size_t chunk_;
  std::vector<char> buffers_[2];
};

}  // namespace

std::unique_ptr<DeviceCopier> copier_for(const at::Device& device, std::size_t chunk_bytes) {
  if (chunk_bytes == 0) throw std::invalid_argument("staging chunk of 0 bytes");
  if (device.is_cpu()) return std::make_unique<MemcpyCopier>(chunk_bytes);
#ifdef MPITRAIN_HAVE_CUDA
  if (device.is_cuda()) return std::make_unique<CudaCopier>(device, chunk_bytes);
#endif
  throw std::runtime_error("no staging copier for device " + device.str() + " in this build");
}

}  // namespace mpitrain::device
