// The NCCL backend of Communicator: device tensors over NCCL on a stream of its own, CPU tensors over the MPI communicator it wraps.
#include "runtime/device/nccl_communicator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <vector>

#include "runtime/comm/agreement.h"
#include "runtime/comm/completion_watchdog.h"
#include "runtime/device/compute_stream.h"
#include "runtime/device/cuda_error.h"

namespace mpitrain::device {

namespace {

using comm::ReduceOp;

ncclDataType_t nccl_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kChar: return ncclInt8;
    case at::kByte:
    case at::kBool: return ncclUint8;
    default: throw std::invalid_argument(std::string("no NCCL datatype for ") + c10::toString(type));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

// The physical GPU behind a device index: host name and PCI bus id (a binding such as Slurm's
// --gpu-bind shows each task its own GPU as device 0; two ranks may also see the same one).
std::string gpu_identity(int index) {
  char bus[64] = {0};
  MPITRAIN_CUDA(cudaDeviceGetPCIBusId(bus, sizeof bus - 1, index));
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + " GPU " + bus;
}

cudaEvent_t new_event() {
  cudaEvent_t event = nullptr;
  MPITRAIN_CUDA(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

// An event shared by a collective's Work and the watchdog: destroyed when both are done with it.
using SharedEvent = std::shared_ptr<CUevent_st>;
SharedEvent new_shared_event() { return SharedEvent(new_event(), [](cudaEvent_t e) { cudaEventDestroy(e); }); }

// Complete once the collective's event has fired. wait() makes LibTorch's stream wait for it
// (no host synchronisation) and only then lets the tensors go: anything that reuses their
// memory is queued on that stream, after the collective.
class EventWork : public comm::Work {
 public:
  // `launched_on`: LibTorch's stream when the collective was queued (its tensors' stream).
  EventWork(SharedEvent done, cudaStream_t launched_on, std::vector<torch::Tensor> keep)
      : done_(std::move(done)), launched_on_(launched_on), keep_(std::move(keep)) {}
  ~EventWork() override {
    if (!waited_) cudaStreamWaitEvent(launched_on_, done_.get(), 0);
  }
  bool test() override {
    const auto status = cudaEventQuery(done_.get());
    if (status == cudaErrorNotReady) {
      (void)cudaGetLastError();  // not an error: LibTorch's next launch check must not see it
      return false;
    }
    MPITRAIN_CUDA(status);
    return true;
  }
  void wait() override {
    // The stream the tensors were used on first (their memory's reuse is ordered there), and
    // the caller's, should it be another.
    MPITRAIN_CUDA(cudaStreamWaitEvent(launched_on_, done_.get(), 0));
    const auto current = compute_stream();
    if (current != launched_on_) MPITRAIN_CUDA(cudaStreamWaitEvent(current, done_.get(), 0));
    waited_ = true;
    keep_.clear();
  }

 private:
  SharedEvent done_;
  cudaStream_t launched_on_;
  std::vector<torch::Tensor> keep_;
  bool waited_ = false;
};

}  // namespace

struct NcclCommunicator::Impl {
  at::Device device{at::kCUDA};
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::string name;
  std::uint64_t sequence = 0;
  // No host thread waits for a collective: this one ends the job when one never completes.
  std::unique_ptr<comm::CompletionWatchdog> watchdog = std::make_unique<comm::CompletionWatchdog>();

  void require(const torch::Tensor& t, const char* operation) const {
    if (!t.is_contiguous() || t.device() != device)
      throw std::invalid_argument(std::string(operation) + ": the NCCL backend needs a contiguous tensor on " +
                                  device.str() + " (got " + t.device().str() + ")");
  }
  // Orders this communicator's stream after everything LibTorch has queued so far.
  cudaStream_t begin() const {
    auto ready = new_event();
    MPITRAIN_CUDA(cudaEventRecord(ready, compute_stream()));
    MPITRAIN_CUDA(cudaStreamWaitEvent(stream, ready, 0));
    MPITRAIN_CUDA(cudaEventDestroy(ready));  // released once it has fired
    return stream;
  }
  std::unique_ptr<comm::Work> finish(std::vector<torch::Tensor> keep, const char* operation) {
    // One event for the Work and the watchdog (which may poll it after the Work is gone).
    auto done = new_shared_event();
    MPITRAIN_CUDA(cudaEventRecord(done.get(), stream));
    char what[160];
    std::snprintf(what, sizeof what, "NCCL %s #%llu on '%s' (%lld bytes)", operation,
                  static_cast<unsigned long long>(sequence++), name.c_str(),
                  static_cast<long long>(keep.empty() ? 0 : keep.front().nbytes()));
    watchdog->watch(what, [done, index = device.index()] {
      cudaSetDevice(index);  // the watchdog's thread has its own current device
      return cudaEventQuery(done.get()) != cudaErrorNotReady;
    });
    return std::make_unique<EventWork>(done, compute_stream(), std::move(keep));
  }
};

NcclCommunicator::NcclCommunicator(std::shared_ptr<comm::Communicator> host, const at::Device& device)
    : host_(std::move(host)), impl_(std::make_unique<Impl>()) {
  if (!device.is_cuda() || !device.has_index()) throw std::invalid_argument("NCCL communicator: needs a GPU device");
  impl_->device = device;
  impl_->name = host_->name();
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (host_->rank() == 0) MPITRAIN_NCCL(ncclGetUniqueId(&id));
  auto bytes = torch::from_blob(&id, {static_cast<std::int64_t>(sizeof(id))}, torch::kUInt8).clone();
  host_->broadcast(bytes, 0);
  std::memcpy(&id, bytes.data_ptr(), sizeof(id));
  // What can fail on one rank alone is agreed first: a rank that threw before joining
  // ncclCommInitRank would leave the others waiting in it.
  constexpr std::int64_t kIdentityBytes = 320;
  auto identity = torch::zeros({kIdentityBytes}, torch::kUInt8);
  comm::run_agreed(*host_, [&] {
    MPITRAIN_CUDA(cudaSetDevice(device.index()));
    MPITRAIN_CUDA(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
    const auto mine = gpu_identity(device.index());
    std::memcpy(identity.data_ptr(), mine.data(), std::min<std::size_t>(mine.size(), kIdentityBytes - 1));
  });
  // NCCL refuses two ranks on one GPU (after setting up half its transport): say so first.
  const auto all = host_->allgather(identity);
  comm::run_agreed(*host_, [&] {
    std::map<std::string, int> first_rank;
    for (int r = 0; r < host_->size(); ++r) {
      const std::string gpu(reinterpret_cast<const char*>(all.data_ptr<std::uint8_t>() + r * kIdentityBytes));
      const auto [it, fresh] = first_rank.emplace(gpu, r);
      if (!fresh)
        throw std::runtime_error("ranks " + std::to_string(it->second) + " and " + std::to_string(r) + " of '" +
                                 host_->name() + "' share " + gpu + ": NCCL needs a GPU of its own for each rank");
    }
  });
  MPITRAIN_NCCL(ncclCommInitRank(&impl_->comm, host_->size(), id, host_->rank()));
}

NcclCommunicator::~NcclCommunicator() {
  impl_->watchdog.reset();  // before the stream and events it polls go
  if (impl_->stream) cudaStreamSynchronize(impl_->stream);
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

std::unique_ptr<comm::Work> NcclCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  if (tensor.is_cpu()) return host_->allreduce_async(tensor, op);
  impl_->require(tensor, "allreduce");
  if (op == ReduceOp::kAvg && !tensor.is_floating_point()) throw std::invalid_argument("allreduce: average needs a float tensor");
  const auto stream = impl_->begin();
  MPITRAIN_NCCL(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()),
                              nccl_type(tensor.scalar_type()), nccl_op(op), impl_->comm, stream));
  return impl_->finish({tensor}, "allreduce");
}

void NcclCommunicator::broadcast(torch::Tensor& tensor, int root) {
  if (tensor.is_cpu()) return host_->broadcast(tensor, root);
  impl_->require(tensor, "broadcast");
  const auto stream = impl_->begin();
  MPITRAIN_NCCL(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()),
                              nccl_type(tensor.scalar_type()), root, impl_->comm, stream));
  impl_->finish({tensor}, "broadcast")->wait();
}

torch::Tensor NcclCommunicator::allgatherv(const torch::Tensor& tensor) {
  if (tensor.is_cpu()) return host_->allgatherv(tensor);
  impl_->require(tensor, "allgatherv");
  // Every rank's dim-0 size over MPI, then one broadcast per rank inside an NCCL group.
  auto rows = host_->allgather(torch::tensor({tensor.dim() ? tensor.size(0) : 1}, torch::kInt64));
  const std::int64_t row_elems = comm::row_numel(tensor);
  std::int64_t total_rows = 0;
  std::vector<std::int64_t> first_row;
  for (int r = 0; r < size(); ++r) {
    first_row.push_back(total_rows);
    total_rows += rows[r].item<std::int64_t>();
  }
  auto shape = tensor.sizes().vec();
  if (shape.empty()) shape.push_back(1);
  shape[0] = total_rows;
  auto out = torch::empty(shape, tensor.options());
  const auto stream = impl_->begin();
  const auto type = nccl_type(tensor.scalar_type());
  const auto element = tensor.element_size();
  MPITRAIN_NCCL(ncclGroupStart());
  for (int r = 0; r < size(); ++r) {
    auto* target = static_cast<char*>(out.data_ptr()) + first_row[static_cast<std::size_t>(r)] * row_elems * element;
    const auto count = static_cast<std::size_t>(rows[r].item<std::int64_t>() * row_elems);
    MPITRAIN_NCCL(ncclBroadcast(r == rank() ? tensor.data_ptr() : target, target, count, type, r, impl_->comm, stream));
  }
  MPITRAIN_NCCL(ncclGroupEnd());
  impl_->finish({tensor, out}, "allgatherv")->wait();
  return out;
}

std::unique_ptr<comm::Work> NcclCommunicator::reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                                   ReduceOp op) {
  if (input.is_cpu()) return host_->reduce_scatter_async(input, output, op);
  impl_->require(input, "reduce_scatter");
  impl_->require(output, "reduce_scatter");
  if (output.numel() * size() != input.numel() || output.scalar_type() != input.scalar_type())
    throw std::invalid_argument("reduce_scatter: output must hold input.numel() / size elements of the input's dtype");
  const auto stream = impl_->begin();
  MPITRAIN_NCCL(ncclReduceScatter(input.data_ptr(), output.data_ptr(), static_cast<std::size_t>(output.numel()),
                                  nccl_type(input.scalar_type()), nccl_op(op), impl_->comm, stream));
  return impl_->finish({input, output}, "reduce_scatter");
}

std::unique_ptr<comm::Work> NcclCommunicator::allgather_async(const torch::Tensor& input, torch::Tensor& output) {
  if (input.is_cpu()) return host_->allgather_async(input, output);
  impl_->require(input, "allgather");
  impl_->require(output, "allgather");
  if (output.numel() != input.numel() * size() || output.scalar_type() != input.scalar_type())
    throw std::invalid_argument("allgather: output must hold size x input.numel() elements of the input's dtype");
  const auto stream = impl_->begin();
  MPITRAIN_NCCL(ncclAllGather(input.data_ptr(), output.data_ptr(), static_cast<std::size_t>(input.numel()),
                              nccl_type(input.scalar_type()), impl_->comm, stream));
  return impl_->finish({input, output}, "allgather");
}

void NcclCommunicator::send(const torch::Tensor& tensor, int dst, int tag) {
  if (tensor.is_cpu()) return host_->send(tensor, dst, tag);
  impl_->require(tensor, "send");
  const auto stream = impl_->begin();
  MPITRAIN_NCCL(ncclSend(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), nccl_type(tensor.scalar_type()),
                         dst, impl_->comm, stream));
  impl_->finish({tensor}, "send")->wait();
}

void NcclCommunicator::recv(torch::Tensor& tensor, int src, int tag) {
  if (tensor.is_cpu()) return host_->recv(tensor, src, tag);
  impl_->require(tensor, "recv");
  const auto stream = impl_->begin();
  MPITRAIN_NCCL(ncclRecv(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), nccl_type(tensor.scalar_type()),
                         src, impl_->comm, stream));
  impl_->finish({tensor}, "recv")->wait();
}

void NcclCommunicator::barrier() {
  // Device work already queued is ordered by streams; the barrier is about the processes.
  host_->barrier();
}

std::shared_ptr<comm::Communicator> NcclCommunicator::split(int color, int key, const std::string& name) {
  return std::make_shared<NcclCommunicator>(host_->split(color, key, name), impl_->device);
}

}  // namespace mpitrain::device
