// Which rank writes each block of a save: a pure function of every rank's layout (no MPI here).
#include "runtime/checkpoint/assign_writers.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>

namespace mpitrain::checkpoint {

SaveMode parse_save_mode(const std::string& name) {
  if (name == "gather") return SaveMode::kGather;
  if (name == "parallel") return SaveMode::kParallel;
  if (name == "sharded") return SaveMode::kSharded;
  throw std::invalid_argument("save_mode '" + name + "' is not one of gather, parallel, sharded");
}

namespace {

// The ranks holding one block of one tensor (ascending), and its bytes.
struct CopyGroup {
  std::size_t tensor;
  std::vector<int> ranks;
  std::uint64_t bytes;
};

std::vector<CopyGroup> copy_groups(const std::vector<TensorBlocks>& tensors) {
  std::vector<CopyGroup> groups;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    std::map<std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>, std::size_t> by_block;
    const auto& blocks = tensors[i].by_rank;
    for (std::size_t r = 0; r < blocks.size(); ++r) {
      if (blocks[r].empty()) continue;
      const auto key = std::make_pair(blocks[r].offsets, blocks[r].sizes);
      auto found = by_block.find(key);
      if (found == by_block.end()) {
        found = by_block.emplace(key, groups.size()).first;
        groups.push_back({i, {}, static_cast<std::uint64_t>(blocks[r].numel()) * tensors[i].element_size});
      }
      groups[found->second].ranks.push_back(static_cast<int>(r));
    }
  }
  return groups;
}

}  // namespace

std::vector<std::vector<bool>> assign_writers(const std::vector<TensorBlocks>& tensors, SaveMode mode) {
  std::vector<std::vector<bool>> writes;
  std::size_t ranks = 0;
  for (const auto& t : tensors) {
    writes.emplace_back(t.by_rank.size(), false);
    ranks = std::max(ranks, t.by_rank.size());
  }
  const auto groups = copy_groups(tensors);
  if (mode == SaveMode::kGather) {
    for (const auto& g : groups) writes[g.tensor][static_cast<std::size_t>(g.ranks.front())] = true;
    return writes;
  }
  std::vector<std::size_t> order(groups.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return groups[a].bytes > groups[b].bytes; });
  std::vector<std::uint64_t> load(ranks, 0);
  for (const auto k : order) {
    const auto& g = groups[k];
    int writer = g.ranks.front();
    for (const int r : g.ranks)
      if (load[static_cast<std::size_t>(r)] < load[static_cast<std::size_t>(writer)]) writer = r;
    load[static_cast<std::size_t>(writer)] += g.bytes;
    writes[g.tensor][static_cast<std::size_t>(writer)] = true;
  }
  return writes;
}

}  // namespace mpitrain::checkpoint
