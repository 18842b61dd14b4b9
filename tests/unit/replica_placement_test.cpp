// Where the local tier's replicas go: on other nodes when there are several, each copy a permutation, capped copies said so.
#include <gtest/gtest.h>

#include <algorithm>

#include "runtime/checkpoint/local_tier_paths.h"
#include "runtime/checkpoint/replica_placement.h"

namespace mpitrain::checkpoint {
namespace {

bool is_permutation_with_inverse(const std::vector<int>& holder, const std::vector<int>& source) {
  for (std::size_t r = 0; r < holder.size(); ++r)
    if (source.at(holder[r]) != static_cast<int>(r)) return false;
  auto sorted = holder;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t r = 0; r < sorted.size(); ++r)
    if (sorted[r] != static_cast<int>(r)) return false;
  return true;
}

TEST(ReplicaPlacement, CopiesGoToOtherNodes) {
  // Two nodes of two ranks, interleaved in rank order as a round-robin launcher places them.
  const auto p = place_replicas({"a", "b", "a", "b"}, 2);
  ASSERT_EQ(p.holder.size(), 1u);
  EXPECT_TRUE(p.across_nodes);
  EXPECT_EQ(p.nodes, 2);
  for (int r = 0; r < 4; ++r) EXPECT_NE(p.holder[0][r] % 2, r % 2) << r;
  EXPECT_TRUE(is_permutation_with_inverse(p.holder[0], p.source[0]));
  EXPECT_NE(p.description.find("its own and 1 on other nodes"), std::string::npos) << p.description;
}

TEST(ReplicaPlacement, ThreeCopiesOnThreeNodesLandOnBothOthers) {
  const auto p = place_replicas({"a", "a", "b", "b", "c", "c"}, 3);
  ASSERT_EQ(p.holder.size(), 2u);
  EXPECT_TRUE(p.across_nodes);
  for (int r = 0; r < 6; ++r) {
    EXPECT_NE(p.holder[0][r] / 2, r / 2);
    EXPECT_NE(p.holder[1][r] / 2, r / 2);
    EXPECT_NE(p.holder[0][r] / 2, p.holder[1][r] / 2);
  }
  for (std::size_t j = 0; j < 2; ++j) EXPECT_TRUE(is_permutation_with_inverse(p.holder[j], p.source[j]));
}

TEST(ReplicaPlacement, OneNodeAndUnevenNodesAreSaidSo) {
  auto p = place_replicas({"a", "a", "a"}, 2);
  EXPECT_FALSE(p.across_nodes);
  EXPECT_EQ(p.holder[0], (std::vector<int>{1, 2, 0}));
  EXPECT_NE(p.description.find("runs on one node"), std::string::npos);
  p = place_replicas({"a", "a", "b"}, 2);
  EXPECT_TRUE(is_permutation_with_inverse(p.holder[0], p.source[0]));
  EXPECT_NE(p.description.find("unequal rank counts"), std::string::npos) << p.description;
  p = place_replicas({"a", "b"}, 5);
  EXPECT_EQ(p.holder.size(), 1u);
  EXPECT_NE(p.description.find("capped at the 2 ranks"), std::string::npos) << p.description;
  p = place_replicas({"a", "b"}, 1);
  EXPECT_TRUE(p.holder.empty());
  EXPECT_THROW(place_replicas({"a"}, 0), std::invalid_argument);
}

TEST(LocalTierPaths, NamesParseBackAndNodeNamesStayOneComponent) {
  EXPECT_EQ(parse_step_dir_name(step_dir_name(40)), 40);
  EXPECT_EQ(parse_staging_dir_name(staging_dir_name(7)), 7);
  EXPECT_EQ(parse_step_dir_name(".tmp-step-7"), -1);
  EXPECT_EQ(parse_step_dir_name("step-4x"), -1);
  EXPECT_EQ(node_dir_name("../etc"), ".._etc");
  EXPECT_EQ(node_dir_name(".."), "node");
  EXPECT_EQ(state_file_name(3), "state-00003.safetensors");
  EXPECT_NE(local_job_dir("/dev/shm", "/runs/a"), local_job_dir("/dev/shm", "/runs/b"));
}

}  // namespace
}  // namespace mpitrain::checkpoint
