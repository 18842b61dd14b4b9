// GPU-to-host copies through two pinned buffers on a copy stream of their own (the CUDA DeviceCopier).
#include "runtime/device/cuda_copier.h"

#include "runtime/device/compute_stream.h"
#include "runtime/device/cuda_error.h"

#ifdef MPITRAIN_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace mpitrain::device {

CudaCopier::CudaCopier(const at::Device& device, std::size_t chunk_bytes)
    : device_index_(device.index()), chunk_(chunk_bytes) {
  try {
    MPITRAIN_CUDA(cudaSetDevice(device_index_));
#ifdef MPITRAIN_TORCH_CUDA
    // One of LibTorch's pooled streams (non-blocking, never destroyed): a conversion's memory is
    // filed by the caching allocator under this stream, which must outlive the allocator's use.
    stream_ = c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device_index_)).stream();
#else
    MPITRAIN_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    owns_stream_ = true;
#endif
    for (int slot = 0; slot < 2; ++slot) {
      MPITRAIN_CUDA(cudaHostAlloc(&pinned_[slot], chunk_, cudaHostAllocDefault));
      MPITRAIN_CUDA(cudaEventCreateWithFlags(&done_[slot], cudaEventDisableTiming));
    }
    cudaEvent_t produced = nullptr;
    MPITRAIN_CUDA(cudaEventCreateWithFlags(&produced, cudaEventDisableTiming));
    MPITRAIN_CUDA(cudaEventRecord(produced, compute_stream()));
    MPITRAIN_CUDA(cudaStreamWaitEvent(stream_, produced, 0));
    MPITRAIN_CUDA(cudaEventDestroy(produced));
  } catch (...) {
    release();  // no pinned memory or stream left behind by a failed start
    throw;
  }
}

CudaCopier::~CudaCopier() { release(); }

void CudaCopier::release() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (int slot = 0; slot < 2; ++slot) {
    if (done_[slot]) cudaEventDestroy(done_[slot]);
    if (pinned_[slot]) cudaFreeHost(pinned_[slot]);
    done_[slot] = nullptr;
    pinned_[slot] = nullptr;
  }
  if (stream_ && owns_stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void CudaCopier::copy_async(int slot, const void* source, std::size_t bytes) {
  // The staging thread is not the one that chose the device: CUDA's current device is per thread.
  MPITRAIN_CUDA(cudaSetDevice(device_index_));
  MPITRAIN_CUDA(cudaMemcpyAsync(pinned_[slot], source, bytes, cudaMemcpyDefault, stream_));
  MPITRAIN_CUDA(cudaEventRecord(done_[slot], stream_));
}

void CudaCopier::wait(int slot) { MPITRAIN_CUDA(cudaEventSynchronize(done_[slot])); }

torch::Tensor CudaCopier::convert(const torch::Tensor& source, at::ScalarType dtype) {
#ifdef MPITRAIN_TORCH_CUDA
  // On the copy stream: after the work that produced `source` (the constructor's event), before
  // the copies of the result; the caching allocator ties the block's memory to this stream.
  c10::cuda::CUDAStreamGuard on_copy_stream(
      c10::cuda::getStreamFromExternal(stream_, static_cast<c10::DeviceIndex>(device_index_)));
  return source.to(dtype);
#else
  return DeviceCopier::convert(source, dtype);  // a CPU LibTorch holds no GPU tensors
#endif
}

}  // namespace mpitrain::device
