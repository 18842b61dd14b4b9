// `mpitrain train` with tensor_parallel_size > 1: dp x tp trains like dp alone, saves the fixtures' bytes, resumes across layouts.
#include <gtest/gtest.h>

#include <tuple>

#include "tests/cli/layout_train_fixture.h"

namespace mpitrain {
namespace {

class TpTrain : public LayoutTrain {};

TEST_F(TpTrain, DataTimesTensorParallelTrainsLikeDataParallelAlone) {
  // Global batch 4 over 20 steps: dp 4 (reference), dp 2 x tp 2, and dp 1 x tp 2.
  const json base = {{"max_steps", 20}};
  auto r = run(4, "train " + llama_config("dp4", {{"max_steps", 20}, {"per_device_train_batch_size", 1}}, 1));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("dp4"));
  ASSERT_EQ(reference.size(), 20u);
  EXPECT_LT(reference.back(), reference.front() - 0.3);
  for (const auto& [np, tp, batch] : {std::tuple<int, int, int>{4, 2, 2}, {2, 2, 4}}) {
    const auto name = "np" + std::to_string(np) + "_tp" + std::to_string(tp);
    r = run(np, "train " + llama_config(name, {{"max_steps", 20}, {"per_device_train_batch_size", batch}}, tp));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find(std::to_string(np / tp) + " data-parallel x " + std::to_string(tp) + " tensor-parallel"),
              std::string::npos) << r.out;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size());
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    // The saved directory is whole (tp slices put back) and within fp32 reordering of dp alone.
    EXPECT_LT(max_weight_difference(out(name), out("dp4")), 1e-4) << name;
    // The summary times the tp all-reduces and the exposed dp wait (as fractions of the run).
    json summary;
    for (const auto& row : metrics(out(name)))
      if (row.contains("train_runtime")) summary = row;
    ASSERT_FALSE(summary.is_null()) << name;
    EXPECT_GT(summary.value("tp_allreduce_calls", 0), 0) << summary.dump();
    EXPECT_GT(summary.value("tp_allreduce_fraction", 0.0), 0.0) << summary.dump();
    EXPECT_LE(summary.value("tp_allreduce_fraction", 2.0), 1.0) << summary.dump();
    EXPECT_GE(summary.value("exposed_comm_fraction", -1.0), 0.0) << summary.dump();
    EXPECT_LE(summary.value("exposed_comm_fraction", 2.0), 1.0) << summary.dump();
  }
}

TEST_F(TpTrain, StartedFromAFixtureEveryLayoutSavesTheFixtureBytes) {
  // (model, ranks, tp, save_mode): max_steps=0 loads each rank's slices and saves them back.
  const std::vector<std::tuple<std::string, int, int, std::string>> cases = {
      {"llama", 2, 2, "gather"},     {"llama", 2, 2, "parallel"}, {"llama", 4, 2, "parallel"},
      {"llama", 4, 4, "gather"},     {"llama_tied", 2, 2, "parallel"}, {"gpt2", 2, 2, "gather"},
      {"gpt2", 4, 4, "parallel"},    {"bert_seqcls", 2, 2, "parallel"}, {"bert_seqcls", 4, 4, "gather"}};
  for (const auto& [model, np, tp, mode] : cases) {
    const auto name = model + "_np" + std::to_string(np) + "_tp" + std::to_string(tp) + "_" + mode;
    const auto config = fixture_config(name, fixture(model + "/single"), model == "bert_seqcls",
                                       {{"max_steps", 0}, {"save_mode", mode}});
    const auto r = run(np, "train " + config + " --tensor_parallel_size=" + std::to_string(tp));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/model.safetensors") ==
                testing::read_bytes(fixture(model + "/single/model.safetensors"))) << name;
  }
}

TEST_F(TpTrain, LayoutsTheModelOrWorldDoNotAllowAreOneLineErrors) {
  expect_one_line_error(run(4, "train " + llama_config("tp3", {}, 3)),
                        "tensor_parallel_size 3 does not divide the 4 ranks");
  // The byte tokenizer's 259 entries cannot be split over 2 ranks.
  expect_one_line_error(run(2, "train " + write_config("vocab", {}) + " --tensor_parallel_size=2"),
                        "vocab_size 259 is not divisible by tensor_parallel_size 2");
}

}  // namespace
}  // namespace mpitrain
