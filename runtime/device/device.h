// Which device a rank computes on: the CPU, or one GPU per local rank; and the communicator that goes with it.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "runtime/comm/communicator.h"

namespace mpitrain::device {

// True when this build has the NCCL backend and the CUDA staging (runtime/device/*cuda*).
bool cuda_backend_built();

// `name` is "cpu" or "cuda" (the value of config key `key`, named in errors). For cuda, GPU
// local_rank % visible GPUs becomes this process's current device: GPU local_rank, or device 0
// when the launcher shows each rank only its own (Slurm's --gpu-bind). Two ranks landing on
// one physical GPU are refused by name when the NCCL communicator forms.
// Throws std::runtime_error with one line when the build, the LibTorch or the machine cannot.
at::Device select_device(const std::string& name, int local_rank, const std::string& key);

// The world communicator for `device`: `host` itself on the CPU; on a GPU an NCCL
// communicator for device tensors that keeps `host` (MPI) for CPU tensors. Collective.
std::shared_ptr<comm::Communicator> world_for(const at::Device& device, std::shared_ptr<comm::Communicator> host);

}  // namespace mpitrain::device
