// The building blocks of the architectures, with HF parameter names (weight, bias).
#include "src/models/layers.h"

#include <cmath>
#include <stdexcept>

#include "src/models/deferred_init.h"
#include "src/models/fused/fused_ops.h"

namespace mpitrain::models {

torch::Tensor slice_for_shard(const torch::Tensor& full, const Shard& shard) {
  if (shard.dim < 0) return full;
  auto shape = full.sizes().vec();
  const auto d = static_cast<std::size_t>(shard.dim);
  const auto part_length = shape[d] / shard.parts;
  // View the split dim as [parts, part_length] and take the same slice of every part.
  auto view = shape;
  view[d] = part_length;
  view.insert(view.begin() + static_cast<std::ptrdiff_t>(d), shard.parts);
  const auto length = part_length / shard.count;
  auto local_shape = shape;
  local_shape[d] = shard.parts * length;
  return full.reshape(view).narrow(shard.dim + 1, shard.index * length, length).reshape(local_shape).contiguous();
}

namespace {
thread_local bool skip_initialisation = false, only_shapes = false;
}  // namespace

SkipInitialisation::SkipInitialisation(bool shapes_only)
    : previous_(skip_initialisation), previous_shapes_only_(only_shapes) {
  skip_initialisation = true;
  only_shapes = shapes_only;
}
SkipInitialisation::~SkipInitialisation() {
  skip_initialisation = previous_;
  only_shapes = previous_shapes_only_;
}
bool SkipInitialisation::active() { return skip_initialisation; }
bool SkipInitialisation::shapes_only() { return skip_initialisation && only_shapes; }

torch::Tensor ShardedLayer::register_sharded(const std::string& name, at::IntArrayRef full_shape,
                                             const std::function<torch::Tensor(at::IntArrayRef)>& init,
                                             const Shard& shard) {
  if (shard.dim >= 0) shards_[name] = shard;
  const bool skip = SkipInitialisation::active();
  auto* deferred = skip ? nullptr : DeferredInitialisation::recording();
  if (!skip && !deferred) return register_parameter(name, slice_for_shard(init(full_shape), shard));
  auto local = full_shape.vec();
  if (shard.dim >= 0) local[static_cast<std::size_t>(shard.dim)] /= shard.count;
  auto parameter =
      register_parameter(name, torch::empty(local, SkipInitialisation::shapes_only() ? torch::kMeta : torch::kCPU));
  if (deferred) deferred->record(parameter, full_shape.vec(), init, shard);
  return parameter;
}

namespace {

// The shards of a layer's weight (split along `weight_dim` for this kind) and its bias.
struct LayerShards {
  Shard weight, bias;
};

LayerShards layer_shards(const parallel::TensorParallel* tp, const TpSplit& split, int column_dim, int row_dim) {
  LayerShards s;
  if (!tp || split.kind == TpSplit::kNone) return s;
  const std::int64_t index = split.index >= 0 ? split.index : tp->rank();
  const std::int64_t count = split.count >= 0 ? split.count : tp->size();
  if (split.kind == TpSplit::kColumn) {
    const bool shared = count < tp->size();  // set only for kv heads fewer than the ranks
    s.weight = {column_dim, split.parts, index, count, shared};
    s.bias = {0, split.parts, index, count, shared};
  } else {
    s.weight = {row_dim, 1, index, count, false};  // the bias is added once, after the sum
  }
  return s;
}

bool splits_over_ranks(const TensorParallelPtr& tp) { return tp && tp->size() > 1; }

std::function<torch::Tensor(at::IntArrayRef)> normal(double std) {
  return [std](at::IntArrayRef shape) { return torch::randn(shape) * std; };
}
torch::Tensor zeros(at::IntArrayRef shape) { return torch::zeros(shape); }

}  // namespace

Linear::Linear(std::int64_t in, std::int64_t out, bool with_bias, double init_std, TensorParallelPtr tp, TpSplit split)
    : tp_(std::move(tp)), row_parallel_(split.kind == TpSplit::kRow && splits_over_ranks(tp_)) {
  const auto s = layer_shards(tp_.get(), split, /*column_dim=*/0, /*row_dim=*/1);
  weight = register_sharded("weight", {out, in}, normal(init_std), s.weight);
  if (with_bias) bias = register_sharded("bias", {out}, zeros, s.bias);
}

torch::Tensor Linear::forward(const torch::Tensor& x) {
  if (!row_parallel_) return with_delta(torch::linear(x, weight, bias), x);
  auto y = tp_->reduce_from_region(with_delta(torch::linear(x, weight), x));
  return bias.defined() ? y + bias : y;
}

Conv1D::Conv1D(std::int64_t in, std::int64_t out, double init_std, TensorParallelPtr tp, TpSplit split)
    : tp_(std::move(tp)), row_parallel_(split.kind == TpSplit::kRow && splits_over_ranks(tp_)) {
  const auto s = layer_shards(tp_.get(), split, /*column_dim=*/1, /*row_dim=*/0);
  weight = register_sharded("weight", {in, out}, normal(init_std), s.weight);
  bias = register_sharded("bias", {out}, zeros, s.bias);
}

torch::Tensor Conv1D::forward(const torch::Tensor& x) {
  auto out_shape = x.sizes().vec();
  out_shape.back() = weight.size(1);
  const auto rows = x.reshape({-1, x.size(-1)});
  if (row_parallel_) return (tp_->reduce_from_region(with_delta(torch::mm(rows, weight), rows)) + bias).view(out_shape);
  // addmm as transformers computes it, so the float rounding matches.
  return with_delta(torch::addmm(bias, rows, weight).view(out_shape), x);
}

LayerNorm::LayerNorm(std::int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
  bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor LayerNorm::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps_);
}

RMSNorm::RMSNorm(std::int64_t dim, double eps, bool adds_one) : eps_(eps), adds_one_(adds_one) {
  weight = register_parameter("weight", adds_one ? torch::zeros({dim}) : torch::ones({dim}));
}

torch::Tensor RMSNorm::forward(const torch::Tensor& x) {
  if (fused::rms_norm_fusable(x, weight)) return fused::rms_norm(x, adds_one_ ? 1.0 + weight : weight, eps_);
  const auto input_type = x.scalar_type();
  auto h = x.to(torch::kFloat32);
  auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + eps_);
  if (adds_one_) return (h * (1.0 + weight.to(torch::kFloat32))).to(input_type);
  return weight * h.to(input_type);
}

Embedding::Embedding(std::int64_t count, std::int64_t dim, double init_std, TensorParallelPtr vocab_parallel)
    : tp_(splits_over_ranks(vocab_parallel) ? std::move(vocab_parallel) : nullptr) {
  Shard shard;
  if (tp_) {
    shard = {0, 1, tp_->rank(), tp_->size(), false};
    first_row_ = tp_->rank() * (count / tp_->size());
  }
  weight = register_sharded("weight", {count, dim}, normal(init_std), shard);
}

torch::Tensor Embedding::forward(const torch::Tensor& ids) {
  if (!tp_) return torch::embedding(weight, ids);
  auto outside = (ids < first_row_).logical_or(ids >= first_row_ + weight.size(0));
  auto rows = torch::embedding(weight, (ids - first_row_).masked_fill(outside, 0));
  return tp_->reduce_from_region(rows.masked_fill(outside.unsqueeze(-1), 0));
}

void check_activation_name(const std::string& name) {
  if (name != "gelu" && name != "gelu_new" && name != "gelu_pytorch_tanh" && name != "relu" && name != "silu" &&
      name != "swish")
    throw std::invalid_argument("activation '" + name +
                                "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)");
}

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "gelu_new") {
    // transformers' NewGELUActivation, written out so the rounding matches it.
    const double k = std::sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + torch::tanh(k * (x + 0.044715 * torch::pow(x, 3.0))));
  }
  if (name == "relu") return torch::relu(x);
  if (name == "silu" || name == "swish") return torch::silu(x);
  check_activation_name(name);
  return x;
}

}  // namespace mpitrain::models
