// AdamW with torch.optim.AdamW's arithmetic, whose state is plain named tensors (saved as safetensors).
#include "src/train/adamw.h"

#include <cmath>
#include <map>

namespace mpitrain::train {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> parameters, AdamWOptions options) : options_(options) {
  for (auto& [name, p] : parameters)
    slots_.push_back({name, p, torch::zeros_like(p, torch::MemoryFormat::Contiguous),
                      torch::zeros_like(p, torch::MemoryFormat::Contiguous), p.dim() >= 2});
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2_sqrt = std::sqrt(1 - std::pow(options_.beta2, static_cast<double>(steps_)));
  std::vector<torch::Tensor> parameters, grads, exp_avgs, exp_avg_sqs, decayed;
  for (auto& s : slots_) {
    if (!s.parameter.grad().defined()) continue;
    parameters.push_back(s.parameter);
    grads.push_back(s.parameter.grad());
    exp_avgs.push_back(s.exp_avg);
    exp_avg_sqs.push_back(s.exp_avg_sq);
    if (s.decay && options_.weight_decay != 0) decayed.push_back(s.parameter);
  }
  if (parameters.empty()) return;
  // The same element-wise arithmetic as one tensor at a time, as a handful of multi-tensor
  // kernels: on a GPU, ~10 launches a step instead of ~10 per parameter.
  if (!decayed.empty()) at::_foreach_mul_(decayed, 1 - lr * options_.weight_decay);
  at::_foreach_mul_(exp_avgs, options_.beta1);
  at::_foreach_add_(exp_avgs, grads, 1 - options_.beta1);
  at::_foreach_mul_(exp_avg_sqs, options_.beta2);
  at::_foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - options_.beta2);
  auto denominators = at::_foreach_sqrt(exp_avg_sqs);
  at::_foreach_div_(denominators, bias2_sqrt);
  at::_foreach_add_(denominators, options_.eps);
  at::_foreach_addcdiv_(parameters, exp_avgs, denominators, -lr / bias1);
}

std::vector<AdamW::Moment> AdamW::moments() const {
  std::vector<Moment> out;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    out.push_back({"exp_avg." + slots_[i].name, slots_[i].exp_avg, i});
    out.push_back({"exp_avg_sq." + slots_[i].name, slots_[i].exp_avg_sq, i});
  }
  return out;
}

std::uint64_t AdamW::state_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& s : slots_) bytes += s.exp_avg.nbytes() + s.exp_avg_sq.nbytes();
  return bytes;
}

void AdamW::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, std::int64_t steps) {
  std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    const std::pair<std::string, torch::Tensor*> moments[] = {{"exp_avg.", &s.exp_avg}, {"exp_avg_sq.", &s.exp_avg_sq}};
    for (const auto& [prefix, target] : moments) {
      auto it = by_name.find(prefix + s.name);
      if (it == by_name.end()) throw std::runtime_error("optimizer state has no tensor '" + prefix + s.name + "'");
      if (it->second.sizes() != target->sizes())
        throw std::runtime_error("optimizer state tensor '" + prefix + s.name + "' has the wrong shape");
      target->copy_(it->second);
    }
  }
  steps_ = steps;
}

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& parameters, double max_norm,
                             const std::vector<double>& shares, comm::Communicator* group) {
  torch::NoGradGuard no_grad;
  // Everything stays where the gradients are (float64): no read back to the host, so a GPU
  // never idles waiting for it.
  torch::Tensor squares;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const auto& p = parameters[i];
    if (!p.grad().defined()) continue;
    auto term = p.grad().to(torch::kDouble).pow(2).sum() * (shares.empty() ? 1.0 : shares[i]);
    squares = squares.defined() ? squares + term : term;
  }
  if (!squares.defined()) squares = torch::zeros({}, torch::kFloat64);
  if (group && group->size() > 1) {
    squares = squares.reshape({1}).contiguous();
    group->allreduce(squares);
  }
  const auto norm = squares.sqrt().reshape({});
  if (max_norm <= 0) return norm;
  // torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), never above 1 (a
  // product with exactly 1 leaves a gradient bit for bit as it was).
  const auto coefficient = (torch::scalar_tensor(max_norm, norm.options()) / (norm + 1e-6)).clamp_max(1.0);
  for (const auto& p : parameters)
    if (p.grad().defined()) p.grad().mul_(coefficient);
  return norm;
}

}  // namespace mpitrain::train
