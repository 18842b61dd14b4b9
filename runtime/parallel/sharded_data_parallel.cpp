// Sharded data parallelism (ZeRO-1/2/3): per-parameter dim-0 shards of optimizer state, gradients and parameters over the dp group.
#include "runtime/parallel/sharded_data_parallel.h"

#include <algorithm>
#include <stdexcept>

#include "runtime/comm/agreement.h"
#include "runtime/parallel/gradient_hooks.h"

namespace mpitrain::parallel {

ShardingStage parse_sharding_stage(const std::string& text) {
  if (text == "none") return ShardingStage::kNone;
  if (text == "zero1") return ShardingStage::kZero1;
  if (text == "zero2") return ShardingStage::kZero2;
  if (text == "zero3") return ShardingStage::kZero3;
  throw std::invalid_argument("parallel.sharding '" + text + "' is not one of none, zero1, zero2, zero3");
}

Dim0Shard dim0_shard(std::int64_t rows, std::int64_t numel, int rank, int ranks) {
  Dim0Shard s;
  s.rows = rows;
  s.row_numel = rows > 0 ? numel / rows : 0;
  s.rows_per_rank = (rows + ranks - 1) / ranks;
  s.start = std::min(rows, s.rows_per_rank * rank);
  s.count = std::min(rows, s.start + s.rows_per_rank) - s.start;
  return s;
}

namespace {

// Where this rank's shard of `p` lives: [count, rest] when the rows are dim 0; a fused view's
// outer rows keep the parameter's number of dims (weight decay goes by it).
std::vector<std::int64_t> shard_shape(const torch::Tensor& p, const Dim0Shard& s) {
  if (p.dim() > 0 && p.size(0) == s.rows) {
    auto shape = p.sizes().vec();
    shape[0] = s.count;
    return shape;
  }
  if (p.dim() <= 1) return {s.count * s.row_numel};
  return {s.count, s.row_numel};
}

// Copies a whole parameter's elements into the [ranks, chunk] buffer, each rank's rows at
// column `offset`; the padding columns are left as they are (zero).
void scatter_rows(const torch::Tensor& flat, const torch::Tensor& buffer2d, std::int64_t offset, const Dim0Shard& s) {
  const auto per = s.rows_per_rank * s.row_numel, total = s.rows * s.row_numel;
  if (per == 0) return;
  auto columns = buffer2d.narrow(1, offset, per);
  const auto whole = total / per, rest = total - whole * per;
  if (whole > 0) columns.narrow(0, 0, whole).copy_(flat.narrow(0, 0, whole * per).view({whole, per}));
  if (rest > 0) columns[whole].narrow(0, 0, rest).copy_(flat.narrow(0, whole * per, rest));
}

// The inverse: a parameter's elements from every rank's columns, padding dropped.
void gather_rows(const torch::Tensor& buffer2d, std::int64_t offset, const Dim0Shard& s, const torch::Tensor& flat) {
  const auto per = s.rows_per_rank * s.row_numel, total = s.rows * s.row_numel;
  if (per == 0) return;
  auto columns = buffer2d.narrow(1, offset, per);
  const auto whole = total / per, rest = total - whole * per;
  if (whole > 0) flat.narrow(0, 0, whole * per).view({whole, per}).copy_(columns.narrow(0, 0, whole));
  if (rest > 0) flat.narrow(0, whole * per, rest).copy_(columns[whole].narrow(0, 0, rest));
}

}  // namespace

ShardedDataParallel::ShardedDataParallel(std::shared_ptr<comm::Communicator> dp, std::vector<torch::Tensor> parameters,
                                         std::vector<std::int64_t> rows, std::vector<int> groups,
                                         ShardingOptions options)
    : dp_(std::move(dp)), parameters_(std::move(parameters)), options_(options) {
  if (options_.stage == ShardingStage::kNone) throw std::invalid_argument("ShardedDataParallel needs a zero stage");
  // Taking the shards may fail on one rank only (a deferred initialisation or the device
  // running out of memory): agreed, so every rank throws here instead of the others waiting
  // in the first collective for the timeout.
  comm::run_agreed(*dp_, [&] { take_shards(rows); });

  // Units, in the order their reductions launch (roughly the order backward produces them).
  std::vector<std::vector<std::size_t>> members;
  if (options_.stage == ShardingStage::kZero3) {
    const int count = groups.empty() ? 0 : *std::max_element(groups.begin(), groups.end()) + 1;
    members.resize(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < parameters_.size(); ++i) members[static_cast<std::size_t>(groups[i])].push_back(i);
    std::reverse(members.begin(), members.end());
    group_unit_.assign(static_cast<std::size_t>(count), -1);
  } else {
    std::size_t bytes = 0;
    for (std::size_t k = parameters_.size(); k-- > 0;) {
      const auto size = static_cast<std::size_t>(parameters_[k].nbytes());
      if (members.empty() || bytes + size > options_.bucket_bytes) {
        members.emplace_back();
        bytes = 0;
      }
      members.back().push_back(k);
      bytes += size;
    }
  }
  unit_of_.resize(parameters_.size());
  for (std::size_t u = 0; u < members.size(); ++u) {
    if (members[u].empty()) continue;
    Unit unit;
    for (auto i : members[u]) {
      unit.parameters.push_back(i);
      unit.offsets.push_back(unit.chunk);
      const auto elements = layout_[i].rows_per_rank * layout_[i].row_numel;
      unit.chunk += elements;
      unit.reduce_offsets.push_back(frozen(i) ? -1 : unit.reduce_chunk);
      if (frozen(i)) {
        unit.has_frozen = true;
      } else {
        unit.reduce_chunk += elements;
        ++unit.trained;
      }
      unit_of_[i] = units_.size();
    }
    if (options_.stage == ShardingStage::kZero3)
      group_unit_[static_cast<std::size_t>(groups[unit.parameters.front()])] = static_cast<int>(units_.size());
    units_.push_back(std::move(unit));
  }
  std::vector<torch::Tensor> trained;
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    if (!frozen(i)) trained.push_back(parameters_[i]), index.push_back(i);
  accumulators_ = on_each_gradient(trained, [this, index](std::size_t k) { on_gradient_ready(index[k]); });
  if (options_.stage == ShardingStage::kZero3)
    for (std::size_t g = 0; g < group_unit_.size(); ++g) release(static_cast<int>(g));
}

void ShardedDataParallel::take_shards(const std::vector<std::int64_t>& rows) {
  torch::NoGradGuard no_grad;
  const int rank = dp_->rank(), ranks = dp_->size();
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    auto& p = parameters_[i];
    if (options_.before_sharding) options_.before_sharding(p);
    layout_.push_back(dim0_shard(rows[i], p.numel(), rank, ranks));
    const auto& s = layout_.back();
    auto shard = p.detach().reshape({-1}).narrow(0, s.start * s.row_numel, s.count * s.row_numel);
    shards_.push_back(shard.to(options_.device, torch::kFloat32, /*non_blocking=*/false, /*copy=*/true)
                          .view(shard_shape(p, s))
                          .requires_grad_(!frozen(i)));
    full_shapes_.push_back(p.sizes().vec());
    if (options_.stage == ShardingStage::kZero3)
      // Only shards from here on: this one goes now. Its gradient hook (below) records the
      // shape, dtype and device its gradients will have: a one-element stand-in has them.
      p.set_data(torch::empty({}, torch::TensorOptions().dtype(options_.compute_dtype).device(options_.device))
                     .expand(full_shapes_.back()));
    else if (p.scalar_type() != options_.compute_dtype || p.device() != options_.device)
      // Mixed precision: the parameters the model computes with take the compute dtype.
      p.set_data(p.detach().to(options_.device, options_.compute_dtype));
  }
}

ShardedDataParallel::~ShardedDataParallel() {
  // Never leave a collective in flight: the other ranks would wait for it forever.
  for (auto& unit : units_) {
    if (unit.reduce) unit.reduce->wait();
    if (unit.gather) unit.gather->wait();
  }
}

void ShardedDataParallel::prepare_for_backward(bool sync) {
  finalize();  // zero2/3 micro-steps: the previous backward's reductions land in the shards first
  // zero1 reduces only at the sync step; zero2/3 at every micro-step.
  active_ = sync || options_.stage != ShardingStage::kZero1;
  next_to_launch_ = 0;
  for (auto& unit : units_) unit.pending = unit.trained;
  last_calls_ = std::move(calls_);
  calls_.clear();
  last_grad_calls_ = grad_calls_;
  grad_calls_ = 0;
}

void ShardedDataParallel::on_gradient_ready(std::size_t parameter) {
  if (!active_) return;
  auto& unit = units_[unit_of_[parameter]];
  if (unit.pending > 0) --unit.pending;
  launch_ready_reductions();
}

void ShardedDataParallel::launch_ready_reductions() {
  while (next_to_launch_ < units_.size() && units_[next_to_launch_].pending == 0)
    launch_reduction(units_[next_to_launch_++]);
}

void ShardedDataParallel::launch_reduction(Unit& unit) {
  torch::NoGradGuard no_grad;
  // Its backward is done: the parameters go too. Frozen ones have no gradient to say that
  // their last use is over: the part before releases them when its backward starts.
  if (options_.stage == ShardingStage::kZero3 && !unit.has_frozen) release_unit(unit);
  if (unit.trained == 0) return;  // nothing to reduce (on every rank alike)
  const auto ranks = dp_->size();
  unit.reduce_input =
      torch::zeros({ranks * unit.reduce_chunk}, torch::TensorOptions().dtype(options_.compute_dtype).device(options_.device));
  const auto buffer2d = unit.reduce_input.view({ranks, unit.reduce_chunk});
  for (std::size_t j = 0; j < unit.parameters.size(); ++j) {
    if (unit.reduce_offsets[j] < 0) continue;
    auto& p = parameters_[unit.parameters[j]];
    if (p.grad().defined()) scatter_rows(p.grad().reshape({-1}), buffer2d, unit.reduce_offsets[j], layout_[unit.parameters[j]]);
    // zero2/3 hold full gradients only until they are packed; zero1 keeps them for accumulation.
    if (options_.stage != ShardingStage::kZero1) p.mutable_grad().reset();
  }
  unit.reduce_output = torch::empty({unit.reduce_chunk}, unit.reduce_input.options());
  traffic_.reduce_scatter_bytes += unit.reduce_input.nbytes();
  unit.reduce = dp_->reduce_scatter_async(unit.reduce_input, unit.reduce_output, comm::ReduceOp::kSum);
}

void ShardedDataParallel::accumulate_reduction(Unit& unit) {
  if (!unit.reduce) return;
  unit.reduce->wait();
  unit.reduce.reset();
  torch::NoGradGuard no_grad;
  for (std::size_t j = 0; j < unit.parameters.size(); ++j) {
    if (unit.reduce_offsets[j] < 0) continue;
    const auto i = unit.parameters[j];
    const auto& s = layout_[i];
    auto& shard = shards_[i];
    auto part = unit.reduce_output.narrow(0, unit.reduce_offsets[j], s.count * s.row_numel).view(shard.sizes());
    if (!shard.grad().defined())
      shard.mutable_grad() = part.to(torch::kFloat32).clone();
    else
      shard.mutable_grad().add_(part);
  }
  unit.reduce_input = torch::Tensor();
  unit.reduce_output = torch::Tensor();
}

void ShardedDataParallel::finalize() {
  if (!active_) return;
  // Parameters outside this step's graph never fire their hook: their units are reduced
  // too (zeros), in order, on every rank.
  for (auto& unit : units_) unit.pending = 0;
  launch_ready_reductions();
  for (auto& unit : units_) accumulate_reduction(unit);
  active_ = false;
}

void ShardedDataParallel::zero_grad() {
  torch::NoGradGuard no_grad;
  for (auto& shard : shards_)
    if (shard.grad().defined()) shard.mutable_grad().zero_();
  for (auto& p : parameters_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

torch::Tensor ShardedDataParallel::pack_shards(const Unit& unit) const {
  auto chunk = torch::zeros({unit.chunk}, torch::TensorOptions().dtype(options_.compute_dtype).device(options_.device));
  for (std::size_t j = 0; j < unit.parameters.size(); ++j) {
    const auto i = unit.parameters[j];
    const auto& s = layout_[i];
    chunk.narrow(0, unit.offsets[j], s.count * s.row_numel).copy_(shards_[i].detach().reshape({-1}));
  }
  return chunk;
}

void ShardedDataParallel::start_gather(Unit& unit) {
  auto chunk = pack_shards(unit);
  unit.gathered = torch::empty({dp_->size() * unit.chunk}, chunk.options());
  traffic_.allgather_bytes += unit.gathered.nbytes();
  // The chunk must live until the gather ends: the Work's task holds its own reference.
  unit.gather = dp_->allgather_async(chunk, unit.gathered);
}

void ShardedDataParallel::unpack_gather(Unit& unit) {
  unit.gather->wait();
  unit.gather.reset();
  torch::NoGradGuard no_grad;
  const auto buffer2d = unit.gathered.view({dp_->size(), unit.chunk});
  for (std::size_t j = 0; j < unit.parameters.size(); ++j) {
    const auto i = unit.parameters[j];
    auto& p = parameters_[i];
    if (p.numel() == 0) p.set_data(torch::empty(full_shapes_[i], unit.gathered.options()));
    // Through a tensor with its own version counter: autograd saved these parameters (or views
    // of them) in forward and must not see them as modified when they come back for backward.
    gather_rows(buffer2d, unit.offsets[j], layout_[i], p.variable_data().view({-1}));
  }
  unit.gathered = torch::Tensor();
}

void ShardedDataParallel::shards_updated() {
  for (auto& unit : units_) {
    // A prefetched gather holds the old values: finish it and drop it.
    if (unit.gather) {
      unit.gather->wait();
      unit.gather.reset();
      unit.gathered = torch::Tensor();
    }
  }
  if (options_.stage == ShardingStage::kZero3) {
    for (std::size_t g = 0; g < group_unit_.size(); ++g) release(static_cast<int>(g));
    return;
  }
  // All gathers first (they overlap each other's copy-out), then the copies in order.
  for (auto& unit : units_) start_gather(unit);
  for (auto& unit : units_) unpack_gather(unit);
}

ShardedMemory ShardedDataParallel::memory() const {
  ShardedMemory m;
  for (const auto& p : parameters_) {
    m.parameters += p.nbytes();
    if (p.grad().defined()) m.gradients += p.grad().nbytes();
  }
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    (frozen(i) ? m.frozen_shards : m.master_shards) += shards_[i].nbytes();
    if (shards_[i].grad().defined()) m.gradients += shards_[i].grad().nbytes();
  }
  m.peak_gathered = peak_gathered_;
  return m;
}

}  // namespace mpitrain::parallel
