// Where the local tier keeps the copies of each rank's state: on other nodes when the job spans several, each copy a permutation of the ranks.
#include "runtime/checkpoint/replica_placement.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace mpitrain::checkpoint {

ReplicaPlacement place_replicas(const std::vector<std::string>& node_of_rank, int copies) {
  if (copies < 1) throw std::invalid_argument("local_replicas must be at least 1, got " + std::to_string(copies));
  const int world = static_cast<int>(node_of_rank.size());
  // Nodes in order of their first rank; the ranks ordered by node, then by rank.
  std::map<std::string, int> node_index;
  std::vector<std::vector<int>> ranks_of_node;
  for (int r = 0; r < world; ++r) {
    const auto [it, added] = node_index.emplace(node_of_rank[r], static_cast<int>(ranks_of_node.size()));
    if (added) ranks_of_node.emplace_back();
    ranks_of_node[it->second].push_back(r);
  }
  std::vector<int> order;
  for (const auto& ranks : ranks_of_node) order.insert(order.end(), ranks.begin(), ranks.end());
  std::vector<int> position(world);
  for (int p = 0; p < world; ++p) position[order[p]] = p;
  ReplicaPlacement placement;
  placement.nodes = static_cast<int>(ranks_of_node.size());
  const auto per_node = ranks_of_node.front().size();
  const bool even = std::all_of(ranks_of_node.begin(), ranks_of_node.end(),
                                [&](const std::vector<int>& ranks) { return ranks.size() == per_node; });
  const int stride = placement.nodes > 1 && even ? static_cast<int>(per_node) : 1;
  const int kept = std::min(copies, world);
  for (int j = 1; j < kept; ++j) {
    std::vector<int> holder(world), source(world);
    for (int r = 0; r < world; ++r) {
      const int h = order[(position[r] + j * stride) % world];
      holder[r] = h;
      source[h] = r;
      if (node_of_rank[h] == node_of_rank[r]) placement.across_nodes = false;
    }
    placement.holder.push_back(std::move(holder));
    placement.source.push_back(std::move(source));
  }
  auto& d = placement.description;
  d = std::to_string(kept) + (kept == 1 ? " copy" : " copies") + " of each rank's state";
  if (kept < copies) d += " (local_replicas " + std::to_string(copies) + " capped at the " + std::to_string(world) + " ranks)";
  if (kept == 1) d += ": its own, none elsewhere";
  else if (placement.nodes == 1) d += ": the job runs on one node, so its replicas share it and do not survive losing it";
  else if (placement.across_nodes) d += ": its own and " + std::to_string(kept - 1) + " on other nodes";
  else d += ": some replicas share their rank's node (" + std::to_string(placement.nodes) + " nodes" +
            (even ? ", fewer than the copies" : " of unequal rank counts") + ")";
  return placement;
}

}  // namespace mpitrain::checkpoint
