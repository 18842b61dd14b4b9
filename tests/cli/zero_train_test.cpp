// `mpitrain train` with parallel.sharding zero1/2/3: equal to plain DP, the ZeRO memory and traffic, fixture bytes, resume on any layout.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "tests/cli/layout_train_fixture.h"

namespace mpitrain {
namespace {

class ZeroTrain : public LayoutTrain {
 protected:
  // Elements of the saved model: P in ZeRO's formulas.
  static double parameter_count(const std::string& dir) {
    checkpoint::SafetensorsFile file(dir + "/model.safetensors");
    double count = 0;
    for (const auto& e : file.header().tensors) count += static_cast<double>(e.numel());
    return count;
  }
  static double tensor_numel(const std::string& dir, const std::string& name) {
    return static_cast<double>(checkpoint::SafetensorsFile(dir + "/model.safetensors").entry(name).numel());
  }
};

TEST_F(ZeroTrain, EveryStageTrainsLikeDataParallelWithZeroMemoryAndTraffic) {
  // 20 steps of 2 accumulated micro-batches (zero2/3 reduce-scatter each one): the same
  // losses and weights as plain DP at np 2 and 4; per-rank bytes by ZeRO's formulas. Untied
  // (a tied embedding is all-gathered again for the head: more traffic than the formula).
  for (int np : {2, 4}) {
    const json training = {{"max_steps", 20}, {"per_device_train_batch_size", 4 / np},
                           {"gradient_accumulation_steps", 2}};
    const auto reference_name = "none_np" + std::to_string(np);
    auto r = run(np, "train " + llama_config(reference_name, training, 1, "none", false));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto reference = losses(out(reference_name));
    ASSERT_EQ(reference.size(), 20u);
    EXPECT_LT(reference.back(), reference.front() - 0.3);
    const double p = parameter_count(out(reference_name)), n = np;
    const auto dp = summary(out(reference_name));
    EXPECT_EQ(dp["memory_parameter_bytes"].get<double>(), 4 * p);
    EXPECT_EQ(dp["memory_gradient_bytes"].get<double>(), 4 * p);
    EXPECT_EQ(dp["memory_optimizer_bytes"].get<double>(), 8 * p);
    const double dp_traffic = dp["comm_bytes_per_rank_per_step"].get<double>();
    // Padding to equal slices adds at most one row per tensor and rank: under 1% here.
    const auto near = [](double value, double expected) { return std::abs(value / expected - 1) < 0.01; };
    for (const std::string stage : {"zero1", "zero2", "zero3"}) {
      const auto name = stage + "_np" + std::to_string(np);
      r = run(np, "train " + llama_config(name, training, 1, stage, false));
      ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
      const auto ours = losses(out(name));
      ASSERT_EQ(ours.size(), reference.size()) << name;
      for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 1e-5) << name << " step " << i + 1;
      EXPECT_LT(max_weight_difference(out(name), out(reference_name)), 1e-5) << name;
      // The global gradient norm (clipping at 1.0 is active) summed over the shards.
      const auto rows = metrics(out(name)), reference_rows = metrics(out(reference_name));
      for (std::size_t i = 0; i < rows.size() && i < reference_rows.size(); ++i) {
        if (!rows[i].contains("grad_norm")) continue;
        EXPECT_NEAR(rows[i]["grad_norm"].get<double>(), reference_rows[i]["grad_norm"].get<double>(), 1e-4) << name;
      }
      const auto s = summary(out(name));
      const double params = s["memory_parameter_bytes"], grads = s["memory_gradient_bytes"],
                   optimizer = s["memory_optimizer_bytes"], traffic = s["comm_bytes_per_rank_per_step"];
      // Optimizer: float32 master shard + 2 moments = 12 P / N for every stage.
      EXPECT_TRUE(near(optimizer, 12 * p / n)) << name << " " << optimizer;
      if (stage == "zero1") {
        EXPECT_EQ(params, 4 * p) << name;
        EXPECT_TRUE(near(grads, 4 * p + 4 * p / n)) << name << " " << grads;  // full gradients kept
      } else {
        EXPECT_TRUE(near(grads, 4 * p / n)) << name << " " << grads;
        EXPECT_EQ(params, stage == "zero2" ? 4 * p : 0.0) << name;
      }
      if (stage == "zero3") {
        EXPECT_TRUE(near(params + grads + optimizer, 16 * p / n)) << name;
      }
      // Per optimizer step of 2 micro-batches, against DP's one all-reduce (= a reduce-scatter
      // + an all-gather): zero1 the same; zero2 reduce-scatters each micro-batch (1.5x); zero3
      // also all-gathers twice per micro-batch, forward and backward (3x; 1.5x with one),
      // except the head: the forward's last part stays gathered for the backward.
      const double head = tensor_numel(out(reference_name), "lm_head.weight");
      const double expected = stage == "zero1" ? 1.0 : stage == "zero2" ? 1.5 : 3.0 - head / p;
      EXPECT_TRUE(near(traffic / dp_traffic, expected)) << name << " traffic ratio " << traffic / dp_traffic;
    }
  }
}

TEST_F(ZeroTrain, Zero3GathersATiedEmbeddingOncePerMicroBatch) {
  // The embedding is used first and again as the head: it stays gathered from its forward to
  // the end of its backward (after the first micro-batch, which has no trace to go by yet).
  const json training = {{"max_steps", 20}, {"per_device_train_batch_size", 2}, {"gradient_accumulation_steps", 2}};
  auto r = run(2, "train " + llama_config("tied_none", training, 1, "none", true));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(2, "train " + llama_config("tied_zero3", training, 1, "zero3", true));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("tied_none")), ours = losses(out("tied_zero3"));
  ASSERT_EQ(ours.size(), reference.size());
  for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 1e-5) << "step " << i + 1;
  EXPECT_LT(max_weight_difference(out("tied_zero3"), out("tied_none")), 1e-5);
  const double p = parameter_count(out("tied_none")), embedding = tensor_numel(out("tied_none"), "model.embed_tokens.weight");
  const double micro_batches = 40;
  // Per micro-batch: forward P, backward P - E, reduce-scatter P; the first forward gathers E twice.
  const double expected = (micro_batches * (3 * p - embedding) + embedding) / (micro_batches * p);
  const double traffic = summary(out("tied_zero3"))["comm_bytes_per_rank_per_step"],
               dp_traffic = summary(out("tied_none"))["comm_bytes_per_rank_per_step"];
  EXPECT_LT(std::abs(traffic / dp_traffic / expected - 1), 0.01) << traffic / dp_traffic << " vs " << expected;
}

TEST_F(ZeroTrain, Zero3EvaluatesASplitTheRanksShareUnevenly) {
  // Under zero3 every eval forward all-gathers over dp: with an odd number of eval samples on
  // 2 ranks, one rank has a batch fewer and must still take part (it hung before).
  std::int64_t seq_len = 32;
  while (data::Hdf5Dataset(data(), "eval", seq_len).size() % 2 == 0) ++seq_len;
  const json training = {{"max_steps", 4},          {"eval_strategy", "steps"}, {"eval_steps", 2},
                         {"per_device_eval_batch_size", 1}};
  std::vector<double> eval_losses[2];
  for (const std::string sharding : {"none", "zero3"}) {
    const auto name = "uneven_eval_" + sharding;
    const auto r = run(2, "train " + write_config(name, training,
                                                  {{"data", {{"seq_len", seq_len}}}, {"parallel", {{"sharding", sharding}}}}));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    for (const auto& row : metrics(out(name)))
      if (row.contains("eval_loss")) eval_losses[sharding == "zero3"].push_back(row["eval_loss"].get<double>());
  }
  ASSERT_EQ(eval_losses[0].size(), 2u);
  ASSERT_EQ(eval_losses[1].size(), eval_losses[0].size());
  for (std::size_t i = 0; i < eval_losses[0].size(); ++i) EXPECT_NEAR(eval_losses[1][i], eval_losses[0][i], 2e-4) << i;
}

TEST_F(ZeroTrain, ComposesWithTensorParallelism) {
  // dp 2 x tp 2 with each stage against dp 4 alone, global batch 4.
  auto r = run(4, "train " + llama_config("dp4", {{"max_steps", 20}, {"per_device_train_batch_size", 1}}, 1));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("dp4"));
  // zero3 once more with gradient_checkpointing: layers recomputed in backward, inside the
  // all-gathers zero3 runs for the backward, with tp's collectives recomputed too.
  for (const std::string stage : {"zero1", "zero2", "zero3", "zero3_checkpointed"}) {
    const auto name = "tp2_" + stage;
    const bool checkpointed = stage == "zero3_checkpointed";
    r = run(4, "train " + llama_config(name, {{"max_steps", 20}, {"per_device_train_batch_size", 2},
                                              {"gradient_checkpointing", checkpointed}},
                                       2, checkpointed ? "zero3" : stage));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size()) << name;
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    EXPECT_LT(max_weight_difference(out(name), out("dp4")), 1e-4) << name;
    // 12 P / 4 (a quarter of the shard and moments: half by tp, half again by dp) against
    // DP's 8 P: 0.375, plus what tp replicates (norms, the one kv head): 0.406 here.
    EXPECT_LT(summary(out(name))["memory_optimizer_bytes"].get<double>(),
              0.45 * summary(out("dp4"))["memory_optimizer_bytes"].get<double>()) << name;
  }
}

TEST_F(ZeroTrain, GradientCheckpointingTrainsLikeKeepingTheActivations) {
  // Data parallel (the reducer's hooks fire inside the recomputation's backward) and zero2,
  // against the same runs keeping their activations: the same steps up to float32 rounding.
  for (const std::string stage : {"none", "zero2"}) {
    std::vector<double> kept;
    for (bool checkpointed : {false, true}) {
      const auto name = stage + (checkpointed ? "_checkpointed" : "_kept");
      const json training = {{"max_steps", 10}, {"per_device_train_batch_size", 2}, {"gradient_checkpointing", checkpointed}};
      const auto r = run(2, "train " + llama_config(name, training, 1, stage));
      ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
      const auto ours = losses(out(name));
      ASSERT_EQ(ours.size(), 10u) << name;
      if (!checkpointed) {
        kept = ours;
        continue;
      }
      for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], kept[i], 1e-5) << name << " step " << i + 1;
      EXPECT_LT(max_weight_difference(out(name), out(stage + "_kept")), 1e-5) << name;
    }
  }
}

TEST_F(ZeroTrain, MixedPrecisionKeepsFloat32MastersAndTracksFloat32) {
  // bf16 parameters, activations and gradients; float32 shards and moments. On this CPU bf16
  // is emulated (slow) but sane: losses stay within 0.05 of float32 training.
  const json training = {{"max_steps", 20}, {"per_device_train_batch_size", 2}};
  auto r = run(2, "train " + llama_config("fp32", training, 1, "none"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("fp32"));
  ASSERT_LT(reference.back(), reference.front() - 0.3);
  const double p = parameter_count(out("fp32"));
  json mixed = training;
  mixed["bf16"] = true;
  for (const std::string stage : {"zero1", "zero3"}) {
    const auto name = "bf16_" + stage;
    r = run(2, "train " + llama_config(name, mixed, 1, stage));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size());
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 0.05) << name << " step " << i + 1;
    const auto s = summary(out(name));
    // zero1: 2 P of bf16 parameters; zero3 none between steps (16 P / N in all).
    EXPECT_EQ(s["memory_parameter_bytes"].get<double>(), stage == "zero1" ? 2 * p : 0.0) << name;
    EXPECT_NEAR(s["memory_optimizer_bytes"].get<double>() / (12 * p / 2), 1.0, 0.01) << name;
    // The saved model is float32 (the masters), as the run's weights' dtype.
    checkpoint::SafetensorsFile file(out(name) + "/model.safetensors");
    for (const auto& e : file.header().tensors) EXPECT_EQ(e.dtype, checkpoint::DType::F32) << e.name;
  }
}

TEST_F(ZeroTrain, StartedFromAFixtureEveryStageSavesTheFixtureBytes) {
  // (model, ranks, tp, save_mode, stage): each rank reads only its shards of its tp slices
  // from the fixture (never the whole model) and saves them back.
  const std::vector<std::tuple<std::string, int, int, std::string, std::string>> cases = {
      {"llama", 4, 1, "gather", "zero3"},       {"llama", 4, 2, "parallel", "zero3"},
      {"llama_tied", 4, 1, "parallel", "zero3"}, {"gpt2", 4, 1, "parallel", "zero3"},
      {"gpt2", 4, 2, "gather", "zero3"},         {"bert_seqcls", 4, 2, "parallel", "zero3"},
      {"llama", 4, 2, "parallel", "zero1"},      {"gpt2", 2, 1, "gather", "zero2"}};
  for (const auto& [model, np, tp, mode, stage] : cases) {
    const auto name = model + "_np" + std::to_string(np) + "_tp" + std::to_string(tp) + "_" + mode + "_" + stage;
    const auto config = fixture_config(name, fixture(model + "/single"), model == "bert_seqcls",
                                       {{"max_steps", 0}, {"save_mode", mode}});
    const auto r = run(np, "train " + config + " --tensor_parallel_size=" + std::to_string(tp) + " --sharding=" + stage);
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/model.safetensors") ==
                testing::read_bytes(fixture(model + "/single/model.safetensors"))) << name;
  }
}

TEST_F(ZeroTrain, ShardedCheckpointsOfAFixtureConsolidateToItsBytes) {
  // The sharded mode at np 4 (dp 2 x tp 2, and dp 4 under zero3): one step at learning rate
  // 0 leaves the weights as loaded; the consolidated checkpoint is the fixture's file.
  for (const auto& [tp, sharding] : std::vector<std::pair<int, std::string>>{{2, "none"}, {1, "zero3"}, {2, "zero3"}}) {
    const auto name = "sharded_tp" + std::to_string(tp) + "_" + sharding;
    const auto config = fixture_config(name, fixture("llama/single"), false,
                                       {{"max_steps", 1}, {"learning_rate", 0.0}, {"save_mode", "sharded"},
                                        {"save_strategy", "steps"}, {"save_steps", 1}});
    auto r = run(4, "train " + config + " --tensor_parallel_size=" + std::to_string(tp) + " --sharding=" + sharding);
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    r = run(2, "consolidate " + out(name) + "/checkpoint-1 " + out(name + "_consolidated"));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_TRUE(testing::read_bytes(out(name + "_consolidated") + "/model.safetensors") ==
                testing::read_bytes(fixture("llama/single/model.safetensors"))) << name;
  }
}

TEST_F(ZeroTrain, CheckpointsResumeOnEveryOtherLayout) {
  // The resharding matrix: saved at (dp 2, tp 2), (dp 4, zero3), (dp 2, tp 1), each resumed
  // at the two others (global batch 4); losses continue as the uninterrupted run's.
  struct Layout {
    std::string name;
    int np, tp, batch;
    std::string sharding, save_mode;
  };
  const std::vector<Layout> layouts = {{"dp2tp2", 4, 2, 2, "none", "sharded"},
                                       {"dp4zero3", 4, 1, 1, "zero3", "parallel"},
                                       {"dp2", 2, 1, 2, "none", "gather"}};
  const auto training = [](const Layout& l) {
    return json{{"max_steps", 8}, {"save_strategy", "steps"}, {"save_steps", 4}, {"save_mode", l.save_mode},
                {"per_device_train_batch_size", l.batch}};
  };
  for (const auto& saved : layouts) {
    const auto r = run(saved.np, "train " + llama_config(saved.name, training(saved), saved.tp, saved.sharding));
    ASSERT_EQ(r.status, 0) << saved.name << "\n" << r.err;
  }
  for (const auto& saved : layouts)
    for (const auto& resumed : layouts) {
      if (saved.name == resumed.name) continue;
      const auto name = saved.name + "_to_" + resumed.name;
      auto config = training(resumed);
      config["resume_from_checkpoint"] = out(saved.name) + "/checkpoint-4";
      const auto r = run(resumed.np, "train " + llama_config(name, config, resumed.tp, resumed.sharding));
      ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
      // metrics.jsonl: the checkpoint's history (steps 1-4, as logged), then this run's steps.
      const auto uncut = losses(out(saved.name)), ours = losses(out(name));
      ASSERT_EQ(ours.size(), 8u) << name;
      for (std::size_t i = 0; i < 8; ++i)
        EXPECT_NEAR(ours[i], uncut[i], i < 4 ? 0.0 : 2e-4) << name << " step " << 1 + i;
      EXPECT_LT(max_weight_difference(out(name), out(saved.name)), 1e-4) << name;
    }
}

TEST_F(ZeroTrain, AnUnknownStageIsAOneLineError) {
  expect_one_line_error(run(2, "train " + llama_config("zero4", {}, 1, "zero4")), "parallel.sharding");
}

}  // namespace
}  // namespace mpitrain
