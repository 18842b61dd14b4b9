// Turns CUDA runtime and NCCL status codes into exceptions naming the call that failed.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <stdexcept>
#include <string>

namespace mpitrain::device {

inline void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(status));
}

inline void check_nccl(ncclResult_t status, const char* call) {
  if (status != ncclSuccess) throw std::runtime_error(std::string(call) + ": " + ncclGetErrorString(status));
}

}  // namespace mpitrain::device

#define MPITRAIN_CUDA(call) ::mpitrain::device::check_cuda((call), #call)
#define MPITRAIN_NCCL(call) ::mpitrain::device::check_nccl((call), #call)
