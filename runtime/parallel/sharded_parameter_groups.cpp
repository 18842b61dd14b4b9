// ZeRO-3's parameter lifetime: each group all-gathered before its forward and its backward (the next ones prefetched), and freed after.
#include <algorithm>

#include "runtime/parallel/sharded_data_parallel.h"

namespace mpitrain::parallel {

ShardedDataParallel::Unit* ShardedDataParallel::unit_of_group(int group) {
  if (group < 0 || static_cast<std::size_t>(group) >= group_unit_.size() || group_unit_[group] < 0) return nullptr;
  return &units_[static_cast<std::size_t>(group_unit_[group])];
}

void ShardedDataParallel::materialise(int group) {
  auto* unit = unit_of_group(group);
  if (!unit || unit->resident) return;
  if (!unit->gather) start_gather(*unit);
  unpack_gather(*unit);
  unit->resident = true;
  peak_gathered_ = std::max(peak_gathered_, resident_bytes());
}

void ShardedDataParallel::release(int group) {
  if (auto* unit = unit_of_group(group); unit && unit->resident) release_unit(*unit);
}

void ShardedDataParallel::release_unit(Unit& unit) {
  for (auto i : unit.parameters)
    parameters_[i].set_data(torch::empty({0}, torch::TensorOptions().dtype(options_.compute_dtype).device(options_.device)));
  unit.resident = false;
}

std::uint64_t ShardedDataParallel::resident_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& p : parameters_) bytes += p.nbytes();
  return bytes;
}

void ShardedDataParallel::prefetch(const std::vector<int>& groups) {
  for (int g : groups)
    if (auto* unit = unit_of_group(g); unit && !unit->resident && !unit->gather) start_gather(*unit);
}

std::size_t ShardedDataParallel::training_trace_end() const {
  // The previous forward's calls with gradients come first (evaluations after).
  return std::min(last_grad_calls_, last_calls_.size());
}

bool ShardedDataParallel::used_again_later(int group, std::size_t call) const {
  for (auto c = call + 1; c < training_trace_end(); ++c)
    if (std::find(last_calls_[c].begin(), last_calls_[c].end(), group) != last_calls_[c].end()) return true;
  return false;
}

bool ShardedDataParallel::used_before(int group, std::size_t call) const {
  for (std::size_t c = 0; c < call && c < calls_.size(); ++c)
    if (std::find(calls_[c].begin(), calls_[c].end(), group) != calls_[c].end()) return true;
  return false;
}

void ShardedDataParallel::before_forward(const std::vector<int>& groups) {
  if (options_.stage != ShardingStage::kZero3) return;
  // The previous part's groups go now, unless this part uses them too.
  for (int g : release_pending_)
    if (std::find(groups.begin(), groups.end(), g) == groups.end()) release(g);
  release_pending_.clear();
  const auto call = calls_.size();
  calls_.push_back(groups);
  if (torch::GradMode::is_enabled()) ++grad_calls_;
  for (int g : groups) materialise(g);
  // The next groups the previous forward used, while this one computes (a training forward
  // looks no further than the previous one's training calls: evaluations come after them).
  const auto trace_end = torch::GradMode::is_enabled() ? training_trace_end() : last_calls_.size();
  for (std::size_t ahead = 1; ahead <= static_cast<std::size_t>(std::max(0, options_.prefetch)); ++ahead)
    if (call + ahead < trace_end) prefetch(last_calls_[call + ahead]);
}

torch::Tensor ShardedDataParallel::after_forward(const std::vector<int>& groups, const torch::Tensor& output) {
  if (options_.stage != ShardingStage::kZero3) return output;
  if (!output.requires_grad()) {  // no backward will need them
    for (int g : groups) release(g);
    return output;
  }
  const auto call = calls_.size() - 1;
  // Freed when the next part starts: the forward's last part thus stays for the backward,
  // which needs it first (FSDP keeps its root so). A group this forward uses again later (a
  // tied embedding for the head) stays until its backward is done (DeepSpeed's reuse).
  for (int g : groups)
    if (!used_again_later(g, call)) release_pending_.push_back(g);
  // Before this part's backward runs: its parameters again, and the part before it in flight.
  output.register_hook([this, groups, call](const torch::Tensor&) {
    // The part after this one has finished its backward: its groups holding frozen parameters
    // go now, unless an earlier part (which backward reaches later) uses them too.
    if (call + 1 < calls_.size())
      for (int g : calls_[call + 1])
        if (auto* unit = unit_of_group(g); unit && unit->has_frozen && !used_before(g, call + 1)) release(g);
    for (int g : groups) materialise(g);
    for (std::size_t back = 1; back <= static_cast<std::size_t>(std::max(0, options_.prefetch)) && back <= call; ++back)
      prefetch(calls_[call - back]);
  });
  return output;
}

}  // namespace mpitrain::parallel
