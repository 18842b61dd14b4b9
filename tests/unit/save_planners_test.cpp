// The save's pure planners, without MPI: who writes each block (assign_writers), where each tensor goes (plan_hf_save), the byte runs of a block (for_each_run), balancing and rotation.
#include <gtest/gtest.h>

#include <tuple>

#include "runtime/checkpoint/assign_writers.h"
#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/save_plan.h"

namespace mpitrain::checkpoint {
namespace {

Block block(std::vector<std::int64_t> offsets, std::vector<std::int64_t> sizes) { return {std::move(offsets), std::move(sizes)}; }

// Which ranks write tensor i.
std::vector<int> writers_of(const std::vector<std::vector<bool>>& writes, std::size_t i) {
  std::vector<int> out;
  for (std::size_t r = 0; r < writes[i].size(); ++r)
    if (writes[i][r]) out.push_back(static_cast<int>(r));
  return out;
}

TEST(AssignWriters, EveryDistinctBlockHasExactlyOneWriterAmongItsHolders) {
  // 4 ranks, dp 2 x tp 2: a replicated norm, a column-parallel weight (dim-0 halves over tp,
  // replicated over dp), and a ZeRO shard (every rank its own rows, one rank none).
  const std::vector<TensorBlocks> tensors = {
      {{block({0}, {8}), block({0}, {8}), block({0}, {8}), block({0}, {8})}, 4},
      {{block({0, 0}, {2, 4}), block({2, 0}, {2, 4}), block({0, 0}, {2, 4}), block({2, 0}, {2, 4})}, 4},
      {{block({0}, {3}), block({3}, {3}), block({6}, {1}), block({7}, {0})}, 2},
  };
  for (const auto mode : {SaveMode::kGather, SaveMode::kParallel, SaveMode::kSharded}) {
    const auto writes = assign_writers(tensors, mode);
    ASSERT_EQ(writes.size(), 3u);
    EXPECT_EQ(writers_of(writes, 0).size(), 1u);
    // The column halves: one writer each, among the ranks holding that half (0 and 2 hold the
    // first, 1 and 3 the second).
    const auto column = writers_of(writes, 1);
    ASSERT_EQ(column.size(), 2u);
    EXPECT_NE(column[0] % 2, column[1] % 2);
    // Distinct shards: every holder writes its own; the rank holding nothing writes nothing.
    EXPECT_EQ(writers_of(writes, 2), (std::vector<int>{0, 1, 2}));
  }
}

TEST(AssignWriters, GatherTakesTheLowestHolderSoRankZeroReceivesOnlyWhatItLacks) {
  const std::vector<TensorBlocks> tensors = {
      {{block({0}, {8}), block({0}, {8}), block({0}, {8})}, 4},
      {{block({0}, {1}), block({1}, {1}), block({1}, {1})}, 4},
  };
  const auto writes = assign_writers(tensors, SaveMode::kGather);
  EXPECT_EQ(writers_of(writes, 0), (std::vector<int>{0}));
  EXPECT_EQ(writers_of(writes, 1), (std::vector<int>{0, 1}));
}

TEST(AssignWriters, ParallelSpreadsReplicatedBytesEvenlyLargestFirst) {
  // Six replicated tensors on 3 ranks: 600, 500, 400, 300, 200, 100 bytes. Largest first onto
  // the least loaded: ranks get 600+100, 500+200, 400+300 = 700 each.
  std::vector<TensorBlocks> tensors;
  for (const std::int64_t n : {600, 500, 400, 300, 200, 100})
    tensors.push_back({{block({0}, {n}), block({0}, {n}), block({0}, {n})}, 1});
  const auto writes = assign_writers(tensors, SaveMode::kParallel);
  std::vector<std::int64_t> load(3, 0);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto w = writers_of(writes, i);
    ASSERT_EQ(w.size(), 1u);
    load[static_cast<std::size_t>(w[0])] += tensors[i].by_rank[0].numel();
  }
  EXPECT_EQ(load, (std::vector<std::int64_t>{700, 700, 700}));
  // The same inputs, the same answer (every rank computes it alone).
  EXPECT_EQ(assign_writers(tensors, SaveMode::kParallel), writes);
}

TEST(AssignWriters, ATensorNobodyHoldsHasNoWriter) {
  const std::vector<TensorBlocks> tensors = {{{block({0}, {0}), block({0}, {0})}, 4}};
  EXPECT_TRUE(writers_of(assign_writers(tensors, SaveMode::kParallel), 0).empty());
  EXPECT_THROW(parse_save_mode("shared"), std::invalid_argument);
  EXPECT_EQ(parse_save_mode("sharded"), SaveMode::kSharded);
}

TEST(PlanHfSave, OneFileBelowTheLimitShardsInStateDictOrderAbove) {
  const std::vector<TensorSpec> specs = {
      {"a", DType::F32, {10}}, {"b", DType::F32, {20}}, {"c", DType::BF16, {30}}, {"d", DType::F32, {5}}};
  const auto single = plan_hf_save(specs, 1'000'000);
  EXPECT_FALSE(single.sharded);
  ASSERT_EQ(single.files.size(), 1u);
  EXPECT_EQ(single.files[0].name, "model.safetensors");
  EXPECT_EQ(single.total_bytes, 40u + 80 + 60 + 20);
  // Every tensor's bytes inside the file, after the preamble, none overlapping.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  for (const auto& t : single.tensors) {
    EXPECT_GE(t.offset, single.files[0].preamble.size());
    spans.push_back({t.offset, t.offset + spec_nbytes(t.spec)});
  }
  std::sort(spans.begin(), spans.end());
  for (std::size_t i = 1; i < spans.size(); ++i) EXPECT_LE(spans[i - 1].second, spans[i].first);
  EXPECT_LE(spans.back().second, single.files[0].size);

  const auto sharded = plan_hf_save(specs, 100);  // a: 40, b: 80 > 100 - 40: a new shard, as transformers splits
  EXPECT_TRUE(sharded.sharded);
  ASSERT_EQ(sharded.files.size(), 3u);
  EXPECT_EQ(sharded.files[0].name, "model-00001-of-00003.safetensors");
  EXPECT_EQ(sharded.tensor("a").file, 0u);
  EXPECT_EQ(sharded.tensor("b").file, 1u);
  EXPECT_EQ(sharded.tensor("c").file, 2u);
  EXPECT_EQ(sharded.tensor("d").file, 2u);
  EXPECT_EQ(sharded.index.weight_map.at("d"), "model-00003-of-00003.safetensors");
  EXPECT_EQ(sharded.index.total_size, 200u);
}

TEST(ForEachRun, ABlockIsTheContiguousRunsItOccupiesInPackedOrder) {
  using Run = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>;
  std::vector<Run> runs;
  const auto collect = [&](std::uint64_t in_tensor, std::uint64_t in_block, std::uint64_t length) {
    runs.emplace_back(in_tensor, in_block, length);
  };
  // Rows 1-2 of a [4, 5] float32 tensor: one run (whole trailing dim merged).
  for_each_run({4, 5}, 4, block({1, 0}, {2, 5}), collect);
  EXPECT_EQ(runs, (std::vector<Run>{{20, 0, 40}}));
  // Columns 2-3 of the same tensor: a run of 2 elements per row.
  runs.clear();
  for_each_run({4, 5}, 4, block({0, 2}, {4, 2}), collect);
  EXPECT_EQ(runs, (std::vector<Run>{{8, 0, 8}, {28, 8, 8}, {48, 16, 8}, {68, 24, 8}}));
  // A 3-D block whole in its last two dims merges them; an empty block has no runs.
  runs.clear();
  for_each_run({3, 2, 2}, 2, block({1, 0, 0}, {1, 2, 2}), collect);
  EXPECT_EQ(runs, (std::vector<Run>{{8, 0, 8}}));
  runs.clear();
  for_each_run({3, 2}, 4, block({0, 0}, {0, 2}), collect);
  EXPECT_TRUE(runs.empty());
}

TEST(BalanceWriters, LargestFirstOntoTheLeastLoaded) {
  // 50 -> 0; 30 -> 1; 20 -> 1 (30 < 50); 10 -> 0 or 1 at 50 each: the lower.
  EXPECT_EQ(balance_writers({10, 50, 30, 20}, 2), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(balance_writers({5, 5, 5}, 1), (std::vector<int>{0, 0, 0}));
}

std::vector<CheckpointEntry> steps(std::initializer_list<std::int64_t> list) {
  std::vector<CheckpointEntry> out;
  for (auto s : list) out.push_back({s, "/run/checkpoint-" + std::to_string(s)});
  return out;
}

TEST(CheckpointsToRotate, KeepsTheNewestAndNeverTheBest) {
  EXPECT_TRUE(checkpoints_to_rotate(steps({10, 20, 30}), 0, "").empty());  // no limit
  EXPECT_EQ(checkpoints_to_rotate(steps({10, 20, 30}), 2, ""), (std::vector<std::string>{"/run/checkpoint-10"}));
  // The best counts as one of the kept ones: limit 2 keeps it and the newest.
  EXPECT_EQ(checkpoints_to_rotate(steps({10, 20, 30, 40}), 2, "/elsewhere/checkpoint-20"),
            (std::vector<std::string>{"/run/checkpoint-10", "/run/checkpoint-30"}));
  // Limit 1 with a best: the best and the newest stay (transformers keeps both).
  EXPECT_EQ(checkpoints_to_rotate(steps({10, 20, 30}), 1, "/run/checkpoint-10"),
            (std::vector<std::string>{"/run/checkpoint-20"}));
}

}  // namespace
}  // namespace mpitrain::checkpoint
