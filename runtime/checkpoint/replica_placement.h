// Where the local tier keeps the copies of each rank's state: on other nodes when the job spans several, each copy a permutation of the ranks.
#pragma once

#include <string>
#include <vector>

namespace mpitrain::checkpoint {

struct ReplicaPlacement {
  // holder[j][r]: the rank that keeps copy j + 2 of rank r's state (copy 1 is r's own); for
  // each j a permutation of the ranks, so every rank sends one copy and receives one per j.
  std::vector<std::vector<int>> holder;
  std::vector<std::vector<int>> source;  // the inverse: source[j][h] is the rank whose copy h keeps
  int nodes = 1;
  bool across_nodes = true;  // every copy on another node than its rank's (false on one node)
  std::string description;   // for the log: how many copies, and where
};

// `node_of_rank`: each rank's node name. `copies`: the state's own copy plus replicas (>= 1;
// more than the ranks are capped at their number). With equally many ranks on each of N > 1
// nodes, copy j + 2 of a rank's state goes j + 1 nodes along (NVRx's clique replication);
// otherwise to the next ranks in node order.
ReplicaPlacement place_replicas(const std::vector<std::string>& node_of_rank, int copies);

}  // namespace mpitrain::checkpoint
