// The MPI backend of Communicator, for CPU tensors: blocking MPI calls on one worker thread per communicator.
#include "runtime/comm/mpi_communicator.h"

#include <chrono>
#include <exception>

namespace mpitrain::comm {

MPI_Datatype mpi_datatype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kShort: return MPI_INT16_T;
    case at::kChar: return MPI_INT8_T;
    case at::kByte:
    case at::kBool: return MPI_UINT8_T;
    case at::kBFloat16:
    case at::kHalf: return MPI_UINT16_T;
    default: throw std::invalid_argument(std::string("no MPI datatype for ") + c10::toString(type));
  }
}

namespace {

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

int count_of(const torch::Tensor& t) {
  if (t.numel() > std::numeric_limits<int>::max())
    throw std::invalid_argument("tensor of " + std::to_string(t.numel()) + " elements exceeds one MPI message");
  return static_cast<int>(t.numel());
}

void require_contiguous_cpu(const torch::Tensor& t, const char* operation) {
  if (!t.is_contiguous() || !t.device().is_cpu())
    throw std::invalid_argument(std::string(operation) + ": the MPI backend needs a contiguous CPU tensor");
}

// 16-bit floats have no MPI reduction: they are reduced in float32 and copied back.
bool needs_upcast(const torch::Tensor& t) { return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf; }

// Completion shared between the worker (which runs the operation) and the caller (which waits).
struct Completion {
  std::mutex mutex;
  std::condition_variable done_signal;
  bool done = false;
  std::exception_ptr error;
};

class ThreadWork : public Work {
 public:
  ThreadWork(std::shared_ptr<Completion> completion, MPI_Comm monitor, CollectiveId id)
      : completion_(std::move(completion)), monitor_(monitor), id_(std::move(id)) {}
  ~ThreadWork() override {
    // The tensors the worker touches belong to the caller: never let them go while it runs.
    std::unique_lock<std::mutex> lock(completion_->mutex);
    completion_->done_signal.wait(lock, [&] { return completion_->done; });
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(completion_->mutex);
    return completion_->done;
  }
  void wait() override {
    std::unique_lock<std::mutex> lock(completion_->mutex);
    const double limit = collective_timeout_seconds();
    if (limit > 0) {
      if (!completion_->done_signal.wait_for(lock, std::chrono::duration<double>(limit),
                                             [&] { return completion_->done; })) {
        lock.unlock();
        abort_for_timeout(monitor_, id_);
      }
    } else {
      completion_->done_signal.wait(lock, [&] { return completion_->done; });
    }
    if (completion_->error) std::rethrow_exception(completion_->error);
  }

 private:
  std::shared_ptr<Completion> completion_;
  MPI_Comm monitor_;
  CollectiveId id_;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name) : comm_(comm), name_(std::move(name)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_dup(comm_, &monitor_);
  worker_ = std::thread([this] { run_worker(); });
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  MPI_Comm_free(&monitor_);
  if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
}

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() {
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world");
}

void MpiCommunicator::run_worker() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

std::unique_ptr<Work> MpiCommunicator::submit(CollectiveId id, std::function<void()> body) {
  auto completion = std::make_shared<Completion>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back([completion, body = std::move(body)] {
      std::exception_ptr error;
      try {
        body();
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> done_lock(completion->mutex);
        completion->done = true;
        completion->error = error;
      }
      completion->done_signal.notify_all();
    });
  }
  wake_.notify_one();
  return std::make_unique<ThreadWork>(completion, monitor_, std::move(id));
}

CollectiveId MpiCommunicator::next_id(const char* operation, const torch::Tensor& tensor, bool collective) {
  return CollectiveId{name_, operation, collective ? sequence_++ : sequence_, tensor.defined() ? tensor.nbytes() : 0};
}

std::unique_ptr<Work> MpiCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  require_contiguous_cpu(tensor, "allreduce");
  if (op == ReduceOp::kAvg && !tensor.is_floating_point()) throw std::invalid_argument("allreduce: average needs a float tensor");
  auto id = next_id("allreduce", tensor);
  return submit(id, [this, target = tensor, op] {
    auto buffer = needs_upcast(target) ? target.to(at::kFloat) : target;
    MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), count_of(buffer), mpi_datatype(buffer.scalar_type()), mpi_op(op),
                  comm_);
    if (op == ReduceOp::kAvg) buffer.div_(size_);
    if (!buffer.is_same(target)) target.copy_(buffer);
  });
}

void MpiCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_contiguous_cpu(tensor, "broadcast");
  submit(next_id("broadcast", tensor), [this, tensor, root] {
    MPI_Bcast(tensor.data_ptr(), count_of(tensor), mpi_datatype(tensor.scalar_type()), root, comm_);
  })->wait();
}

torch::Tensor MpiCommunicator::allgatherv(const torch::Tensor& tensor) {
  require_contiguous_cpu(tensor, "allgatherv");
  // First every rank's dim-0 size (same trailing shape everywhere, by contract).
  auto all_rows = allgather(torch::tensor({tensor.dim() ? tensor.size(0) : 1}, torch::kInt64));
  const std::int64_t row_elems = row_numel(tensor);
  std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
  std::int64_t total_rows = 0;
  for (int r = 0; r < size_; ++r) {
    const auto n = all_rows[r].item<std::int64_t>();
    counts[static_cast<std::size_t>(r)] = static_cast<int>(n * row_elems);
    displs[static_cast<std::size_t>(r)] = static_cast<int>(total_rows * row_elems);
    total_rows += n;
  }
  auto shape = tensor.sizes().vec();
  if (shape.empty()) shape.push_back(1);
  shape[0] = total_rows;
  auto out = torch::empty(shape, tensor.options());
  submit(next_id("allgatherv", tensor), [this, tensor, out, counts, displs] {
    const auto type = mpi_datatype(tensor.scalar_type());
    MPI_Allgatherv(tensor.data_ptr(), count_of(tensor), type, out.data_ptr(), counts.data(), displs.data(), type,
                   comm_);
  })->wait();
  return out;
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                            ReduceOp op) {
  require_contiguous_cpu(input, "reduce_scatter");
  require_contiguous_cpu(output, "reduce_scatter");
  if (output.numel() * size_ != input.numel() || output.scalar_type() != input.scalar_type())
    throw std::invalid_argument("reduce_scatter: output must hold input.numel() / size elements of the input's dtype");
  return submit(next_id("reduce_scatter", input), [this, input, output, op] {
    const bool upcast = needs_upcast(input);
    auto source = upcast ? input.to(at::kFloat) : input;
    auto target = upcast ? torch::empty({output.numel()}, source.options()) : output;
    MPI_Reduce_scatter_block(source.data_ptr(), target.data_ptr(), count_of(target), mpi_datatype(source.scalar_type()),
                             mpi_op(op), comm_);
    if (op == ReduceOp::kAvg) target.div_(size_);
    if (upcast) output.view({-1}).copy_(target);
  });
}

std::unique_ptr<Work> MpiCommunicator::allgather_async(const torch::Tensor& input, torch::Tensor& output) {
  require_contiguous_cpu(input, "allgather");
  require_contiguous_cpu(output, "allgather");
  if (output.numel() != input.numel() * size_ || output.scalar_type() != input.scalar_type())
    throw std::invalid_argument("allgather: output must hold size x input.numel() elements of the input's dtype");
  return submit(next_id("allgather", input), [this, input, output] {
    const auto type = mpi_datatype(input.scalar_type());
    MPI_Allgather(input.data_ptr(), count_of(input), type, output.data_ptr(), count_of(input), type, comm_);
  });
}

void MpiCommunicator::send(const torch::Tensor& tensor, int dst, int tag) {
  require_contiguous_cpu(tensor, "send");
  submit(next_id("send", tensor, false), [this, tensor, dst, tag] {
    MPI_Send(tensor.data_ptr(), count_of(tensor), mpi_datatype(tensor.scalar_type()), dst, tag, comm_);
  })->wait();
}

void MpiCommunicator::recv(torch::Tensor& tensor, int src, int tag) {
  require_contiguous_cpu(tensor, "recv");
  submit(next_id("recv", tensor, false), [this, tensor, src, tag] {
    MPI_Recv(tensor.data_ptr(), count_of(tensor), mpi_datatype(tensor.scalar_type()), src, tag, comm_,
             MPI_STATUS_IGNORE);
  })->wait();
}

void MpiCommunicator::sendrecv(const torch::Tensor& out, int dst, torch::Tensor& in, int src, int tag) {
  require_contiguous_cpu(out, "sendrecv");
  require_contiguous_cpu(in, "sendrecv");
  submit(next_id("sendrecv", out, false), [this, out, dst, in, src, tag] {
    MPI_Sendrecv(out.data_ptr(), count_of(out), mpi_datatype(out.scalar_type()), dst, tag, in.data_ptr(), count_of(in),
                 mpi_datatype(in.scalar_type()), src, tag, comm_, MPI_STATUS_IGNORE);
  })->wait();
}

void MpiCommunicator::barrier() {
  submit(next_id("barrier", torch::Tensor()), [this] { MPI_Barrier(comm_); })->wait();
}

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  MPI_Comm sub = MPI_COMM_NULL;
  submit(next_id("split", torch::Tensor()), [this, color, key, &sub] { MPI_Comm_split(comm_, color, key, &sub); })
      ->wait();
  return std::make_shared<MpiCommunicator>(sub, name);
}

}  // namespace mpitrain::comm
