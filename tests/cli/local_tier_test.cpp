// The local checkpoint tier: a job killed after a local save resumes from it bit-exactly, a lost node's states come back from replicas, a kill during a local save keeps the previous one, another layout falls back to the persistent checkpoint, and bad directories are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/local_tier_paths.h"
#include "runtime/checkpoint/memory_directory.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/shared_directory.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

class LocalTier : public Train {
 protected:
  void SetUp() override {
    root_ = "/dev/shm/mpitrain-local-tier-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(root_);
  }
  void TearDown() override { checkpoint::remove_tree(root_); }

  // 12 steps; local saves every 3, a persistent one at 10.
  std::string config(const std::string& name, json extra = json::object()) {
    json training = {{"max_steps", 12},         {"save_strategy", "steps"},  {"save_steps", 10},
                     {"local_save_steps", 3},   {"local_save_dir", root_},  {"lr_scheduler_type", "constant"},
                     {"resume_from_checkpoint", "auto"}};
    training.update(extra);
    return write_config(name, training);
  }
  std::string job_dir(const std::string& name) {
    return checkpoint::local_job_dir(root_, fs::weakly_canonical(fs::absolute(out(name))).string());
  }
  // np ranks, the first half on node "nA" and the rest on "nB" (the node Slurm would name).
  static Result run_on_two_nodes(int np, const std::string& config, const std::string& environment = "") {
    ScratchDir scratch;
    const auto one = "env SLURMD_NODENAME=%s " + environment + " " + std::string(MPITRAIN_BINARY) + " train " + config;
    char a[4096], b[4096];
    std::snprintf(a, sizeof a, one.c_str(), "nA");
    std::snprintf(b, sizeof b, one.c_str(), "nB");
    const auto half = std::to_string(np / 2);
    const auto command = std::string(MPITRAIN_MPIEXEC) + " -np " + half + " " + a + " : -np " + half + " " + b + " >" +
                         (scratch / "out") + " 2>" + (scratch / "err");
    const int raw = std::system(command.c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : 128, testing::read_bytes(scratch / "out"),
            testing::read_bytes(scratch / "err")};
  }
  std::string model(const std::string& name) { return testing::read_bytes(out(name) + "/model.safetensors"); }

  std::string root_;
};

TEST_F(LocalTier, KilledAfterALocalSaveResumesFromItBitExactly) {
  auto r = run(2, "train " + config("uncut"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("local checkpoint of step 12 committed on every rank"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(job_dir("uncut"))) << "the job's local states outlive it";
  // The tier changes nothing in the training.
  r = run(2, "train " + write_config("off", {{"max_steps", 12}, {"lr_scheduler_type", "constant"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(model("uncut") == model("off"));
  // Killed once the second local save (step 6) is committed, before the persistent one at 10.
  r = run(2, "train " + config("cut"), "MPITRAIN_CRASH_AT=local.committed#2");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(checkpoint::complete_checkpoints(out("cut")).empty());
  EXPECT_TRUE(fs::is_directory(job_dir("cut") + "/" + checkpoint::node_dir_name(checkpoint::host_name())));
  r = run(2, "train " + config("cut"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from the local checkpoint of step 6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("every rank its own copy"), std::string::npos) << r.out;
  EXPECT_TRUE(model("cut") == model("uncut"));
  EXPECT_FALSE(fs::exists(job_dir("cut")));
  // A fresh start forgets an earlier run's local states: killed after its own local save of
  // step 3, it resumes from 3, not from the earlier run's step 6 still in memory.
  r = run(2, "train " + config("again"), "MPITRAIN_CRASH_AT=local.committed#2");
  EXPECT_NE(r.status, 0);
  r = run(2, "train " + config("again") + " --resume_from_checkpoint=false --overwrite_output_dir=true",
          "MPITRAIN_CRASH_AT=local.committed#1");
  EXPECT_NE(r.status, 0);
  r = run(2, "train " + config("again"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from the local checkpoint of step 3"), std::string::npos) << r.out;
  EXPECT_TRUE(model("again") == model("uncut"));
}

TEST_F(LocalTier, ALostNodesStatesComeBackFromTheReplicas) {
  auto r = run_on_two_nodes(4, config("uncut"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("2 copies of each rank's state: its own and 1 on other nodes"), std::string::npos) << r.out;
  r = run_on_two_nodes(4, config("cut"), "MPITRAIN_CRASH_AT=local.committed#2");
  EXPECT_NE(r.status, 0);
  // Node nB is lost with its memory: only nA's directory is left.
  ASSERT_TRUE(fs::is_directory(job_dir("cut") + "/nB"));
  checkpoint::remove_tree(job_dir("cut") + "/nB");
  r = run_on_two_nodes(4, config("cut"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from the local checkpoint of step 6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("replicas sent to rank(s) 2 from rank 0, 3 from rank 1"), std::string::npos) << r.out;
  EXPECT_TRUE(model("cut") == model("uncut"));
  // Both nodes lost: nothing survives, and the run starts over (no persistent checkpoint yet).
  r = run_on_two_nodes(4, config("gone"), "MPITRAIN_CRASH_AT=local.committed#2");
  EXPECT_NE(r.status, 0);
  checkpoint::remove_tree(job_dir("gone") + "/nB");
  checkpoint::remove_tree(job_dir("gone") + "/nA/rank-00000");
  r = run_on_two_nodes(4, config("gone"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("has no surviving copy of the state of rank(s) 0, 2"), std::string::npos) << r.err;
  EXPECT_TRUE(model("gone") == model("uncut"));
}

TEST_F(LocalTier, AKillDuringALocalSaveKeepsThePreviousOne) {
  auto r = run(2, "train " + config("uncut"));
  ASSERT_EQ(r.status, 0) << r.err;
  // Killed at `crash`, rerun: it resumes from the local checkpoint of `step` and ends as uncut.
  const auto killed_then_resumes = [&](const std::string& name, const json& extra, const std::string& crash, int step) {
    r = run(2, "train " + config(name, extra), "MPITRAIN_CRASH_AT=" + crash);
    EXPECT_NE(r.status, 0) << name;
    r = run(2, "train " + config(name, extra));
    ASSERT_EQ(r.status, 0) << name << "\n" << r.err;
    EXPECT_NE(r.out.find("resumed from the local checkpoint of step " + std::to_string(step)), std::string::npos)
        << name << "\n" << r.out;
    EXPECT_TRUE(model(name) == model("uncut")) << name;
  };
  // Rank 1 dies in the second local save (step 6) before it commits; without replicas, rank
  // 0's committed copy of its own state is not enough: step 3 is the newest complete one.
  killed_then_resumes("alone", {{"local_replicas", 1}}, "local.before_commit@1#2", 3);
  // With a replica, rank 0 committed rank 1's state of step 6 too (it had arrived whole): that
  // step is complete, and used.
  killed_then_resumes("replicated", json::object(), "local.before_commit@1#2", 6);
  // Killed while staging (no byte sent): step 3 again.
  killed_then_resumes("staging", json::object(), "local.staged@0#2", 3);
}

TEST_F(LocalTier, AnotherLayoutFallsBackToThePersistentCheckpoint) {
  // A persistent checkpoint at 4, local ones at 3 and 6; killed after the one at 6.
  auto r = run(2, "train " + config("cut", {{"save_steps", 4}}), "MPITRAIN_CRASH_AT=local.committed#2");
  EXPECT_NE(r.status, 0);
  ASSERT_EQ(checkpoint::complete_checkpoints(out("cut")).size(), 1u);
  r = run(2, "train " + config("cut", {{"save_steps", 4}}) + " --sharding=zero1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("the local checkpoint of step 6 was saved at world 2 (dp 2 x tp 1, sharding none), tensors "),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("this run is world 2 (dp 2 x tp 1, sharding zero1)"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("resumed from " + out("cut") + "/checkpoint-4"), std::string::npos) << r.out;
}

TEST_F(LocalTier, BadDirectoriesAreOneLineErrorsAndOtherRunsStatesAreLeftAlone) {
  // A directory on disk, not in memory (the build tree or the scratch area, whichever is not tmpfs).
  std::string disk;
  for (const auto& candidate : {fs::current_path().string(), out("")})
    if (!checkpoint::directory_room(candidate).in_memory) disk = candidate;
  ASSERT_FALSE(disk.empty()) << "no directory on disk to test with";
  auto r = run(2, "train " + config("disk", {{"local_save_dir", disk}}));
  expect_one_line_error(r, "training.local_save_dir " + disk + " is not node-local memory");
  r = run(2, "train " + config("small", {{"local_save_max_size", "10KB"}}));
  expect_one_line_error(r, "above local_save_max_size 10.0 KB");
  EXPECT_NE(r.err.find("the local checkpoints need "), std::string::npos) << r.err;
  // Another run's states, and a directory our name maps to that another run owns.
  const auto other = root_ + "/mpitrain-0123456789abcdef";
  fs::create_directories(other + "/n1/rank-00000/step-3");
  testing::write_bytes(other + "/owner.json", R"({"output_dir": "/elsewhere"})");
  testing::write_bytes(other + "/n1/rank-00000/step-3/state-00000.safetensors", "theirs");
  fs::create_directories(job_dir("taken"));
  testing::write_bytes(job_dir("taken") + "/owner.json", R"({"output_dir": "/another/run"})");
  r = run(2, "train " + config("taken"));
  expect_one_line_error(r, "holds the local states of the run writing to /another/run");
  EXPECT_TRUE(fs::exists(job_dir("taken") + "/owner.json"));
  r = run(2, "train " + config("fine"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(testing::read_bytes(other + "/n1/rank-00000/step-3/state-00000.safetensors"), "theirs");
  r = run(2, "train " + config("bad", {{"local_replicas", 0}}));
  expect_one_line_error(r, "training.local_replicas");
}

}  // namespace
}  // namespace mpitrain
