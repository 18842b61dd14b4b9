// `mpitrain estimate-memory`: its per-rank bytes against what training runs of the same config report, its fits column, and its refusals.
#include <cstdio>

#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

class EstimateMemory : public Train {
 protected:
  // configs/tiny-llama.json's model (hidden 128, 4 layers, GQA, tied) on the suite's corpus:
  // large enough that its activations stand well above the process's own resident memory.
  std::string config(const std::string& name, const json& training, const json& parallel = json::object()) {
    auto shipped = json::parse(testing::read_bytes(std::string(MPITRAIN_SOURCE_DIR) + "/configs/tiny-llama.json"));
    json extra = {{"model", {{"config", shipped["model"]["config"]}}}, {"data", {{"seq_len", 128}}},
                  {"parallel", parallel}};
    return write_config(name, training, extra);
  }
  static json estimate(const std::string& arguments) {
    const auto r = run(0, "estimate-memory " + arguments + " --json");
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? json::parse(r.out) : json();
  }
  static json row(const json& report, const std::string& sharding) {
    for (const auto& r : report["rows"])
      if (r["sharding"] == sharding) return r;
    ADD_FAILURE() << "no row " << sharding;
    return json();
  }
  // The run summary of a 2-step run.
  json trained(const std::string& config_path, int np, const std::string& name) {
    const auto r = run(np, "train " + config_path);
    EXPECT_EQ(r.status, 0) << r.err;
    return summary(out(name));
  }
};

void expect_within_one_percent(double estimate, double reported, const std::string& what) {
  EXPECT_NEAR(estimate, reported, 0.01 * reported + 1) << what;
}

// Parameters, gradients and optimizer state (and zero3's gathered peak) are exact, tensor by
// tensor, at every stage, under dp, tp and bf16: the test allows 1%.
TEST_F(EstimateMemory, StateBytesAreWhatTheTrainerReports) {
  struct Layout {
    std::string sharding;
    int np, tp;
    bool bf16;
  };
  const Layout layouts[] = {{"none", 2, 1, false},  {"zero1", 2, 1, false}, {"zero2", 2, 1, false},
                            {"zero3", 2, 1, false}, {"zero1", 2, 2, true},  {"zero3", 4, 2, true}};
  for (const auto& l : layouts) {
    const std::string name = l.sharding + "_np" + std::to_string(l.np) + "_tp" + std::to_string(l.tp);
    const auto path = config(name, {{"max_steps", 2}, {"bf16", l.bf16}},
                             {{"sharding", l.sharding}, {"tensor_parallel_size", l.tp}});
    const auto expected = row(estimate(path + " --np " + std::to_string(l.np)), l.sharding);
    const auto summary = trained(path, l.np, name);
    expect_within_one_percent(expected["parameter_bytes"], summary["memory_parameter_bytes"], name + " parameters");
    expect_within_one_percent(expected["gradient_bytes"], summary["memory_gradient_bytes"], name + " gradients");
    expect_within_one_percent(expected["optimizer_bytes"], summary["memory_optimizer_bytes"], name + " optimizer");
    if (l.sharding == "zero3")
      expect_within_one_percent(expected["zero3_gathered_bytes"], summary["memory_peak_gathered_parameter_bytes"],
                                name + " gathered");
  }
}

// LoRA: the frozen base held whole in float32, gradients and state for the adapters alone.
TEST_F(EstimateMemory, LoraStateBytesAreWhatTheTrainerReports) {
  for (const auto& [sharding, np] : {std::pair<std::string, int>{"none", 2}, {"zero2", 2}, {"zero3", 2}}) {
    const std::string name = "lora_" + sharding;
    const auto path = config(name, {{"max_steps", 2}}, {{"sharding", sharding}});
    auto with_lora = json::parse(testing::read_bytes(path));
    with_lora["lora"] = {{"target_modules", "all-linear"}, {"r", 4}};
    testing::write_bytes(path, with_lora.dump());
    const auto expected = row(estimate(path + " --np " + std::to_string(np)), sharding);
    const auto summary = trained(path, np, name);
    expect_within_one_percent(expected["parameter_bytes"], summary["memory_parameter_bytes"], name + " parameters");
    expect_within_one_percent(expected["gradient_bytes"], summary["memory_gradient_bytes"], name + " gradients");
    expect_within_one_percent(expected["optimizer_bytes"], summary["memory_optimizer_bytes"], name + " optimizer");
    EXPECT_LT(expected["optimizer_bytes"].get<double>(), 0.2 * expected["parameter_bytes"].get<double>()) << name;
    if (sharding == "zero3")
      expect_within_one_percent(expected["zero3_gathered_bytes"], summary["memory_peak_gathered_parameter_bytes"],
                                name + " gathered");
  }
}

// The activation estimate against the growth of a step's peak resident memory between batch
// sizes 2 and 8 (what the rest of the process holds cancels), with the fused CPU kernels (the
// default). Observed on this project's machine: +1% without gradient checkpointing, -5% with
// it (eager ops: -8% and +4%); the test allows 25% (the allocator's reuse of freed blocks varies).
TEST_F(EstimateMemory, ActivationsAgainstPeakResidentGrowth) {
  for (const bool checkpointing : {false, true}) {
    double measured = 0, estimated = 0;
    for (const int batch : {2, 8}) {
      const std::string name = std::string(checkpointing ? "ckpt" : "plain") + std::to_string(batch);
      const auto path = config(name, {{"max_steps", 3}, {"per_device_train_batch_size", batch},
                                      {"gradient_checkpointing", checkpointing}});
      const double sign = batch == 2 ? -1 : 1;
      measured += sign * trained(path, 0, name)["memory_peak_resident_bytes"].get<double>();
      const auto r = row(estimate(path), "none");
      estimated += sign * r[checkpointing ? "activation_bytes_checkpointed" : "activation_bytes"].get<double>();
    }
    std::printf("activations, gradient_checkpointing %d: estimated %.1f MB, measured %.1f MB (%+.0f%%)\n",
                checkpointing, estimated / 1e6, measured / 1e6, 100 * (estimated / measured - 1));
    EXPECT_GT(measured, 0);
    EXPECT_NEAR(estimated / measured, 1.0, 0.25) << "gradient_checkpointing " << checkpointing;
  }
}

TEST_F(EstimateMemory, TableMarksTheConfiguredStageAndWhatFits) {
  const auto path = config("table", {{"max_steps", 2}}, {{"sharding", "zero2"}});
  const auto r = run(0, "estimate-memory " + path + " --np 4 --memory_gb 0.03");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("* zero2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("np 4 = dp 4 x tp 1"), std::string::npos) << r.out;
  const auto report = estimate(path + " --np 4 --memory_gb 0.03");
  int fit = 0, not_fit = 0;
  for (const auto& row : report["rows"]) {
    EXPECT_EQ(row["fits"].get<bool>(), row["total_bytes"].get<double>() <= 0.03e9);
    EXPECT_EQ(row["fits_checkpointed"].get<bool>(), row["total_bytes_checkpointed"].get<double>() <= 0.03e9);
    (row["fits"].get<bool>() ? fit : not_fit) += 1;
    // The stages only take away: each row holds no more than DP's.
    EXPECT_LE(row["total_bytes"].get<double>(), report["rows"][0]["total_bytes"].get<double>());
  }
  EXPECT_GT(not_fit + fit, 0);
  // More ranks: less per rank under zero3, the same under none.
  const auto more = estimate(path + " --np 8");
  EXPECT_LT(row(more, "zero3")["optimizer_bytes"].get<double>(), row(report, "zero3")["optimizer_bytes"].get<double>());
  EXPECT_EQ(row(more, "none")["optimizer_bytes"], row(report, "none")["optimizer_bytes"]);
  // A save's extra: gather mode's two windows, an async save's snapshot.
  const auto gather = estimate(path + " --np 4 --save_mode=gather --gather_window_mb=8");
  EXPECT_NEAR(row(gather, "none")["save_extra_bytes"].get<double>(), 2 * 8 * 1048576.0, 1);
  const auto async = estimate(path + " --np 1 --async_save=true");
  EXPECT_NEAR(row(async, "none")["save_extra_bytes"].get<double>(),
              row(async, "none")["parameter_bytes"].get<double>() * 3, 1);
}

// A model directory's config.json is read, and none of its weights.
TEST_F(EstimateMemory, ModelDirectoryWithoutItsWeights) {
  const auto dir = local_ / "gpt2";
  fs::create_directories(dir);
  fs::copy_file(testing::fixture("gpt2/single/config.json"), dir + "/config.json");
  const auto path = write_config("gpt2", {{"max_steps", 2}}, {{"model", {{"model_name_or_path", dir}}}});
  const auto report = estimate(path + " --np 2");
  EXPECT_EQ(report["architecture"], "GPT2LMHeadModel");
  EXPECT_GT(report["parameters"].get<double>(), 0);
}

TEST_F(EstimateMemory, BadInputIsOneLine) {
  const auto path = config("bad", {{"max_steps", 2}}, {{"tensor_parallel_size", 2}});
  expect_one_line_error(run(0, "estimate-memory " + path + " --np 3"), "--np 3 is not a multiple of parallel.tensor_parallel_size 2");
  expect_one_line_error(run(0, "estimate-memory " + path + " --np 0"), "--np 0");
  expect_one_line_error(run(0, "estimate-memory " + path + " --np 8 --tensor_parallel_size=8"), "num_attention_heads 4 is not divisible by tensor_parallel_size 8");
  expect_one_line_error(run(0, "estimate-memory " + path + " --per_device_train_bach_size=2"), "per_device_train_bach_size");
  expect_one_line_error(run(0, "estimate-memory " + local_ / "missing.json"), "missing.json");
  const auto no_dir = write_config("nodir", {{"max_steps", 2}}, {{"model", {{"model_name_or_path", local_ / "none"}}}});
  expect_one_line_error(run(0, "estimate-memory " + no_dir), "config.json");
}

}  // namespace
}  // namespace mpitrain
