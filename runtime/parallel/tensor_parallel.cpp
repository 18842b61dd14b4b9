// Megatron's tensor-parallel operators over a Communicator: the f/g conjugates, a logits gather and vocab-parallel cross-entropy.
#include "runtime/parallel/tensor_parallel.h"

namespace mpitrain::parallel {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd functions carry only IValues; the communicator outlives every graph built over it
// (the model holds the TensorParallel), so its address is passed as an integer.
std::int64_t handle(comm::Communicator* c) { return reinterpret_cast<std::int64_t>(c); }
comm::Communicator& from_handle(const c10::IValue& value) {
  return *reinterpret_cast<comm::Communicator*>(value.toInt());
}

torch::Tensor all_reduced(const torch::Tensor& x, comm::Communicator& c, comm::ReduceOp op = comm::ReduceOp::kSum) {
  auto out = x.contiguous().clone();
  c.allreduce(out, op);
  return out;
}

struct CopyToRegion : public torch::autograd::Function<CopyToRegion> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, std::int64_t comm) {
    ctx->saved_data["comm"] = comm;
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_reduced(grads[0], from_handle(ctx->saved_data["comm"])), torch::Tensor()};
  }
};

struct ReduceFromRegion : public torch::autograd::Function<ReduceFromRegion> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& x, std::int64_t comm) {
    return all_reduced(x, *reinterpret_cast<comm::Communicator*>(comm));
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0], torch::Tensor()}; }
};

struct GatherLastDim : public torch::autograd::Function<GatherLastDim> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, std::int64_t comm) {
    auto& c = *reinterpret_cast<comm::Communicator*>(comm);
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
                               std::int64_t vocab_start, std::int64_t comm) {
    auto& c = *reinterpret_cast<comm::Communicator*>(comm);
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
  return size() == 1 ? x : CopyToRegion::apply(x, handle(tp_.get()));
}

torch::Tensor TensorParallel::reduce_from_region(const torch::Tensor& x) const {
  return size() == 1 ? x : ReduceFromRegion::apply(x, handle(tp_.get()));
}

torch::Tensor TensorParallel::gather_last_dim(const torch::Tensor& x) const {
  return size() == 1 ? x : GatherLastDim::apply(x, handle(tp_.get()));
}

torch::Tensor TensorParallel::vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                                           std::int64_t vocab_start) const {
  if (size() == 1)
    return torch::nn::functional::cross_entropy(
        logits.to(torch::kFloat32), targets,
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kNone));
  return VocabParallelCrossEntropy::apply(logits.to(torch::kFloat32), targets, vocab_start, handle(tp_.get()));
}

}  // namespace mpitrain::parallel
