// The CUDA stream LibTorch computes on in this thread: what collectives and copies order themselves after.
#include "runtime/device/compute_stream.h"

#ifdef MPITRAIN_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace mpitrain::device {

cudaStream_t compute_stream() {
#ifdef MPITRAIN_TORCH_CUDA
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  return cudaStreamLegacy;
#endif
}

}  // namespace mpitrain::device
