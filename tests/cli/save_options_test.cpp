// Save options: async_save writes a synchronous save's bytes and survives kill -9; save_dtype gives the same bytes in every mode and layout.
#include <gtest/gtest.h>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

class SaveOptions : public Train {
 protected:
  json saving(std::int64_t max_steps, bool async, const std::string& mode = "parallel") {
    return {{"max_steps", max_steps}, {"save_strategy", "steps"}, {"save_steps", 2}, {"save_mode", mode},
            {"lr_scheduler_type", "constant"}, {"async_save", async}};
  }
  static double summary_value(const std::string& dir, const std::string& key) {
    for (const auto& row : metrics(dir))
      if (row.contains(key)) return row[key].get<double>();
    return -1;
  }
};

TEST_F(SaveOptions, WritesTheBytesOfASynchronousSave) {
  // Training goes on while the background thread writes: every tensor file of every
  // checkpoint, and the final model, equal the synchronous run's, in each save mode.
  for (const std::string mode : {"gather", "parallel", "sharded"}) {
    const auto sync = "sync_" + mode, async = "async_" + mode;
    auto r = run(2, "train " + write_config(sync, saving(6, false, mode)));
    ASSERT_EQ(r.status, 0) << r.err;
    r = run(2, "train " + write_config(async, saving(6, true, mode)));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("(written in the background)"), std::string::npos) << r.out;
    int compared = 0;
    for (const auto& item : fs::recursive_directory_iterator(out(sync))) {
      if (item.path().extension() != ".safetensors") continue;
      const auto relative = fs::relative(item.path(), out(sync)).string();
      EXPECT_TRUE(testing::read_bytes(item.path().string()) == testing::read_bytes(out(async) + "/" + relative))
          << mode << " " << relative;
      ++compared;
    }
    EXPECT_GE(compared, 3 * 2 + 1) << mode;  // weights and optimizer of checkpoints 2, 4, 6 and the model
    EXPECT_EQ(checkpoint::complete_checkpoints(out(async)).size(), 3u) << mode;
    EXPECT_EQ(summary_value(out(async), "checkpoints_saved"), 3) << mode;
    EXPECT_GE(summary_value(out(async), "checkpoint_blocking_seconds"), 0) << mode;
  }
  // A checkpoint written in the background resumes like any other.
  auto r = run(2, "train " + write_config("async_parallel", saving(8, true)) + " --resume_from_checkpoint=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from " + out("async_parallel") + "/checkpoint-6"), std::string::npos) << r.out;
}

TEST_F(SaveOptions, KilledWhileTheBackgroundWriterWritesLosesNothing) {
  auto r = run(2, "train " + write_config("uncut", saving(4, false)));
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& [point, rank] : std::vector<std::pair<std::string, int>>{{"save.writing", 1},
                                                                            {"checkpoint.before_commit", 0}}) {
    const auto name = point + "_" + std::to_string(rank);
    r = run(2, "train " + write_config(name, saving(2, true)));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto before = testing::read_bytes(out(name) + "/checkpoint-2/model.safetensors");
    r = run(2, "train " + write_config(name, saving(4, true)) + " --resume_from_checkpoint=true",
            "MPITRAIN_CRASH_AT=" + point + "@" + std::to_string(rank));
    EXPECT_NE(r.status, 0) << name;
    const auto complete = checkpoint::complete_checkpoints(out(name));
    ASSERT_EQ(complete.size(), 1u) << name;
    EXPECT_EQ(complete[0].step, 2) << name;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/checkpoint-2/model.safetensors") == before) << name;
    r = run(2, "train " + write_config(name, saving(4, true)) + " --resume_from_checkpoint=true");
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/model.safetensors") ==
                testing::read_bytes(out("uncut") + "/model.safetensors")) << name;
  }
}

// The bytes of the files under `dir` (recursively).
std::uint64_t bytes_under(const std::string& dir) {
  std::uint64_t total = 0;
  for (const auto& item : fs::recursive_directory_iterator(dir))
    if (item.is_regular_file()) total += item.file_size();
  return total;
}

TEST_F(SaveOptions, EverySaveReportsWhereItsTimeWentAndTheBytesEachRankWrote) {
  for (const bool async : {false, true}) {
    const auto name = std::string("report_") + (async ? "async" : "sync");
    auto training = saving(4, async);
    training["save_total_limit"] = 1;  // checkpoint-2 is rotated away by the save of 4
    const auto r = run(2, "train " + write_config(name, training));
    ASSERT_EQ(r.status, 0) << r.err;
    std::vector<json> reports;
    for (const auto& row : metrics(out(name)))
      if (row.contains("save")) reports.push_back(row);
    ASSERT_EQ(reports.size(), 3u) << name;  // checkpoint-2, checkpoint-4, the final model
    EXPECT_EQ(reports[0]["save"], "checkpoint-2");
    EXPECT_EQ(reports[1]["save"], "checkpoint-4");
    EXPECT_EQ(reports[2]["save"], "final");
    for (const auto& report : reports) {
      const auto what = name + " " + report["save"].get<std::string>();
      for (const char* stage : {"snapshot", "planning", "staging", "write", "fsync", "checksums", "commit", "rotation",
                                "upload_hook"})
        EXPECT_GE(report.value(std::string("save_") + stage + "_seconds", -1.0), 0.0) << what << " " << stage;
      for (const char* stage : {"planning", "write", "fsync"})
        EXPECT_GT(report.value(std::string("save_") + stage + "_seconds", 0.0), 0.0) << what << " " << stage;
      // Parallel mode: both ranks write their blocks.
      ASSERT_EQ(report["save_bytes_written"].size(), 2u) << what;
      EXPECT_GT(report["save_bytes_written"][0].get<std::uint64_t>(), 0u) << what;
      EXPECT_GT(report["save_bytes_written"][1].get<std::uint64_t>(), 0u) << what;
      EXPECT_EQ(report["save_bytes_written_total"].get<std::uint64_t>(),
                report["save_bytes_written"][0].get<std::uint64_t>() + report["save_bytes_written"][1].get<std::uint64_t>());
    }
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_GT(reports[i].value("save_checksums_seconds", 0.0), 0.0) << name << i;
      EXPECT_GT(reports[i].value("save_commit_seconds", 0.0), 0.0) << name << i;
      EXPECT_GE(reports[i].value("save_training_waited_seconds", -1.0), 0.0) << name << i;
    }
    EXPECT_GT(reports[1].value("save_rotation_seconds", 0.0), 0.0) << name;  // it deleted checkpoint-2
    // What the ranks say they wrote is what the checkpoint holds (every file but those copied
    // whole, such as the tokenizer's: none here), and the final model's weights at least.
    EXPECT_EQ(reports[1]["save_bytes_written_total"].get<std::uint64_t>(), bytes_under(out(name) + "/checkpoint-4"))
        << name;
    EXPECT_GE(reports[2]["save_bytes_written_total"].get<std::uint64_t>(),
              fs::file_size(out(name) + "/model.safetensors"));
    EXPECT_NE(r.out.find("checkpoint-4 saved in "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(the slowest rank's); ranks wrote "), std::string::npos) << r.out;
  }
}

TEST_F(SaveOptions, SaveDtypeGivesTheSameBytesInEveryModeAndLayout) {
  // float32 training saved as bfloat16 or float16: gather, parallel and (consolidated)
  // sharded checkpoints hold the same bytes, the float32 weights rounded; optimizer moments
  // stay float32; zero3 (saving from its shards) rounds the same weights.
  const json base = {{"max_steps", 4}, {"save_strategy", "steps"}, {"save_steps", 4}};
  auto r = run(2, "train " + write_config("fp32", base));
  ASSERT_EQ(r.status, 0) << r.err;
  checkpoint::SafetensorsFile reference(out("fp32") + "/checkpoint-4/model.safetensors");
  for (const auto& [dtype, stored] : std::vector<std::pair<std::string, checkpoint::DType>>{
           {"bfloat16", checkpoint::DType::BF16}, {"float16", checkpoint::DType::F16}}) {
    std::string first;
    for (const std::string mode : {"gather", "parallel", "sharded", "zero3"}) {
      json training = base;
      training["save_dtype"] = dtype;
      training["save_mode"] = mode == "zero3" ? "parallel" : mode;
      const auto name = dtype + "_" + mode;
      r = run(2, "train " + write_config(name, training, {{"parallel", {{"sharding", mode == "zero3" ? "zero3" : "none"}}}}));
      ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
      auto weights = out(name) + "/checkpoint-4/model.safetensors";
      if (mode == "sharded") {
        r = run(0, "consolidate " + out(name) + "/checkpoint-4 " + out(name + "_consolidated"));
        ASSERT_EQ(r.status, 0) << r.err;
        weights = out(name + "_consolidated") + "/model.safetensors";
      }
      checkpoint::SafetensorsFile saved(weights);
      for (const auto& e : saved.header().tensors) {
        EXPECT_EQ(e.dtype, stored) << name << " " << e.name;
        const auto rounded = checkpoint::read_tensor(reference, reference.entry(e.name)).to(e.dtype == checkpoint::DType::BF16
                                                                                              ? torch::kBFloat16
                                                                                              : torch::kFloat16);
        const auto ours = checkpoint::read_tensor(saved, e);
        // zero3 trains to the same weights within float32 reordering: equal after rounding
        // but for a rare last-bit tie.
        if (mode == "zero3")
          EXPECT_TRUE(torch::allclose(ours.to(torch::kFloat32), rounded.to(torch::kFloat32), 1e-2, 1e-5)) << name << " " << e.name;
        else
          EXPECT_TRUE(torch::equal(ours, rounded)) << name << " " << e.name;
      }
      if (mode == "zero3") continue;
      if (first.empty()) first = testing::read_bytes(weights);
      EXPECT_TRUE(testing::read_bytes(weights) == first) << name;
      checkpoint::SafetensorsFile moments(out(name) + "/checkpoint-4/optimizer/" +
                                          (mode == "sharded" ? "shard-00000.safetensors" : "model.safetensors"));
      EXPECT_EQ(moments.header().tensors.front().dtype, checkpoint::DType::F32) << name;
      checkpoint::SafetensorsFile final_model(out(name) + "/model.safetensors");
      EXPECT_EQ(final_model.header().tensors.front().dtype, stored) << name;
    }
  }
  // A checkpoint saved in bfloat16 resumes (the weights come back rounded).
  json resumed = base;
  resumed["max_steps"] = 6;
  resumed["resume_from_checkpoint"] = out("bfloat16_parallel") + "/checkpoint-4";
  r = run(2, "train " + write_config("bf16_resumed", resumed));
  EXPECT_EQ(r.status, 0) << r.err;
}

}  // namespace
}  // namespace mpitrain
