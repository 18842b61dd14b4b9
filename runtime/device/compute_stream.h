// The CUDA stream LibTorch computes on in this thread: what collectives and copies order themselves after.
#pragma once

#include <cuda_runtime_api.h>

namespace mpitrain::device {

// With a CUDA LibTorch, its current stream; a build against a CPU LibTorch (which never holds
// a GPU tensor) compiles against the legacy default stream, LibTorch's default.
cudaStream_t compute_stream();

}  // namespace mpitrain::device
