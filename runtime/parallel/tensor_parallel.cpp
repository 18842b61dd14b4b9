// Megatron's tensor-parallel operators over a Communicator: the f/g conjugates, a logits gather and vocab-parallel cross-entropy.
#include "runtime/parallel/tensor_parallel.h"


namespace mpitrain::parallel {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd functions carry only IValues; the TensorParallel outlives every graph built over
// it (the model holds it), so its address is passed as an integer.
std::int64_t handle(const TensorParallel* tp) { return reinterpret_cast<std::int64_t>(tp); }
const TensorParallel& group_of(std::int64_t value) { return *reinterpret_cast<const TensorParallel*>(value); }

torch::Tensor all_reduced_counted(const torch::Tensor& x, std::int64_t group) {
  auto out = x.contiguous().clone();
  group_of(group).allreduce_counted(out);
  return out;
}

torch::Tensor all_reduced(const torch::Tensor& x, comm::Communicator& c, comm::ReduceOp op = comm::ReduceOp::kSum) {
  auto out = x.contiguous().clone();
  c.allreduce(out, op);
  return out;
}

struct CopyToRegion : public torch::autograd::Function<CopyToRegion> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, std::int64_t group) {
    ctx->saved_data["group"] = group;
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_reduced_counted(grads[0], ctx->saved_data["group"].toInt()), torch::Tensor()};
  }
};

struct ReduceFromRegion : public torch::autograd::Function<ReduceFromRegion> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& x, std::int64_t group) {
    return all_reduced_counted(x, group);
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0], torch::Tensor()}; }
};

struct GatherLastDim : public torch::autograd::Function<GatherLastDim> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, std::int64_t group) {
    auto& c = *group_of(group).communicator();
    ctx->saved_data["rank"] = static_cast<std::int64_t>(c.rank());
    ctx->saved_data["width"] = x.size(-1);
    return c.allgather(x.movedim(-1, 0).contiguous()).movedim(0, -1).contiguous();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto width = ctx->saved_data["width"].toInt();
    return {grads[0].narrow(-1, ctx->saved_data["rank"].toInt() * width, width).contiguous(), torch::Tensor()};
  }
};

struct VocabParallelCrossEntropy : public torch::autograd::Function<VocabParallelCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                               std::int64_t vocab_start, std::int64_t group) {
    auto& c = *group_of(group).communicator();
    const auto width = logits.size(-1);
    // Subtracting the global max keeps exp() finite, as a softmax over the full row would.
    auto max = all_reduced(std::get<0>(logits.max(-1)), c, comm::ReduceOp::kMax);
    auto shifted = logits - max.unsqueeze(-1);
    auto in_range = (targets >= vocab_start).logical_and(targets < vocab_start + width);
    auto local_target = (targets - vocab_start).masked_fill(in_range.logical_not(), 0);
    auto target_logit = shifted.gather(-1, local_target.unsqueeze(-1)).squeeze(-1).masked_fill(in_range.logical_not(), 0);
    target_logit = all_reduced(target_logit, c);
    auto exp = shifted.exp();
    auto sum_exp = all_reduced(exp.sum(-1), c);
    auto valid = targets != -100;
    auto loss = (sum_exp.log() - target_logit).masked_fill(valid.logical_not(), 0);
    ctx->save_for_backward({exp.div_(sum_exp.unsqueeze(-1)), local_target, in_range, valid});
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto grad = saved[0].clone();  // softmax over the full row, this rank's columns
    grad.scatter_add_(-1, saved[1].unsqueeze(-1), -saved[2].to(grad.scalar_type()).unsqueeze(-1));
    grad.mul_((grads[0] * saved[3].to(grad.scalar_type())).unsqueeze(-1));
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

TensorParallel::TensorParallel(std::shared_ptr<comm::Communicator> tp) : tp_(std::move(tp)) {}

torch::Tensor TensorParallel::copy_to_region(const torch::Tensor& x) const {
  return size() == 1 ? x : CopyToRegion::apply(x, handle(this));
}

torch::Tensor TensorParallel::reduce_from_region(const torch::Tensor& x) const {
  return size() == 1 ? x : ReduceFromRegion::apply(x, handle(this));
}

torch::Tensor TensorParallel::gather_last_dim(const torch::Tensor& x) const {
  return size() == 1 ? x : GatherLastDim::apply(x, handle(this));
}

torch::Tensor TensorParallel::vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                                           std::int64_t vocab_start) const {
  if (size() == 1)
    return torch::nn::functional::cross_entropy(
        logits.to(torch::kFloat32), targets,
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kNone));
  return VocabParallelCrossEntropy::apply(logits.to(torch::kFloat32), targets, vocab_start, handle(this));
}

void TensorParallel::allreduce_counted(torch::Tensor& tensor) const {
  device::IntervalTimer* timer = nullptr;
  {
    std::lock_guard<std::mutex> lock(timer_mutex_);
    if (!timer_) timer_ = device::interval_timer_for(tensor.device());
    timer = timer_.get();
  }
  timer->measure([&] { tp_->allreduce(tensor); });
  bytes_ += static_cast<std::int64_t>(tensor.nbytes());
  ++calls_;
}

TensorParallel::Stats TensorParallel::stats() const {
  std::lock_guard<std::mutex> lock(timer_mutex_);
  return {calls_.load(), bytes_.load(), timer_ ? timer_->seconds() : 0.0};
}

}  // namespace mpitrain::parallel
