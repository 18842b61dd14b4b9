// The MPI backend of Communicator, for CPU tensors; every wait is bounded by the collective timeout.
#include "runtime/comm/mpi_communicator.h"

#include "runtime/comm/collective_timeout.h"

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

class MpiWork : public Work {
 public:
  MpiWork(MPI_Comm monitor, CollectiveId id, torch::Tensor target, torch::Tensor buffer, bool average, int size)
      : monitor_(monitor), id_(std::move(id)), target_(std::move(target)), buffer_(std::move(buffer)),
        average_(average), size_(size) {}
  ~MpiWork() override {
    if (!finished_) wait();  // a request must never be left dangling
  }
  MPI_Request* request() { return &request_; }

  bool test() override {
    if (finished_) return true;
    int done = 0;
    MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
    if (done) finish();
    return finished_;
  }
  void wait() override {
    if (finished_) return;
    wait_or_abort(request_, monitor_, id_);
    finish();
  }

 private:
  void finish() {
    finished_ = true;
    if (average_) buffer_.div_(size_);
    if (!buffer_.is_same(target_)) target_.copy_(buffer_);
  }
  MPI_Comm monitor_;
  CollectiveId id_;
  torch::Tensor target_, buffer_;
  bool average_;
  int size_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool finished_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name) : comm_(comm), name_(std::move(name)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_dup(comm_, &monitor_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  MPI_Comm_free(&monitor_);
  if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
}

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() {
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world");
}

CollectiveId MpiCommunicator::next_id(const char* operation, const torch::Tensor& tensor, bool collective) {
  return CollectiveId{name_, operation, collective ? sequence_++ : sequence_, tensor.defined() ? tensor.nbytes() : 0};
}

void MpiCommunicator::wait(MPI_Request& request, const CollectiveId& id) { wait_or_abort(request, monitor_, id); }

std::unique_ptr<Work> MpiCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  require_contiguous_cpu(tensor, "allreduce");
  auto buffer = needs_upcast(tensor) ? tensor.to(at::kFloat) : tensor;
  const bool average = op == ReduceOp::kAvg;
  if (average && !buffer.is_floating_point()) throw std::invalid_argument("allreduce: average needs a float tensor");
  auto work = std::make_unique<MpiWork>(monitor_, next_id("allreduce", tensor), tensor, buffer, average, size_);
  MPI_Iallreduce(MPI_IN_PLACE, buffer.data_ptr(), count_of(buffer), mpi_datatype(buffer.scalar_type()), mpi_op(op),
                 comm_, work->request());
  return work;
}

void MpiCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_contiguous_cpu(tensor, "broadcast");
  auto id = next_id("broadcast", tensor);
  MPI_Request request;
  MPI_Ibcast(tensor.data_ptr(), count_of(tensor), mpi_datatype(tensor.scalar_type()), root, comm_, &request);
  wait(request, id);
}

torch::Tensor MpiCommunicator::allgather(const torch::Tensor& tensor) {
  require_contiguous_cpu(tensor, "allgather");
  auto shape = tensor.sizes().vec();
  if (shape.empty()) shape.push_back(1);
  shape[0] *= size_;
  auto out = torch::empty(shape, tensor.options());
  auto id = next_id("allgather", tensor);
  MPI_Request request;
  const auto type = mpi_datatype(tensor.scalar_type());
  MPI_Iallgather(tensor.data_ptr(), count_of(tensor), type, out.data_ptr(), count_of(tensor), type, comm_, &request);
  wait(request, id);
  return out;
}

torch::Tensor MpiCommunicator::allgatherv(const torch::Tensor& tensor) {
  require_contiguous_cpu(tensor, "allgatherv");
  // First every rank's dim-0 size (same trailing shape everywhere, by contract).
  auto rows = torch::tensor({tensor.dim() ? tensor.size(0) : 1}, torch::kInt64);
  auto all_rows = allgather(rows);
  const std::int64_t row_elems = tensor.dim() ? tensor.numel() / std::max<std::int64_t>(1, tensor.size(0)) : 1;
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
  auto id = next_id("allgatherv", tensor);
  MPI_Request request;
  const auto type = mpi_datatype(tensor.scalar_type());
  MPI_Iallgatherv(tensor.data_ptr(), count_of(tensor), type, out.data_ptr(), counts.data(), displs.data(), type, comm_,
                  &request);
  wait(request, id);
  return out;
}

torch::Tensor MpiCommunicator::reduce_scatter(const torch::Tensor& tensor, ReduceOp op) {
  require_contiguous_cpu(tensor, "reduce_scatter");
  if (tensor.dim() == 0 || tensor.size(0) % size_ != 0)
    throw std::invalid_argument("reduce_scatter: dim 0 (" + std::to_string(tensor.dim() ? tensor.size(0) : 0) +
                                ") must be divisible by the communicator size " + std::to_string(size_));
  auto input = needs_upcast(tensor) ? tensor.to(at::kFloat) : tensor;
  auto shape = input.sizes().vec();
  shape[0] /= size_;
  auto out = torch::empty(shape, input.options());
  auto id = next_id("reduce_scatter", tensor);
  MPI_Request request;
  MPI_Ireduce_scatter_block(input.data_ptr(), out.data_ptr(), count_of(out), mpi_datatype(input.scalar_type()),
                            mpi_op(op), comm_, &request);
  wait(request, id);
  if (op == ReduceOp::kAvg) out.div_(size_);
  return out.to(tensor.scalar_type());
}

void MpiCommunicator::send(const torch::Tensor& tensor, int dst, int tag) {
  require_contiguous_cpu(tensor, "send");
  auto id = next_id("send", tensor, false);
  MPI_Request request;
  MPI_Isend(tensor.data_ptr(), count_of(tensor), mpi_datatype(tensor.scalar_type()), dst, tag, comm_, &request);
  wait(request, id);
}

void MpiCommunicator::recv(torch::Tensor& tensor, int src, int tag) {
  require_contiguous_cpu(tensor, "recv");
  auto id = next_id("recv", tensor, false);
  MPI_Request request;
  MPI_Irecv(tensor.data_ptr(), count_of(tensor), mpi_datatype(tensor.scalar_type()), src, tag, comm_, &request);
  wait(request, id);
}

void MpiCommunicator::barrier() {
  auto id = next_id("barrier", torch::Tensor());
  MPI_Request request;
  MPI_Ibarrier(comm_, &request);
  wait(request, id);
}

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  MPI_Comm sub;
  MPI_Comm_split(comm_, color, key, &sub);
  return std::make_shared<MpiCommunicator>(sub, name);
}

}  // namespace mpitrain::comm
