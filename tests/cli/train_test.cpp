// `mpitrain train` as users run it under mpirun: DP equivalence, exact resume, rotation, save strategies, bad input.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {


TEST_F(Train, DataParallelRanksTrainTheSameModelAsOneRankWithTheWholeBatch) {
  // Global batch 4: 1 rank x 4, 2 ranks x 2, 4 ranks x 1.
  const auto r1 = run(1, "train " + write_config("np1", {{"per_device_train_batch_size", 4}}));
  ASSERT_EQ(r1.status, 0) << r1.err;
  const auto reference = losses(out("np1"));
  ASSERT_EQ(reference.size(), 6u);
  EXPECT_LT(reference.back(), reference.front());
  // (ranks, per-rank batch, accumulation steps): the same global batch of 4 each time.
  for (const auto& [np, batch, accumulation] : {std::tuple<int, int, int>{2, 2, 1}, {4, 1, 1}, {2, 1, 2}}) {
    const auto name = "np" + std::to_string(np) + "_ga" + std::to_string(accumulation);
    const auto r = run(np, "train " + write_config(name, {{"per_device_train_batch_size", batch},
                                                          {"gradient_accumulation_steps", accumulation}}));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size());
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    // fp32 sums in another order: parameters agree to ~1e-6 after 6 Adam steps.
    EXPECT_LT(max_weight_difference(out(name), out("np1")), 5e-5) << name;
  }
}

TEST_F(Train, EverySaveModeResumesBitForBitAndConsolidates) {
  // The same run saved in each mode: the sharded checkpoint resumes directly, and once
  // consolidated it holds exactly the bytes the other modes wrote.
  for (const char* mode : {"gather", "parallel", "sharded"}) {
    const json saving = {{"max_steps", 6}, {"save_strategy", "steps"}, {"save_steps", 3}, {"save_mode", mode}};
    const auto name = std::string("mode_") + mode;
    auto r = run(2, "train " + write_config(name, saving));
    ASSERT_EQ(r.status, 0) << r.err;
    json resumed = saving;
    resumed["resume_from_checkpoint"] = out(name) + "/checkpoint-3";
    r = run(2, "train " + write_config(name + "_resumed", resumed));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(testing::read_bytes(out(name) + "/model.safetensors") ==
                testing::read_bytes(out(name + "_resumed") + "/model.safetensors")) << mode;
    // A two-rank checkpoint holds each rank's RNG state (same tensor names): no weight conflict.
    r = run(0, "inspect " + out(name) + "/checkpoint-3");
    EXPECT_EQ(r.status, 0) << mode << "\n" << r.out << r.err;
    if (std::string(mode) == "sharded") {
      // Checked as what it is: the index's whole tensors, each block found in its shard file.
      EXPECT_NE(r.out.find("model.embed_tokens.weight"), std::string::npos) << r.out;
      EXPECT_NE(r.out.find("sharded_index.json ("), std::string::npos) << r.out;
      EXPECT_NE(r.out.find("no problems found"), std::string::npos) << r.out;
    }
  }
  {
    // A sharded checkpoint whose shard lost a block, and one whose index lost a tensor.
    const auto broken = local_ / "broken_sharded";
    fs::copy(out("mode_sharded") + "/checkpoint-3", broken, fs::copy_options::recursive);
    auto index = json::parse(testing::read_bytes(broken + "/sharded_index.json"));
    index["tensors"].erase(0);
    testing::write_bytes(broken + "/sharded_index.json", index.dump());
    auto r = run(0, "inspect " + broken);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.out.find("needs is missing"), std::string::npos) << r.out;
    testing::write_bytes(broken + "/shard-00000.safetensors", "truncated");
    r = run(0, "inspect " + broken);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.out.find("shard-00000.safetensors"), std::string::npos) << r.out;
  }
  EXPECT_TRUE(fs::exists(out("mode_sharded") + "/checkpoint-3/sharded_index.json"));
  EXPECT_FALSE(fs::exists(out("mode_sharded") + "/checkpoint-3/model.safetensors"));
  // Into itself (or a directory inside it) it would write the checkpoint it reads.
  for (const auto& into : {out("mode_sharded") + "/checkpoint-3", out("mode_sharded") + "/checkpoint-3/hf"}) {
    const auto r = run(0, "consolidate " + out("mode_sharded") + "/checkpoint-3 " + into);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("it would be written while it is read"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(out("mode_sharded") + "/checkpoint-3/model.safetensors"));
  EXPECT_FALSE(fs::exists(out("mode_sharded") + "/checkpoint-3/hf"));
  auto r = run(0, "consolidate " + out("mode_sharded") + "/checkpoint-3 " + (local_ / "consolidated"));
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* mode : {"gather", "parallel"})
    EXPECT_TRUE(testing::read_bytes(local_ / "consolidated/model.safetensors") ==
                testing::read_bytes(out(std::string("mode_") + mode) + "/checkpoint-3/model.safetensors")) << mode;
  EXPECT_TRUE(fs::exists(local_ / "consolidated/config.json"));
  r = run(0, "inspect " + (local_ / "consolidated"));
  EXPECT_EQ(r.status, 0) << r.out;
  expect_one_line_error(run(0, "consolidate " + out("mode_gather") + "/checkpoint-3 " + (local_ / "nope")),
                        "is not a sharded checkpoint");
  // A flipped byte in a checkpoint is named by the commands that read one, as by a resume:
  // before, consolidate, logits and convert carried it on with exit status 0.
  const auto flip_a_byte = [](const std::string& path) {
    auto bytes = testing::read_bytes(path);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
    testing::write_bytes(path, bytes);
  };
  fs::copy(out("mode_sharded") + "/checkpoint-3", local_ / "flipped_sharded", fs::copy_options::recursive);
  for (const auto& item : fs::directory_iterator(local_ / "flipped_sharded"))
    if (item.path().filename().string().rfind("shard-", 0) == 0) {
      flip_a_byte(item.path());
      break;
    }
  expect_one_line_error(run(2, "consolidate " + (local_ / "flipped_sharded") + " " + (local_ / "nope")), "checksum mismatch");
  EXPECT_FALSE(fs::exists(local_ / "nope/model.safetensors"));
  fs::copy(out("mode_gather") + "/checkpoint-3", local_ / "flipped_hf", fs::copy_options::recursive);
  flip_a_byte(local_ / "flipped_hf/model.safetensors");
  testing::write_bytes(local_ / "flip_inputs.json", R"({"input_ids": [[72, 101, 108]]})");
  expect_one_line_error(run(0, "logits " + (local_ / "flipped_hf") + " --inputs " + (local_ / "flip_inputs.json") +
                                   " --output " + (local_ / "flipped.npy")),
                        "flipped_hf/model.safetensors: checksum mismatch");
  expect_one_line_error(run(0, "convert " + (local_ / "flipped_hf") + " " + (local_ / "nope_converted")), "checksum mismatch");
  // Asked not to, it reads what is there (the flipped byte is in a tensor's data: it loads).
  r = run(0, "convert " + (local_ / "flipped_hf") + " " + (local_ / "converted_anyway") + " --verify_checksums=false");
  EXPECT_EQ(r.status, 0) << r.err;
  // Where nothing is wrong, logits reads the checkpoint as before.
  r = run(0, "logits " + out("mode_gather") + "/checkpoint-3 --inputs " + (local_ / "flip_inputs.json") + " --output " +
                 (local_ / "sound.npy"));
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Train, ResumeContinuesBitForBit) {
  const json saving = {{"max_steps", 8}, {"save_strategy", "steps"}, {"save_steps", 4}};
  auto r = run(2, "train " + write_config("straight", saving));
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_TRUE(checkpoint::is_complete_checkpoint(out("straight") + "/checkpoint-4"));
  json resumed = saving;
  resumed["resume_from_checkpoint"] = out("straight") + "/checkpoint-4";
  r = run(2, "train " + write_config("resumed", resumed));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("straight") + "/model.safetensors") ==
              testing::read_bytes(out("resumed") + "/model.safetensors"));
  // Its metrics.jsonl: the checkpoint's history (steps 1-4), then its own steps, those of the
  // uninterrupted run.
  EXPECT_EQ(losses(out("resumed")), losses(out("straight")));
  ASSERT_EQ(losses(out("resumed")).size(), 8u);
  // resume_from_checkpoint=true picks the latest complete checkpoint of output_dir.
  r = run(2, "train " + write_config("straight", saving) + " --resume_from_checkpoint=true --max_steps=10");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from " + out("straight") + "/checkpoint-8"), std::string::npos) << r.out;
}

TEST_F(Train, SignalToOneRankSavesStopsForRequeueAndResumesExactly) {
  // Constant LR, so a run cut at step k and resumed to k + 4 must equal a straight run to k + 4.
  const json long_run = {{"max_steps", 20000}, {"lr_scheduler_type", "constant"}, {"save_strategy", "no"},
                         {"post_save_command", "echo uploaded"}};
  const auto config = write_config("signalled", long_run);
  const BackgroundTrain job(2, config, local_ / "signalled");
  ASSERT_TRUE(job.started());
  // Once it is training, SIGUSR1 to one rank only (the newest rank process).
  for (int i = 0; i < 600 && losses(out("signalled")).size() < 3; ++i) usleep(50000);
  ASSERT_GE(losses(out("signalled")).size(), 3u) << job.err();
  ASSERT_EQ(std::system(("pkill -USR1 -n -f " + job.ranks()).c_str()), 0);
  EXPECT_EQ(job.wait_for_status(60), 75) << job.err();
  const auto saved = checkpoint::complete_checkpoints(out("signalled"));
  ASSERT_EQ(saved.size(), 1u);
  const auto k = saved[0].step;
  EXPECT_LT(k, 20000);
  EXPECT_NE(job.err().find("stopped by SIGUSR1 at step " + std::to_string(k)), std::string::npos);
  EXPECT_TRUE(fs::exists(out("signalled") + "/loss.svg"));  // the curves up to the stop
  EXPECT_NE(testing::read_bytes(out("signalled") + "/logs/post_save.log").find("uploaded " + saved[0].path),
            std::string::npos);
  // The requeued job: same command, resume_from_checkpoint=true.
  const auto end = " --max_steps=" + std::to_string(k + 4);
  auto r = run(2, "train " + config + " --resume_from_checkpoint=true" + end);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(2, "train " + write_config("uncut", long_run) + end);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("signalled") + "/model.safetensors") ==
              testing::read_bytes(out("uncut") + "/model.safetensors"));
  // Its metrics.jsonl is the uncut run's: the checkpoint's history, then the rest.
  EXPECT_EQ(losses(out("signalled")), losses(out("uncut")));
}

TEST_F(Train, ASecondJobIntoALiveJobsOutputDirStopsAtOnceAndADeadJobsLockIsTakenOver) {
  const auto config = write_config("locked", {{"max_steps", 20000}, {"lr_scheduler_type", "constant"}});
  const BackgroundTrain first(2, config, local_ / "locked");
  ASSERT_TRUE(first.started());
  for (int i = 0; i < 600 && losses(out("locked")).size() < 2; ++i) usleep(50000);
  ASSERT_GE(losses(out("locked")).size(), 2u) << first.err();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  // A fresh start that would overwrite it, and a requeue-like auto resume, each with another
  // config file naming the same output_dir.
  for (const json& second : {json{{"overwrite_output_dir", true}, {"seed", 7}, {"max_steps", 4}},
                             json{{"resume_from_checkpoint", "auto"}, {"max_steps", 4}}}) {
    json training = second;
    training["output_dir"] = out("locked");
    const auto r = run(2, "train " + write_config("second", training));
    EXPECT_NE(r.status, 0);
    expect_one_line_error(r, "output_dir " + out("locked") + " is in use by another mpitrain job (host " +
                                 std::string(host) + ", pid ");
  }
  const auto before = losses(out("locked")).size();
  for (int i = 0; i < 600 && losses(out("locked")).size() < before + 2; ++i) usleep(50000);
  EXPECT_GE(losses(out("locked")).size(), before + 2) << "the first job no longer trains";
  // Killed outright, it leaves its lock; the next job takes it over and says whose it was.
  ASSERT_EQ(std::system(("pkill -KILL -f " + first.ranks()).c_str()), 0);
  for (int i = 0; i < 200 && std::system(("pgrep -f " + first.ranks() + " >/dev/null").c_str()) == 0; ++i) usleep(50000);
  ASSERT_TRUE(fs::exists(out("locked") + "/.mpitrain-lock"));
  const auto r = run(2, "train " + config + " --overwrite_output_dir=true --max_steps=2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE((r.out + r.err).find("took over the lock of a job that is gone (host " + std::string(host)),
            std::string::npos)
      << r.out << r.err;
  EXPECT_FALSE(fs::exists(out("locked") + "/.mpitrain-lock"));  // released at the end
}

TEST_F(Train, ASignalWhileTheJobStartsEndsItAtOnceWithTheSignalsStatus) {
  // A source to prepare (about 6 MB of text): the signal comes during data preparation, long
  // before a first step boundary, and there is nothing to save yet.
  fs::create_directories(local_ / "big_corpus");
  {
    std::ofstream text(local_ / "big_corpus/a.txt");
    const std::string words(1000, 'x');
    for (int i = 0; i < 6000; ++i) text << "line " << i << " of the text " << words << "\n";
  }
  for (const int np : {0, 2}) {
    const auto name = "starting_np" + std::to_string(np);
    const auto config = write_config(name, {{"max_steps", 5}, {"save_strategy", "no"}},
                                     {{"data", {{"train_file", local_ / (name + ".h5")},
                                                {"source", local_ / "big_corpus"}}}});
    const BackgroundTrain job(np, config, local_ / name);
    ASSERT_TRUE(job.started());
    // Its log exists once the config is read: the job is starting.
    for (int i = 0; i < 3000 && !fs::exists(out(name) + "/logs/rank-0.log"); ++i) usleep(10000);
    ASSERT_TRUE(fs::exists(out(name) + "/logs/rank-0.log"));
    ASSERT_EQ(std::system(("pkill -TERM -n -f " + job.ranks()).c_str()), 0);
    const int status = job.wait_for_status(30);
    ASSERT_NE(status, -1) << "still running 30 s after the signal";
    // One process: the signal's own status (128 + 15). Under mpirun: its report of a rank
    // ended by a signal; never the 75 of a saved stop.
    if (np == 0) {
      EXPECT_EQ(status, 128 + SIGTERM) << job.err();
    }
    EXPECT_NE(status, 0);
    EXPECT_NE(status, 75);
    EXPECT_TRUE(checkpoint::complete_checkpoints(out(name)).empty());
    EXPECT_FALSE(fs::exists(out(name) + "/model.safetensors"));
  }
}

TEST_F(Train, PostSaveCommandFailureIsLoggedAndNeverBreaksTraining) {
  const auto r = run(2, "train " + write_config("hook", {{"max_steps", 4}, {"save_strategy", "steps"}, {"save_steps", 2},
                                                          {"post_save_command", "false"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("post_save_command failed for " + out("hook") + "/checkpoint-2 (exit status 1)"), std::string::npos)
      << r.out;
  EXPECT_TRUE(checkpoint::is_complete_checkpoint(out("hook") + "/checkpoint-4"));
  EXPECT_TRUE(fs::exists(out("hook") + "/model.safetensors"));
}

TEST_F(Train, CheckpointsLeftHalfWrittenAreIgnoredAndCleanedUp) {
  const json saving = {{"max_steps", 4}, {"save_strategy", "steps"}, {"save_steps", 2}};
  auto r = run(2, "train " + write_config("killed", saving));
  ASSERT_EQ(r.status, 0) << r.err;
  // What a job killed mid-save leaves: a staging dir, and a renamed dir whose marker never came.
  fs::create_directories(out("killed") + "/.tmp-checkpoint-6");
  testing::write_bytes(out("killed") + "/.tmp-checkpoint-6/model.safetensors", "half");
  fs::create_directories(out("killed") + "/checkpoint-5");
  testing::write_bytes(out("killed") + "/checkpoint-5/.mpitrain-checkpoint", "");  // written first by every save
  testing::write_bytes(out("killed") + "/checkpoint-5/trainer_state.json", "{");
  // And a rotation killed while it deleted checkpoint-1 (set aside first).
  fs::create_directories(out("killed") + "/.deleting-checkpoint-1");
  testing::write_bytes(out("killed") + "/.deleting-checkpoint-1/model.safetensors", "half");
  r = run(2, "train " + write_config("killed", saving) + " --resume_from_checkpoint=true --max_steps=6");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from " + out("killed") + "/checkpoint-4"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out("killed") + "/.tmp-checkpoint-6/model.safetensors"));
  EXPECT_FALSE(fs::exists(out("killed") + "/checkpoint-5"));
  EXPECT_FALSE(fs::exists(out("killed") + "/.deleting-checkpoint-1"));
  EXPECT_TRUE(checkpoint::is_complete_checkpoint(out("killed") + "/checkpoint-6"));
}

TEST_F(Train, RotationKeepsTheNewestAndNeverDeletesTheBest) {
  // greater_is_better with a falling loss makes the first checkpoint the best: rotation must keep it.
  const json rotating = {{"max_steps", 8}, {"eval_strategy", "steps"}, {"eval_steps", 2}, {"save_strategy", "steps"},
                         {"save_steps", 2}, {"save_total_limit", 2}, {"greater_is_better", true},
                         {"load_best_model_at_end", true}};
  const auto r = run(2, "train " + write_config("rotate", rotating));
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::int64_t> steps;
  for (const auto& c : checkpoint::complete_checkpoints(out("rotate"))) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<std::int64_t>{2, 8}));
  const auto state = json::parse(testing::read_bytes(out("rotate") + "/checkpoint-8/trainer_state.json"));
  EXPECT_EQ(state["best_model_checkpoint"], out("rotate") + "/checkpoint-2");
  // load_best_model_at_end: the final model is checkpoint-2's.
  EXPECT_TRUE(testing::read_bytes(out("rotate") + "/model.safetensors") ==
              testing::read_bytes(out("rotate") + "/checkpoint-2/model.safetensors"));
  // The run directory moved, then resumed: its best checkpoint is found at its new place (before,
  // the old path was looked for and the last step's model saved without a word).
  fs::rename(out("rotate"), out("rotate_moved"));
  const auto resumed = run(2, "train " + write_config("rotate_moved", rotating) + " --max_steps=10 --resume_from_checkpoint=true");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("loaded the best model from " + out("rotate_moved") + "/checkpoint-2"), std::string::npos)
      << resumed.out;
  EXPECT_TRUE(fs::exists(out("rotate_moved") + "/checkpoint-2/mpitrain_complete.json"));  // kept by rotation still
  EXPECT_TRUE(testing::read_bytes(out("rotate_moved") + "/model.safetensors") ==
              testing::read_bytes(out("rotate_moved") + "/checkpoint-2/model.safetensors"));
}

TEST_F(Train, ARotationThatCannotDeleteWarnsAndTrainingGoesOn) {
  // Before, a file rotation could not delete (here immutable: even root cannot) ended the run
  // three steps early and left a half-deleted checkpoint-2 that later resumes refused as foreign.
  const json rotating = {{"max_steps", 2}, {"save_strategy", "steps"}, {"save_steps", 2}, {"save_total_limit", 1}};
  auto r = run(2, "train " + write_config("rotate_fail", rotating));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto stuck = out("rotate_fail") + "/checkpoint-2/model.safetensors";
  ASSERT_EQ(std::system(("chattr +i " + stuck).c_str()), 0) << "chattr +i needs root and a file system with attributes";
  struct Unlock {  // wherever the file is by then, the scratch directory can go afterwards
    std::string dir;
    ~Unlock() {
      [[maybe_unused]] const int status =
          std::system(("chattr -i " + dir + "/checkpoint-2/model.safetensors " + dir +
                       "/.deleting-checkpoint-2/model.safetensors 2>/dev/null").c_str());
    }
  } unlock{out("rotate_fail")};
  r = run(2, "train " + write_config("rotate_fail", rotating) + " --max_steps=4 --resume_from_checkpoint=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("could not delete " + out("rotate_fail") + "/checkpoint-2 ("), std::string::npos) << r.err;
  std::vector<std::int64_t> steps;
  for (const auto& c : checkpoint::complete_checkpoints(out("rotate_fail"))) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<std::int64_t>{4}));
  EXPECT_FALSE(fs::exists(out("rotate_fail") + "/checkpoint-2"));  // set aside, not left as a checkpoint
  // The next resume takes checkpoint-4, nothing refused.
  r = run(2, "train " + write_config("rotate_fail", rotating) + " --max_steps=6 --resume_from_checkpoint=true");
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Train, SaveStrategiesStepsEpochAndBest) {
  auto r = run(2, "train " + write_config("epoch", {{"max_steps", -1}, {"num_train_epochs", 2}, {"save_strategy", "epoch"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto saved = checkpoint::complete_checkpoints(out("epoch"));
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[1].step, 2 * saved[0].step);
  const auto state = json::parse(testing::read_bytes(saved[1].path + "/trainer_state.json"));
  EXPECT_DOUBLE_EQ(state["epoch"].get<double>(), 2.0);

  r = run(2, "train " + write_config("best", {{"max_steps", 8}, {"eval_strategy", "steps"}, {"eval_steps", 1},
                                              {"save_strategy", "best"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  // A checkpoint exists exactly at the evals that improved on every earlier one.
  double best = 1e30;
  std::vector<std::int64_t> improved;
  for (const auto& row : metrics(out("best"))) {
    if (row.contains("eval_loss") && row["eval_loss"].get<double>() < best) {
      best = row["eval_loss"].get<double>();
      improved.push_back(row["step"].get<std::int64_t>());
    }
  }
  std::vector<std::int64_t> steps;
  for (const auto& c : checkpoint::complete_checkpoints(out("best"))) steps.push_back(c.step);
  EXPECT_EQ(steps, improved);
  EXPECT_GT(steps.size(), 1u);
}

TEST_F(Train, FinalModelLoadsBackAndGivesDeterministicLogits) {
  auto r = run(2, "train " + write_config("final", {}));
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* file : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                           "tokenizer_config.json", "special_tokens_map.json", "training_args.json", "loss.svg"})
    EXPECT_TRUE(fs::exists(out("final") + "/" + file)) << file;
  // The structure of transformers' own checkpoint of the same architecture (2 layers, tied).
  const auto fixture = testing::fixture("llama_tied/single");
  const auto theirs = json::parse(testing::read_bytes(fixture + "/config.json"));
  const auto ours = json::parse(testing::read_bytes(out("final") + "/config.json"));
  for (auto it = theirs.begin(); it != theirs.end(); ++it) {
    if (it.key() != "transformers_version") {
      EXPECT_TRUE(ours.contains(it.key())) << it.key();
    }
  }
  std::vector<std::string> their_names, our_names;
  const checkpoint::SafetensorsFile their_file(fixture + "/model.safetensors"), our_file(out("final") + "/model.safetensors");
  for (const auto& e : their_file.header().tensors) their_names.push_back(e.name);
  for (const auto& e : our_file.header().tensors) our_names.push_back(e.name);
  EXPECT_EQ(our_names, their_names);
  testing::write_bytes(local_ / "inputs.json", R"({"input_ids": [[72, 101, 108, 108, 111], [87, 111, 114, 108, 100]]})");
  for (const char* name : {"a.npy", "b.npy"}) {
    r = run(0, "logits " + out("final") + " --inputs " + (local_ / "inputs.json") + " --output " + (local_ / name));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  EXPECT_TRUE(testing::read_bytes(local_ / "a.npy") == testing::read_bytes(local_ / "b.npy"));
  r = run(0, "inspect " + out("final"));
  EXPECT_EQ(r.status, 0) << r.out;
  // max_steps=0 re-saves the starting model unchanged.
  r = run(2, "train " + write_config("again", {{"max_steps", 0}}, {{"model", {{"model_name_or_path", out("final")}}}}) +
                 " --model.config=null");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("final") + "/model.safetensors") ==
              testing::read_bytes(out("again") + "/model.safetensors"));
}

TEST_F(Train, BadConfigurationsFailOnEveryRankWithOneLine) {
  const auto config = write_config("bad", {});
  expect_one_line_error(run(2, "train " + config + " --max_stepz=3"), "unknown key 'max_stepz' (did you mean 'max_steps'?)");
  expect_one_line_error(run(2, "train " + config + " --per_device_train_batch_size=-2"),
                        "'training.per_device_train_batch_size' must be positive");
  expect_one_line_error(run(2, "train " + config + " --learning_rate=fast"), "'training.learning_rate' must be a finite number");
  testing::write_bytes(local_ / "typo.json", R"({"training": {"output_dir": "x", "per_device_train_batch_size": "eight"}})");
  expect_one_line_error(run(2, "train " + (local_ / "typo.json")), "must be an integer, got \"eight\"");
  testing::write_bytes(local_ / "section.json", R"({"trainig": {}})");
  expect_one_line_error(run(2, "train " + (local_ / "section.json")), "unknown section 'trainig'");
  // An abbreviation is not a guess at the option it prefixes (Boost's default).
  expect_one_line_error(run(2, "train " + config + " --learning=0.1"), "command line: unknown key 'learning'");
  // Numbers that would train NaN weights to the end and save them with exit status 0.
  expect_one_line_error(run(2, "train " + config + " --learning_rate=nan"),
                        "command line: key 'training.learning_rate' must be a finite number, got 'nan'");
  expect_one_line_error(run(2, "train " + config + " --max_grad_norm=inf"), "'training.max_grad_norm' must be a finite number");
  expect_one_line_error(run(2, "train " + config + " --adam_beta2=1"), "'training.adam_beta2' must be in [0, 1), got 1.0");
  expect_one_line_error(run(2, "train " + config + " --warmup_ratio=1.5"), "'training.warmup_ratio' must be in [0, 1]");
  // Settings used only at the first checkpoint or evaluation fail before any training.
  expect_one_line_error(run(2, "train " + config + " --max_shard_size=abc"), "'training.max_shard_size' is invalid");
  expect_one_line_error(run(2, "train " + config + " --save_dtype=float8"), "'training.save_dtype' must be one of");
  expect_one_line_error(run(2, "train " + config + " --eval_strategy=steps --metric_for_best_model=bogus"),
                        "'bogus' is not an eval metric of this task (loss, perplexity)");
  // A value from the command line is blamed on the command line, not on the file.
  expect_one_line_error(run(2, "train " + config + " --save_total_limit=-1"),
                        "command line: key 'training.save_total_limit' must not be negative");
  testing::write_bytes(local_ / "limit.json", R"({"training": {"output_dir": "x", "save_total_limit": -1}})");
  expect_one_line_error(run(2, "train " + (local_ / "limit.json")),
                        (local_ / "limit.json") + ": key 'training.save_total_limit' must not be negative");
}

TEST_F(Train, WhatCannotFitInMemoryIsRefusedByNameBeforeAnythingIsAllocated) {
  // Each used to grow for minutes (a million layers), end in the allocator's own words
  // (intermediate_size 1e12) or start a million threads per rank.
  const auto with_model_key = [&](const std::string& name, const std::string& key, std::int64_t value) {
    const auto path = write_config(name, {});
    auto config = json::parse(testing::read_bytes(path));
    config["model"]["config"][key] = value;
    testing::write_bytes(path, config.dump());
    return path;
  };
  auto r = run(2, "train " + with_model_key("huge_layers", "num_hidden_layers", 1000000));
  expect_one_line_error(r, "model.config: training this model takes about ");
  EXPECT_NE(r.err.find("num_hidden_layers 1000000 makes it this large"), std::string::npos) << r.err;
  r = run(2, "train " + with_model_key("huge_mlp", "intermediate_size", 1000000000000));
  expect_one_line_error(r, "model.config: training this model takes about ");
  EXPECT_NE(r.err.find("intermediate_size 1000000000000 makes it this large"), std::string::npos) << r.err;
  r = run(2, "train " + write_config("huge_batch", {{"per_device_train_batch_size", 10000000}}));
  expect_one_line_error(r, "the micro-batch makes it this large (training.per_device_train_batch_size 10000000 x 32");
  expect_one_line_error(run(2, "train " + write_config("threads", {}) + " --torch_threads=1000000"),
                        "parallel.torch_threads 1000000 is more than the ");
  // A refused start leaves nothing of its own behind (it used to leave logs/ and an empty
  // metrics.jsonl), here not even the output_dir it made.
  for (const char* name : {"huge_layers", "huge_mlp", "huge_batch", "threads"}) EXPECT_FALSE(fs::exists(out(name))) << name;
}

// With a CUDA LibTorch and a GPU, one rank on the GPU (NCCL) trains as it does on the CPU;
// otherwise `device=cuda` is one line saying why not, and nothing is written.
TEST_F(Train, DeviceCudaTrainsLikeTheCpuOrSaysWhyNot) {
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --device=tpu"), "training.device");
#ifdef MPITRAIN_TORCH_CUDA
  auto r = run(1, "train " + write_config("gpu", {{"max_steps", 6}, {"device", "cuda"}}));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(1, "train " + write_config("cpu", {{"max_steps", 6}}));
  ASSERT_EQ(r.status, 0) << r.err;
  // ZeRO-3 (one rank: shards are whole tensors, the hooks and buffers all run) and bf16 on the GPU.
  r = run(1, "train " + write_config("gpu-zero3", {{"max_steps", 6}, {"device", "cuda"}}, {{"parallel", {{"sharding", "zero3"}}}}));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(1, "train " + write_config("gpu-bf16", {{"max_steps", 6}, {"device", "cuda"}, {"bf16", true}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto gpu = losses(out("gpu")), cpu = losses(out("cpu")), zero3 = losses(out("gpu-zero3")),
             bf16 = losses(out("gpu-bf16"));
  ASSERT_EQ(gpu.size(), cpu.size());
  ASSERT_EQ(zero3.size(), cpu.size());
  ASSERT_EQ(bf16.size(), cpu.size());
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    EXPECT_NEAR(gpu[i], cpu[i], 1e-3) << "step " << i + 1;
    EXPECT_NEAR(zero3[i], cpu[i], 1e-3) << "step " << i + 1;
    EXPECT_NEAR(bf16[i], cpu[i], 0.05) << "step " << i + 1;
  }
#else
  expect_one_line_error(run(2, "train " + write_config("nogpu", {{"device", "cuda"}})),
                        "training.device=cuda: this LibTorch was built without CUDA");
  EXPECT_FALSE(fs::exists(out("nogpu") + "/model.safetensors"));
#endif
}

TEST_F(Train, BadDataFailsOnEveryRankWithOneLine) {
  const auto config = write_config("bad", {});
  expect_one_line_error(run(2, "train " + config + " --train_file=" + (local_ / "missing.h5")), "missing.h5: data file does not exist");
  testing::write_bytes(local_ / "corrupt.h5", "this is not HDF5 at all");
  expect_one_line_error(run(2, "train " + config + " --train_file=" + (local_ / "corrupt.h5")), "corrupt.h5: not an HDF5 file");
  fs::create_directories(local_ / "short");
  testing::write_bytes(local_ / "short/a.txt", std::string(100, 'a'));  // 2 windows of 32 for 2 ranks x batch 2
  auto r = run(0, "prepare-data " + (local_ / "short") + " " + (local_ / "short.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_one_line_error(run(2, "train " + config + " --train_file=" + (local_ / "short.h5")),
                        "training samples are fewer than one optimizer step needs");
}

TEST_F(Train, Bfloat16AutocastTrainsWithFloat32MasterWeights) {
  // Every step follows float32's: autocast's cache of bf16 weight copies is cleared after each
  // forward (when it was not, every step computed with the first step's weights and the loss
  // at step 8 stood 0.66 above float32's).
  const json steps = {{"max_steps", 8}, {"learning_rate", 5e-3}};
  auto bf16 = steps;
  bf16["bf16"] = true;
  const auto r = run(2, "train " + write_config("bf16", bf16));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto l = losses(out("bf16"));
  ASSERT_EQ(l.size(), 8u);
  const auto reference = run(2, "train " + write_config("fp32", steps));
  ASSERT_EQ(reference.status, 0) << reference.err;
  const auto f = losses(out("fp32"));
  ASSERT_EQ(f.size(), 8u);
  EXPECT_LT(f.back(), f.front() - 0.3);  // it learns, so stale weights would show
  for (std::size_t i = 0; i < l.size(); ++i) EXPECT_NEAR(l[i], f[i], 0.05) << "step " << i + 1;  // bf16 keeps ~3 digits
  const checkpoint::SafetensorsFile saved(out("bf16") + "/model.safetensors");
  EXPECT_EQ(saved.header().tensors.front().dtype, checkpoint::DType::F32);
}

TEST_F(Train, OwnTokenizerIsSavedWithTheModel) {
  fs::create_directories(local_ / "my_tokenizer");
  testing::write_bytes(local_ / "my_tokenizer/tokenizer_config.json", R"({"tokenizer_class": "MyTokenizer"})");
  const auto r = run(2, "train " + write_config("tok", {{"max_steps", 1}},
                                                {{"data", {{"tokenizer_name_or_path", local_ / "my_tokenizer"}}}}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(testing::read_bytes(out("tok") + "/tokenizer_config.json"), R"({"tokenizer_class": "MyTokenizer"})");
  EXPECT_FALSE(fs::exists(out("tok") + "/tokenizer.json"));
}

TEST_F(Train, DataIsTokenizedWithTheHfTokenizerNamedAndItsFilesAreSaved) {
  const std::string tokenizer = std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/bytelevel-bpe";
  const json data = {{"train_file", ""}, {"source", *scratch_ / "corpus"}, {"tokenizer_name_or_path", tokenizer}};
  auto config = json::parse(testing::read_bytes(
      write_config("hf_tok", {{"max_steps", 2}, {"save_strategy", "steps"}, {"save_steps", 2}}, {{"data", data}})));
  config["model"]["config"]["vocab_size"] = 6144;  // the tokenizer's 6,122 ids fit
  testing::write_bytes(local_ / "hf_tok.json", config.dump());
  auto r = run(2, "train " + (local_ / "hf_tok.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("with " + tokenizer + "/tokenizer.json"), std::string::npos) << r.out;
  // In the final directory and in every checkpoint, byte for byte.
  for (const auto& dir : {out("hf_tok"), out("hf_tok") + "/checkpoint-2"})
    for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
      EXPECT_EQ(testing::read_bytes(dir + "/" + file), testing::read_bytes(tokenizer + "/" + file)) << dir << " " << file;
  // The same data with the default model vocabulary (259): the tokenizer's ids do not fit.
  config["model"]["config"]["vocab_size"] = 259;
  config["training"]["output_dir"] = out("hf_tok_small");
  testing::write_bytes(local_ / "hf_tok_small.json", config.dump());
  expect_one_line_error(run(2, "train " + (local_ / "hf_tok_small.json")), "data vocab_size 6122 exceeds the model's vocab_size 259");
}

TEST_F(Train, TheSeedsExampleFineTunesABertBaseWithItsTokenizerAndSavesBoth) {
  // A BERT base directory with the WordPiece tokenizer (mpitrain init), fine-tuned for 2 labels on
  // the shipped spam JSON lines with eval and save per epoch, the best model (accuracy) loaded at
  // the end, one checkpoint kept: HF's Trainer.save_model() workflow, no Python.
  const std::string source = MPITRAIN_SOURCE_DIR, tokenizer = std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/wordpiece-uncased";
  auto r = run(0, "init " + source + "/configs/bert-wordpiece/config.json " + (local_ / "base") + " --tokenizer " + tokenizer);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(2, "train " + source + "/configs/bert-wordpiece-spam.json --model_name_or_path=" + (local_ / "base") +
                 " --output_dir=" + out("spam") + " --source=" + source + "/configs/data/spam/spam.jsonl" +
                 " --num_train_epochs=3 --max_length=128 --torch_threads=1 --progress_bar=false");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("with " + (local_ / "base") + "/tokenizer.json"), std::string::npos) << r.out;
  const auto best = r.out.find("loaded the best model from ");
  ASSERT_NE(best, std::string::npos) << r.out;
  const double accuracy = std::stod(r.out.substr(r.out.find("(accuracy ", best) + 10));
  EXPECT_GE(accuracy, 0.75) << "half the rows are spam: 0.5 is a guess";
  const auto config = json::parse(testing::read_bytes(out("spam") + "/config.json"));
  EXPECT_EQ(config["id2label"], json({{"0", "ham"}, {"1", "spam"}}));
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_EQ(testing::read_bytes(out("spam") + "/" + file), testing::read_bytes(tokenizer + "/" + file)) << file;
  EXPECT_TRUE(fs::exists(out("spam") + "/training_args.json"));
  // It loads back: every tensor fits the config, and a forward pass runs.
  EXPECT_EQ(run(0, "inspect " + out("spam")).status, 0);
  testing::write_bytes(local_ / "inputs.json", R"({"input_ids": [[2, 100, 200, 3]]})");
  r = run(0, "logits " + out("spam") + " --inputs " + (local_ / "inputs.json") + " --output " + (local_ / "l.npy"));
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Train, ABaseCheckpointGetsANewTaskHeadAndItsUnusedHeadIsNamedAndNotSaved) {
  const std::string source = MPITRAIN_SOURCE_DIR, tokenizer = std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/wordpiece-uncased";
  auto r = run(0, "init " + source + "/configs/bert-wordpiece/config.json " + (local_ / "full") + " --tokenizer " + tokenizer);
  ASSERT_EQ(r.status, 0) << r.err;
  // What a BertForMaskedLM checkpoint looks like: no "bert." prefix, no classifier, an MLM head.
  const auto make_base = [&](const std::string& dir, const json& architectures) {
    fs::create_directories(dir);
    auto config = json::parse(testing::read_bytes(local_ / "full/config.json"));
    config["architectures"] = architectures;
    config.erase("id2label");
    config.erase("label2id");
    testing::write_bytes(dir + "/config.json", config.dump());
    const checkpoint::SafetensorsFile full(local_ / "full/model.safetensors");
    std::vector<checkpoint::TensorBytes> tensors;
    for (const auto& e : full.header().tensors) {
      if (e.name.rfind("classifier.", 0) == 0) continue;
      tensors.push_back({{e.name.rfind("bert.", 0) == 0 ? e.name.substr(5) : e.name, e.dtype, e.shape}, full.data(e)});
    }
    static const std::vector<float> mlm_bias(3904, 0.0f);
    tensors.push_back({{"cls.predictions.bias", checkpoint::DType::F32, {3904}}, mlm_bias.data()});
    checkpoint::save_hf_weights(dir, tensors, 5'000'000'000);
    for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
      fs::copy_file(tokenizer + "/" + file, dir + "/" + file);
  };
  make_base(local_ / "base", json::array({"BertForMaskedLM"}));
  testing::write_bytes(local_ / "rows.jsonl", [&] {
    std::ifstream all(source + "/configs/data/spam/spam.jsonl");
    std::string line, some;
    for (int i = 0; i < 60 && std::getline(all, line); ++i) some += line + "\n";
    return some;
  }());
  const std::string labels = R"({"id2label": {"0": "ham", "1": "spam"}, "label2id": {"ham": 0, "spam": 1}})";
  const auto train = [&](const std::string& from, const std::string& name, const std::string& sharding = "none") {
    const json config = {{"model", {{"model_name_or_path", from}, {"config_overrides", json::parse(labels)}}},
                         {"data", {{"source", local_ / "rows.jsonl"}, {"task", "classification"}, {"max_length", 64}}},
                         {"training", {{"output_dir", out(name)}, {"max_steps", 2}, {"per_device_train_batch_size", 4},
                                       {"save_strategy", "no"}, {"logging_steps", 1}, {"progress_bar", false}}},
                         {"parallel", {{"torch_threads", 1}, {"sharding", sharding}}}};
    testing::write_bytes(local_ / (name + ".json"), config.dump());
    return run(2, "train " + (local_ / (name + ".json")));
  };
  r = train(local_ / "base", "head");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("initialised: classifier.weight, classifier.bias (a new BertForSequenceClassification head"),
            std::string::npos)
      << r.out;
  EXPECT_NE((r.out + r.err).find("not used, and not saved: cls.predictions.bias"), std::string::npos) << r.out << r.err;
  const checkpoint::SafetensorsFile saved(out("head") + "/model.safetensors");
  std::set<std::string> names;
  for (const auto& e : saved.header().tensors) names.insert(e.name);
  EXPECT_TRUE(names.count("classifier.weight") && names.count("bert.embeddings.word_embeddings.weight"));
  EXPECT_FALSE(names.count("cls.predictions.bias"));
  const auto config = json::parse(testing::read_bytes(out("head") + "/config.json"));
  EXPECT_EQ(config["architectures"], json::array({"BertForSequenceClassification"}));
  EXPECT_EQ(config["id2label"], json({{"0", "ham"}, {"1", "spam"}}));
  // Under ZeRO-3 (each rank reads only its shards of the source) the new head is the same:
  // one seeded draw on every rank; the run matches the unsharded one's first loss.
  r = train(local_ / "base", "head_zero3", "zero3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("initialised: classifier.weight, classifier.bias"), std::string::npos) << r.out;
  ASSERT_FALSE(losses(out("head_zero3")).empty());
  EXPECT_NEAR(losses(out("head_zero3")).front(), losses(out("head")).front(), 1e-4);
  // A checkpoint that says it is a classifier but lacks its classifier is broken, not a base.
  make_base(local_ / "broken", json::array({"BertForSequenceClassification"}));
  expect_one_line_error(train(local_ / "broken", "broken"), "tensor(s) the model needs are missing (classifier.weight, classifier.bias)");
}

TEST_F(Train, PromptCompletionLossIsTheMeanOverTheGlobalBatchsCompletionTokens) {
  // Rows of different prompt and completion lengths: a mean per micro-batch (or per rank) would
  // weigh a short completion's tokens more. The mean over the global batch's completion tokens
  // is the same at np 1 x 4 rows, np 2 x 2 and np 2 x 1 with 2 accumulation steps.
  std::string lines;
  for (int i = 0; i < 48; ++i) {
    std::string prompt(3 + (i * 7) % 40, static_cast<char>('a' + i % 26)), completion(1 + (i * 5) % 17, 'z');
    lines += json{{"prompt", prompt + " says"}, {"completion", " " + completion}}.dump() + "\n";
  }
  testing::write_bytes(local_ / "sft.jsonl", lines);
  const auto sft = [&](const std::string& name, json training) {
    auto config = json::parse(testing::read_bytes(write_config(name, training)));
    config["data"] = {{"source", local_ / "sft.jsonl"}, {"task", "sft"}, {"max_length", 48}};
    testing::write_bytes(local_ / (name + ".json"), config.dump());
    return local_ / (name + ".json");
  };
  auto r = run(1, "train " + sft("sft1", {{"per_device_train_batch_size", 4}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reference = losses(out("sft1"));
  ASSERT_EQ(reference.size(), 6u);
  for (const auto& [name, batch, accumulation] :
       {std::tuple<std::string, int, int>{"sft2", 2, 1}, {"sft2_ga", 1, 2}}) {
    r = run(2, "train " + sft(name, {{"per_device_train_batch_size", batch}, {"gradient_accumulation_steps", accumulation}}));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto ours = losses(out(name));
    ASSERT_EQ(ours.size(), reference.size());
    for (std::size_t i = 0; i < ours.size(); ++i) EXPECT_NEAR(ours[i], reference[i], 2e-4) << name << " step " << i + 1;
    EXPECT_LT(max_weight_difference(out(name), out("sft1")), 5e-5) << name;
  }
  // The prompt's tokens are no targets: training on them too (completion_only_loss=false) is
  // another loss.
  auto config = json::parse(testing::read_bytes(sft("sft_all", {{"per_device_train_batch_size", 4}})));
  config["data"]["completion_only_loss"] = false;
  testing::write_bytes(local_ / "sft_all.json", config.dump());
  r = run(1, "train " + (local_ / "sft_all.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GT(std::fabs(losses(out("sft_all")).front() - reference.front()), 1e-3);
}

TEST_F(Train, SrunWithoutPmiIsExplained) {
  // Every task of `srun` without PMI sees a world of one while Slurm says there are more.
  const auto r = run(0, "train " + write_config("srun", {}), "SLURM_JOB_ID=7 SLURM_STEP_ID=0 SLURM_PROCID=0 SLURM_NTASKS=2");
  expect_one_line_error(r, "started by srun with 2 tasks but srun did not pass PMI to MPI");
  EXPECT_NE(r.err.find("srun --mpi=pmix"), std::string::npos);
}

TEST_F(Train, BadOutputAndResumeFailWithoutTouchingAnything) {
  testing::write_bytes(local_ / "a_file", "precious");
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --output_dir=" + (local_ / "a_file")),
                        "output_dir '" + (local_ / "a_file") + "' is a file");
  EXPECT_EQ(testing::read_bytes(local_ / "a_file"), "precious");
  fs::create_directories(out("bad") + "/checkpoint-3");
  testing::write_bytes(out("bad") + "/checkpoint-3/.mpitrain-checkpoint", "");  // a killed save's
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --resume_from_checkpoint=" + out("bad") + "/checkpoint-3"),
                        "is incomplete");
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --resume_from_checkpoint=" + out("bad") + "/checkpoint-9"),
                        "does not exist");
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --resume_from_checkpoint=true"),
                        "holds no complete checkpoint");
  EXPECT_TRUE(fs::exists(out("bad") + "/checkpoint-3"));  // an incomplete checkpoint is not deleted by a failed start
  // A checkpoint of a wider model.
  const json wide = {{"model_type", "llama"}, {"vocab_size", 259}, {"hidden_size", 64}, {"intermediate_size", 64},
                     {"num_hidden_layers", 2}, {"num_attention_heads", 2}};
  auto r = run(2, "train " + write_config("wide", {{"max_steps", 1}, {"save_strategy", "steps"}, {"save_steps", 1}},
                                          {{"model", {{"config", wide}}}}));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --resume_from_checkpoint=" + out("wide") + "/checkpoint-1"),
                        "a checkpoint of another model?");
  // A checkpoint of a deeper model: its extra layer would be dropped silently, with its moments.
  const json shallow = {{"model_type", "llama"}, {"vocab_size", 259}, {"hidden_size", 64}, {"intermediate_size", 64},
                        {"num_hidden_layers", 1}, {"num_attention_heads", 2}};
  expect_one_line_error(run(2, "train " + write_config("bad", {}, {{"model", {{"config", shallow}}}}) +
                                   " --resume_from_checkpoint=" + out("wide") + "/checkpoint-1"),
                        "holds tensor 'model.layers.1.");
  // A marker emptied of its file list cannot vouch for the files.
  fs::copy(out("wide") + "/checkpoint-1", out("wide") + "/checkpoint-2", fs::copy_options::recursive);
  testing::write_bytes(out("wide") + "/checkpoint-2/mpitrain_complete.json", "{}");
  expect_one_line_error(run(2, "train " + write_config("bad", {}, {{"model", {{"config", wide}}}}) +
                                   " --resume_from_checkpoint=" + out("wide") + "/checkpoint-2"),
                        "mpitrain_complete.json: lists no files to verify");
  testing::write_bytes(out("wide") + "/checkpoint-2/mpitrain_complete.json", "[]");
  expect_one_line_error(run(2, "train " + write_config("bad", {}, {{"model", {{"config", wide}}}}) +
                                   " --resume_from_checkpoint=" + out("wide") + "/checkpoint-2"),
                        "mpitrain_complete.json: must be a JSON object, got array");
  fs::create_directories(local_ / "not_a_model");
  expect_one_line_error(run(2, "train " + write_config("bad", {}) + " --model_name_or_path=" + (local_ / "not_a_model")),
                        "config.json");
  // A checkpoint of output_dir named by path whose marker is gone, beside a complete one
  // (checkpoint-1): named as incomplete, not taken for "checkpoint(s) of an earlier run".
  fs::remove(out("wide") + "/checkpoint-2/mpitrain_complete.json");
  expect_one_line_error(run(2, "train " + write_config("wide", {{"save_strategy", "steps"}}, {{"model", {{"config", wide}}}}) +
                                   " --resume_from_checkpoint=" + out("wide") + "/checkpoint-2"),
                        "resume_from_checkpoint '" + out("wide") + "/checkpoint-2' is incomplete (no mpitrain_complete.json");
}

TEST_F(Train, AnOutputDirNotSharedByEveryRankFailsAtTheStart) {
  // Two "nodes" with node-local storage: mpirun's MPMD form gives rank 1 an output_dir rank 0
  // does not see, as /tmp on another host would be.
  const auto node0 = write_config("node0", {{"save_strategy", "steps"}, {"save_steps", 2}});
  const auto node1 = write_config("node1", {{"save_strategy", "steps"}, {"save_steps", 2}});
  expect_one_line_error(run(1, "train " + node0 + " : -np 1 " + MPITRAIN_BINARY + " train " + node1),
                        out("node1") + ": is not on a filesystem every rank shares: rank 1 (on host ");
  // Nothing was trained or saved, and the probe is gone: the refused start took away the
  // output_dirs it had made.
  for (const auto& dir : {out("node0"), out("node1")}) EXPECT_FALSE(fs::exists(dir)) << dir;
  // Where only rank 0 writes (no checkpoints, not even on a signal; save_mode gather; data given), node-local
  // storage will do: the model is saved on rank 0's "node".
  const json rank0_only = {{"save_strategy", "no"}, {"save_mode", "gather"}, {"save_on_signals", ""}};
  // (A stop signal would make every rank save a checkpoint there.)
  json on_signals = rank0_only;
  on_signals.erase("save_on_signals");
  expect_one_line_error(run(1, "train " + write_config("signal0", on_signals) + " : -np 1 " + MPITRAIN_BINARY +
                                   " train " + write_config("signal1", on_signals)),
                        "when a stop signal comes (save_on_signals): output_dir must be on a shared filesystem");
  const auto r = run(1, "train " + write_config("local0", rank0_only) + " : -np 1 " + MPITRAIN_BINARY + " train " +
                            write_config("local1", rank0_only));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out("local0") + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(out("local1") + "/model.safetensors"));
}

TEST_F(Train, AStartOverAnEarlierRunsCheckpointsMustResumeOrSayOverwrite) {
  // Before, a new run's checkpoint-2 silently replaced the earlier run's while its checkpoint-4
  // stayed: a later resume=true took the other run's weights.
  auto r = run(2, "train " + write_config("earlier", {{"max_steps", 4}, {"save_strategy", "steps"}, {"save_steps", 2}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto first = testing::read_bytes(out("earlier") + "/checkpoint-4/model.safetensors");
  const auto again = write_config("earlier", {{"max_steps", 2}, {"save_strategy", "steps"}, {"save_steps", 2},
                                              {"learning_rate", 5e-3}});
  expect_one_line_error(run(2, "train " + again),
                        "holds 2 checkpoint(s) of an earlier run (checkpoint-4 the latest): resume it");
  EXPECT_EQ(testing::read_bytes(out("earlier") + "/checkpoint-4/model.safetensors"), first);
  r = run(2, "train " + again + " --overwrite_output_dir=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out("earlier") + "/checkpoint-2"));
  EXPECT_FALSE(fs::exists(out("earlier") + "/checkpoint-4"));
  // A resume continues the run the checkpoints belong to: no overwrite needed.
  r = run(2, "train " + again + " --max_steps=4 --resume_from_checkpoint=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out("earlier") + "/checkpoint-4"));
  // Resuming from an earlier one of them abandons the later ones: they must go first.
  const auto from_2 = " --max_steps=4 --resume_from_checkpoint=" + out("earlier") + "/checkpoint-2/";
  expect_one_line_error(run(2, "train " + again + from_2), "holds 1 checkpoint(s) after the one resumed from (checkpoint-4");
  // overwrite_output_dir deletes only once the run has started: a mistyped checkpoint (before,
  // every checkpoint was deleted first) or a FIFO in place of metrics.jsonl (before, a hang)
  // leaves them all.
  expect_one_line_error(run(2, "train " + again + " --max_steps=4 --resume_from_checkpoint=" + out("earlier") +
                                   "/checkpoint-3 --overwrite_output_dir=true"),
                        "checkpoint-3' does not exist");
  EXPECT_TRUE(fs::exists(out("earlier") + "/checkpoint-4/mpitrain_complete.json"));
  ASSERT_EQ(::mkfifo((out("earlier") + "/metrics.jsonl.fifo").c_str(), 0644), 0);
  fs::rename(out("earlier") + "/metrics.jsonl", out("earlier") + "/metrics.jsonl.kept");
  fs::rename(out("earlier") + "/metrics.jsonl.fifo", out("earlier") + "/metrics.jsonl");
  expect_one_line_error(run(2, "train " + again + " --overwrite_output_dir=true"), "metrics.jsonl: is not a regular file");
  EXPECT_TRUE(fs::exists(out("earlier") + "/checkpoint-4/mpitrain_complete.json"));
  fs::remove(out("earlier") + "/metrics.jsonl");
  fs::rename(out("earlier") + "/metrics.jsonl.kept", out("earlier") + "/metrics.jsonl");
  r = run(2, "train " + again + from_2 + " --overwrite_output_dir=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(out("earlier") + "/checkpoint-4/mpitrain_complete.json"));  // this run's own
  // metrics.jsonl is this run's story: each step once (before, 1..4 of the first run, 1, 2 of
  // the overwrite, 3, 4 twice). The lines taken out are kept aside: the first run's 4 steps,
  // its 3 save reports and summary; the overwrite's report of checkpoint-2, summary and final
  // save's report (logged after checkpoint-2 was saved); then the abandoned 3, 4, report of
  // checkpoint-4, summary and final save's report.
  const auto logged_steps = [&] {
    std::vector<std::int64_t> steps;
    for (const auto& row : metrics(out("earlier")))
      if (row.contains("loss")) steps.push_back(row["step"].get<std::int64_t>());
    return steps;
  };
  EXPECT_EQ(logged_steps(), (std::vector<std::int64_t>{1, 2, 3, 4}));
  std::ifstream dropped(out("earlier") + "/logs/metrics-dropped.jsonl");
  std::size_t dropped_lines = 0;
  for (std::string line; std::getline(dropped, line);) dropped_lines += json::parse(line).contains("step") ? 1 : 0;
  EXPECT_EQ(dropped_lines, 16u);
  EXPECT_NE(r.out.find("metrics.jsonl: 5 earlier line(s) not in this run's history (resumed from " + out("earlier") +
                       "/checkpoint-2/ at step 2) moved to logs/metrics-dropped.jsonl"),
            std::string::npos)
      << r.out;
  // A run that saves no checkpoint mixes nothing in.
  r = run(2, "train " + write_config("earlier", {{"max_steps", 1}, {"save_on_signals", ""}}));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(logged_steps(), (std::vector<std::int64_t>{1}));
}

TEST_F(Train, DataPreparedInOutputDirFollowsItsSourceAndSettings) {
  // Before, output_dir/data/prepared.h5 was reused whatever changed: an edited source or
  // max_length trained on the old data, and an interrupted preparation was taken as whole.
  const auto corpus = out("prep_corpus");
  fs::create_directories(corpus);
  for (const auto& item : fs::directory_iterator(*scratch_ / "corpus"))
    fs::copy_file(item.path(), corpus + "/" + item.path().filename().string());
  const auto config =
      write_config("prep", {{"max_steps", 1}}, {{"data", {{"train_file", ""}, {"source", corpus}, {"eval_every", 4}}}});
  const auto prepared = out("prep") + "/data/prepared.h5";
  const auto prepares = [&](const std::string& options) {
    const auto r = run(1, "train " + config + options);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out.find("preparing " + prepared + " from " + corpus) != std::string::npos;
  };
  EXPECT_TRUE(prepares(""));
  EXPECT_FALSE(prepares(""));  // the same source and settings: reused
  testing::write_bytes(corpus + "/zz-added.txt", "A further address to the nation, added after the first run.");
  EXPECT_TRUE(prepares(""));
  EXPECT_FALSE(prepares(""));
  EXPECT_TRUE(prepares(" --eval_every=2"));
  fs::remove(prepared + ".json");  // as a preparation killed before its end leaves it
  EXPECT_TRUE(prepares(" --eval_every=2"));
  EXPECT_FALSE(prepares(" --eval_every=2"));
}

TEST_F(Train, SequencesLongerThanThePositionEmbeddingsAreCaughtAtTheStart) {
  // Learned positions (GPT-2's n_positions): an error before any step (before, at the first
  // forward, after loading the model). The data's seq_len is 32.
  const json gpt2 = {{"model_type", "gpt2"}, {"vocab_size", 259}, {"n_embd", 32},   {"n_layer", 1},
                     {"n_head", 2},          {"n_positions", 16}, {"n_inner", 64}};
  const auto refused = run(1, "train " + write_config("positions_gpt2", {{"max_steps", 1}}, {{"model", {{"config", gpt2}}}}));
  expect_one_line_error(refused, "data.seq_len 32 exceeds the model's n_positions 16 (learned position embeddings end there)");
  EXPECT_EQ(refused.out.find("training 1 steps"), std::string::npos) << refused.out;  // before the loop
  // Rotary (Llama): it trains, and says the positions beyond were never trained.
  const json llama = {{"model_type", "llama"}, {"vocab_size", 259}, {"hidden_size", 32}, {"intermediate_size", 64},
                      {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"max_position_embeddings", 16}};
  const auto r = run(1, "train " + write_config("positions_llama", {{"max_steps", 1}}, {{"model", {{"config", llama}}}}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("mpitrain: warning: data.seq_len 32 exceeds the model's max_position_embeddings 16: positions "
                       "beyond it were never trained (rotary embeddings extrapolate)"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(fs::exists(out("positions_llama") + "/model.safetensors"));
}

TEST_F(Train, CheckpointDirectoriesMpitrainDidNotWriteAreNeverDeleted) {
  // Before, any save deleted a checkpoint-N without mpitrain's marker as a killed job's: a
  // Hugging Face Trainer's checkpoint-500, a folder of the user's, a link.
  const auto config = write_config("foreign", {{"max_steps", 2}, {"save_strategy", "steps"}, {"save_steps", 2}});
  fs::create_directories(out("foreign") + "/checkpoint-500");
  testing::write_bytes(out("foreign") + "/checkpoint-500/optimizer.pt", "theirs");
  expect_one_line_error(run(2, "train " + config),
                        "holds checkpoint-500, which mpitrain did not write (another trainer's checkpoint? a folder of yours?)");
  expect_one_line_error(run(2, "train " + config + " --resume_from_checkpoint=auto"), "which mpitrain did not write");
  EXPECT_EQ(testing::read_bytes(out("foreign") + "/checkpoint-500/optimizer.pt"), "theirs");
  auto r = run(2, "train " + config + " --overwrite_output_dir=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(out("foreign") + "/checkpoint-500"));
  EXPECT_TRUE(fs::exists(out("foreign") + "/checkpoint-2/.mpitrain-checkpoint"));
  // A checkpoint of another directory: this one's checkpoints are an earlier run's.
  const auto other = write_config("other_dir", {{"max_steps", 2}, {"save_strategy", "steps"}, {"save_steps", 2}});
  r = run(2, "train " + other);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_one_line_error(run(2, "train " + config + " --max_steps=4 --resume_from_checkpoint=" + out("other_dir") + "/checkpoint-2"),
                        "holds 1 checkpoint(s) of an earlier run (checkpoint-2 the latest)");
  // The checkpoint resumed from as output_dir: the run would write over the files it reads.
  expect_one_line_error(run(2, "train " + config + " --max_steps=4 --resume_from_checkpoint=" + out("other_dir") +
                                   "/checkpoint-2 --output_dir=" + out("other_dir") + "/checkpoint-2"),
                        "is the checkpoint resumed from: the run would write over it");
  // A model reader verifies what it reads: a checkpoint without its scheduler state still loads.
  fs::remove(out("other_dir") + "/checkpoint-2/scheduler.json");
  testing::write_bytes(local_ / "foreign_inputs.json", R"({"input_ids": [[72, 101, 108]]})");
  r = run(0, "logits " + out("other_dir") + "/checkpoint-2 --inputs " + (local_ / "foreign_inputs.json") + " --output " +
                 (local_ / "foreign.npy"));
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Train, RanksGivenDifferentSettingsFailAtTheStart) {
  // mpirun's MPMD form gives rank 1 other options or another file: before, a different model
  // size crashed inside MPI (heap corruption), a different max_steps hung until the collective
  // timeout, and a different learning rate trained silently diverging replicas.
  const auto config = write_config("same", {{"save_strategy", "steps"}, {"save_steps", 2}, {"max_steps", 4}});
  const auto other_rank = std::string(" : -np 1 ") + MPITRAIN_BINARY + " train " + config;
  expect_one_line_error(run(1, "train " + config + other_rank + " --max_steps=3"),
                        "the run config differs between ranks: rank 1 has training.max_steps = 3 where rank 0 has 4");
  expect_one_line_error(run(1, "train " + config + other_rank + " --learning_rate=0.01"),
                        "rank 1 has training.learning_rate = 0.01 where rank 0 has");
  const json wider = {{"model_type", "llama"}, {"vocab_size", 259}, {"hidden_size", 64}, {"intermediate_size", 64},
                      {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                      {"max_position_embeddings", 64}, {"tie_word_embeddings", true}};
  expect_one_line_error(run(1, "train " + config + " : -np 1 " + MPITRAIN_BINARY + " train " +
                                   write_config("wider", {{"max_steps", 4}}, {{"model", {{"config", wider}}}})),
                        "model.config.hidden_size = 64 where rank 0 has");
  EXPECT_FALSE(fs::exists(out("same") + "/checkpoint-2"));
}

}  // namespace
}  // namespace mpitrain
