// Data-parallel gradient reduction in buckets, launched from autograd hooks in one fixed order on all ranks.
#include "runtime/parallel/gradient_reducer.h"

#include "runtime/parallel/gradient_hooks.h"

namespace mpitrain::parallel {

GradientReducer::GradientReducer(std::shared_ptr<comm::Communicator> dp, std::vector<torch::Tensor> parameters,
                                 ReducerOptions options)
    : dp_(std::move(dp)), parameters_(std::move(parameters)),
      op_(options.loss_is_prescaled ? comm::ReduceOp::kSum : comm::ReduceOp::kAvg) {
  bucket_of_.resize(parameters_.size());
  // Group in reverse order, splitting by size and dtype.
  std::vector<std::vector<std::size_t>> groups;
  std::size_t current_bytes = 0;
  for (std::size_t k = parameters_.size(); k-- > 0;) {
    const auto& p = parameters_[k];
    const auto bytes = static_cast<std::size_t>(p.numel()) * p.element_size();
    const bool new_group = groups.empty() || current_bytes + bytes > options.bucket_bytes ||
                           parameters_[groups.back().front()].scalar_type() != p.scalar_type();
    if (new_group) {
      groups.emplace_back();
      current_bytes = 0;
    }
    groups.back().push_back(k);
    current_bytes += bytes;
  }
  torch::NoGradGuard no_grad;
  for (auto& group : groups) {
    Bucket bucket;
    std::int64_t total = 0;
    for (auto k : group) total += parameters_[k].numel();
    bucket.buffer = torch::zeros({total}, parameters_[group.front()].options().requires_grad(false));
    std::int64_t offset = 0;
    for (auto k : group) {
      auto& p = parameters_[k];
      auto view = bucket.buffer.narrow(0, offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) view.copy_(p.grad());
      p.mutable_grad() = view;
      offset += p.numel();
      bucket_of_[k] = buckets_.size();
    }
    bucket.parameters = group;
    buckets_.push_back(std::move(bucket));
  }
  accumulators_ = on_each_gradient(parameters_, [this](std::size_t k) { on_gradient_ready(k); });
}

GradientReducer::~GradientReducer() {
  // Never leave a collective in flight: the other ranks would wait for it forever.
  for (auto& b : buckets_)
    if (b.work) b.work->wait();
}

std::size_t GradientReducer::bucket_bytes(std::size_t i) const {
  return static_cast<std::size_t>(buckets_[i].buffer.nbytes());
}

void GradientReducer::prepare_for_backward(bool sync) {
  active_ = sync;
  next_to_launch_ = 0;
  for (auto& b : buckets_) b.pending = b.parameters.size();
}

void GradientReducer::on_gradient_ready(std::size_t parameter) {
  if (!active_) return;
  auto& bucket = buckets_[bucket_of_[parameter]];
  if (bucket.pending > 0) --bucket.pending;
  launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].pending == 0) {
    auto& bucket = buckets_[next_to_launch_++];
    bucket.work = dp_->allreduce_async(bucket.buffer, op_);
  }
}

void GradientReducer::finalize() {
  if (!active_) return;
  // Parameters that took no part in this step's graph never fire their hook; their bucket
  // still has to be reduced, in order, on every rank.
  for (auto& b : buckets_) b.pending = 0;
  launch_ready_buckets();
  for (auto& b : buckets_) {
    b.work->wait();
    b.work.reset();
  }
  active_ = false;
}

void GradientReducer::zero_grad() {
  for (auto& b : buckets_) b.buffer.zero_();
}

void broadcast_parameters(comm::Communicator& comm, const std::vector<torch::Tensor>& parameters, int root) {
  torch::NoGradGuard no_grad;
  for (const auto& p : parameters) {
    auto data = p.detach();
    if (data.is_contiguous()) {
      comm.broadcast(data, root);
    } else {
      auto copy = data.contiguous();
      comm.broadcast(copy, root);
      data.copy_(copy);
    }
  }
}

}  // namespace mpitrain::parallel
