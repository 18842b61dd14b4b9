// async_save: checkpoints written by a background thread are the synchronous save's bytes, and a job killed mid-write loses nothing.
#include <gtest/gtest.h>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

class AsyncSave : public Train {
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

TEST_F(AsyncSave, WritesTheBytesOfASynchronousSave) {
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

TEST_F(AsyncSave, KilledWhileTheBackgroundWriterWritesLosesNothing) {
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

}  // namespace
}  // namespace mpitrain
