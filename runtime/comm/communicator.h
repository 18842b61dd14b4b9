// The Communicator interface over tensors: collectives and point-to-point, one backend per transport.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mpitrain::comm {

enum class ReduceOp { kSum, kAvg, kMax, kMin };

// Elements per dim-0 row (allgatherv's unit), from the shape: also right for a rank holding no rows.
inline std::int64_t row_numel(const torch::Tensor& t) {
  std::int64_t n = 1;
  for (std::int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

// A nonblocking operation in flight. wait() completes it (applying any post-processing such
// as the division of an average) or ends the job when it exceeds the collective timeout.
class Work {
 public:
  virtual ~Work() = default;
  virtual bool test() = 0;  // advances progress; true once complete (post-processing done)
  virtual void wait() = 0;
};

// Contract (as in c10d): every collective is called in the same order, with matching
// shapes and dtypes, by all ranks of the communicator. Tensors are CPU tensors for the MPI
// backend; an NCCL backend takes device tensors behind the same interface.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;  // "world", "dp", "tp": used in error messages

  // In place; the tensor must be contiguous.
  virtual std::unique_ptr<Work> allreduce_async(torch::Tensor& tensor, ReduceOp op) = 0;
  void allreduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) { allreduce_async(tensor, op)->wait(); }

  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // Concatenation along dim 0 of every rank's tensor (equal shapes); allgather_async's output.
  torch::Tensor allgather(const torch::Tensor& tensor) {
    auto shape = tensor.sizes().vec();
    if (shape.empty()) shape.push_back(1);
    shape[0] *= size();
    auto out = torch::empty(shape, tensor.options());
    allgather_async(tensor, out)->wait();
    return out;
  }
  // Concatenation along dim 0 where ranks may hold different dim-0 sizes.
  virtual torch::Tensor allgatherv(const torch::Tensor& tensor) = 0;
  // Reduces `tensor` (dim 0 divisible by size) and returns this rank's dim-0 block of the result.
  torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) {
    if (tensor.dim() == 0 || tensor.size(0) % size() != 0)
      throw std::invalid_argument("reduce_scatter: dim 0 (" + std::to_string(tensor.dim() ? tensor.size(0) : 0) +
                                  ") must be divisible by the communicator size " + std::to_string(size()));
    auto shape = tensor.sizes().vec();
    shape[0] /= size();
    auto out = torch::empty(shape, tensor.options());
    reduce_scatter_async(tensor, out, op)->wait();
    return out;
  }
  // Nonblocking forms over flat buffers the caller keeps alive until wait() (ZeRO overlaps
  // them with compute): `output` holds input.numel() / size() elements of the sum for
  // reduce_scatter, and size() copies of `input` (rank order) for allgather.
  virtual std::unique_ptr<Work> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                     ReduceOp op = ReduceOp::kSum) = 0;
  virtual std::unique_ptr<Work> allgather_async(const torch::Tensor& input, torch::Tensor& output) = 0;
  virtual void send(const torch::Tensor& tensor, int dst, int tag) = 0;
  virtual void recv(torch::Tensor& tensor, int src, int tag) = 0;  // into a tensor of the right shape
  // Sends `out` to `dst` while receiving `in` from `src` (MPI_Sendrecv): ranks exchanging
  // around a cycle all make progress at once, where blocking sends would wait on each other.
  // CPU tensors; a backend without it throws std::logic_error.
  virtual void sendrecv(const torch::Tensor& out, int dst, torch::Tensor& in, int src, int tag) {
    (void)out, (void)dst, (void)in, (void)src, (void)tag;
    throw std::logic_error(name() + ": sendrecv is not implemented by this backend");
  }
  virtual void barrier() = 0;

  // A sub-communicator of the ranks passing the same `color`, ordered by `key`; collective.
  virtual std::shared_ptr<Communicator> split(int color, int key, const std::string& name) = 0;
  // What CPU tensors travel over: this communicator, or the MPI one a device backend wraps
  // (the save's MPI-IO path needs its handle; a split of it carries host copies only).
  virtual Communicator& cpu_communicator() { return *this; }
};

}  // namespace mpitrain::comm
