// The MPI backend of Communicator, for CPU tensors; every wait is bounded by the collective timeout.
#pragma once

#include <mpi.h>

#include "runtime/comm/collective_timeout.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::comm {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction unless it is MPI_COMM_WORLD).
  MpiCommunicator(MPI_Comm comm, std::string name);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  static std::shared_ptr<MpiCommunicator> world();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  MPI_Comm handle() const { return comm_; }

  std::unique_ptr<Work> allreduce_async(torch::Tensor& tensor, ReduceOp op) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  torch::Tensor allgather(const torch::Tensor& tensor) override;
  torch::Tensor allgatherv(const torch::Tensor& tensor) override;
  torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op) override;
  void send(const torch::Tensor& tensor, int dst, int tag) override;
  void recv(torch::Tensor& tensor, int src, int tag) override;
  void barrier() override;
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name) override;

 private:
  // Collectives advance the sequence the timeout census compares; point-to-point calls,
  // which only some ranks make, do not.
  CollectiveId next_id(const char* operation, const torch::Tensor& tensor, bool collective = true);
  void wait(MPI_Request& request, const CollectiveId& id);

  MPI_Comm comm_;
  MPI_Comm monitor_;  // duplicate used only by the timeout census
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::uint64_t sequence_ = 0;
};

// MPI's datatype for a torch dtype (16-bit floats travel as opaque 16-bit words).
MPI_Datatype mpi_datatype(at::ScalarType type);

}  // namespace mpitrain::comm
