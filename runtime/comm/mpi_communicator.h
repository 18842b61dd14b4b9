// The MPI backend of Communicator, for CPU tensors: blocking MPI calls on one worker thread per communicator.
#pragma once

#include <mpi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "runtime/comm/collective_timeout.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::comm {

// Why a worker thread (as PyTorch's ProcessGroupMPI does): measured here, Open MPI's
// nonblocking collectives (libnbc) run at half the speed of its blocking ones (coll/tuned),
// and without a progress thread they only advance inside MPI calls. A thread that makes
// blocking calls gets the fast algorithms and progresses while the caller computes. All
// operations of a communicator run on its worker in submission order, so every rank issues
// the same MPI calls in the same order. Callers wait on a condition variable with the
// collective timeout; on expiry the caller runs the census and ends the job.
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
  torch::Tensor allgatherv(const torch::Tensor& tensor) override;
  std::unique_ptr<Work> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> allgather_async(const torch::Tensor& input, torch::Tensor& output) override;
  void send(const torch::Tensor& tensor, int dst, int tag) override;
  void recv(torch::Tensor& tensor, int src, int tag) override;
  void sendrecv(const torch::Tensor& out, int dst, torch::Tensor& in, int src, int tag) override;
  void barrier() override;
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name) override;

 private:
  // Collectives advance the sequence the timeout census compares; point-to-point calls,
  // which only some ranks make, do not.
  CollectiveId next_id(const char* operation, const torch::Tensor& tensor, bool collective = true);
  // Queues `body` for the worker and returns the Work that completes when it has run.
  std::unique_ptr<Work> submit(CollectiveId id, std::function<void()> body);
  void run_worker();

  MPI_Comm comm_;
  MPI_Comm monitor_;  // duplicate used only by the timeout census
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::uint64_t sequence_ = 0;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

// MPI's datatype for a torch dtype (16-bit floats travel as opaque 16-bit words).
MPI_Datatype mpi_datatype(at::ScalarType type);

}  // namespace mpitrain::comm
