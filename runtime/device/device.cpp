// Which device a rank computes on: the CPU, or one GPU per local rank; and the communicator that goes with it.
#include "runtime/device/device.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <stdexcept>

#ifdef MPITRAIN_HAVE_CUDA
#include "runtime/device/nccl_communicator.h"
#endif

namespace mpitrain::device {

bool cuda_backend_built() {
#ifdef MPITRAIN_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

at::Device select_device(const std::string& name, int local_rank, const std::string& key) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name != "cuda") throw std::runtime_error(key + ": '" + name + "' is not a device (cpu or cuda)");
  if (!at::hasCUDA())
    throw std::runtime_error(key + "=cuda: this LibTorch was built without CUDA (configure with a CUDA LibTorch: see README)");
  if (!cuda_backend_built())
    throw std::runtime_error(key + "=cuda: this build has no NCCL backend (the CUDA runtime or NCCL was not found at configure time)");
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (count == 0) throw std::runtime_error(key + "=cuda: no GPU is visible to this process");
  const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
  // Through ATen's device-generic guard, so this file needs no CUDA headers.
  c10::impl::getDeviceGuardImpl(at::kCUDA)->setDevice(device);
  return device;
}

std::shared_ptr<comm::Communicator> world_for(const at::Device& device, std::shared_ptr<comm::Communicator> host) {
  if (device.is_cpu()) return host;
#ifdef MPITRAIN_HAVE_CUDA
  return std::make_shared<NcclCommunicator>(std::move(host), device);
#else
  throw std::runtime_error("this build has no NCCL backend");
#endif
}

}  // namespace mpitrain::device
