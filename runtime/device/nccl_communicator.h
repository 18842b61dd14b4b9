// The NCCL backend of Communicator: device tensors over NCCL on a stream of its own, CPU tensors over the MPI communicator it wraps.
#pragma once

#include <memory>
#include <string>

#include "runtime/comm/communicator.h"

namespace mpitrain::device {

// One GPU per rank (NCCL refuses two ranks on one GPU). Each collective on a device tensor
// waits (on the GPU, through an event) for the work LibTorch queued before it, runs on this
// communicator's stream, and its Work's wait() makes LibTorch's stream wait for it in turn:
// no host synchronisation, and the caller's compute overlaps the transfer until wait(). The
// Work keeps its tensors alive until then, so the caching allocator cannot hand their memory
// to later work that the collective has not finished with. CPU tensors go to `host`
// unchanged (MPI): the trainer's control values, loss sums and metrics stay there.
// send/recv ignore the tag (NCCL has none): pairs must be posted in the same order.
class NcclCommunicator : public comm::Communicator {
 public:
  // Collective over `host`'s ranks: rank 0's NCCL unique id is broadcast over MPI.
  NcclCommunicator(std::shared_ptr<comm::Communicator> host, const at::Device& device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }

  std::unique_ptr<comm::Work> allreduce_async(torch::Tensor& tensor, comm::ReduceOp op) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  torch::Tensor allgatherv(const torch::Tensor& tensor) override;
  std::unique_ptr<comm::Work> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                   comm::ReduceOp op) override;
  std::unique_ptr<comm::Work> allgather_async(const torch::Tensor& input, torch::Tensor& output) override;
  void send(const torch::Tensor& tensor, int dst, int tag) override;
  void recv(torch::Tensor& tensor, int src, int tag) override;
  void barrier() override;
  std::shared_ptr<comm::Communicator> split(int color, int key, const std::string& name) override;
  comm::Communicator& cpu_communicator() override { return *host_; }

 private:
  struct Impl;
  std::shared_ptr<comm::Communicator> host_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mpitrain::device
