// The Trainer's pure planners, without MPI: the start-over plan and resume choice over a listing, the sampler, LR schedules, trainer_state.json and the typed arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "src/data/distributed_sampler.h"
#include "src/train/lr_schedule.h"
#include "src/train/run_config.h"
#include "src/train/run_directory.h"
#include "src/train/trainer_state.h"
#include "src/train/training_arguments.h"
#include "tests/unit/test_files.h"

namespace mpitrain::train {
namespace {

TrainingArguments fresh_run(bool overwrite = false) {
  TrainingArguments a;
  a.output_dir = "/run";
  a.overwrite_output_dir = overwrite;
  return a;
}

RunDirectoryListing listing_of(std::initializer_list<std::int64_t> complete, std::vector<std::string> incomplete = {},
                               std::vector<std::string> foreign = {}) {
  RunDirectoryListing l;
  for (auto s : complete) l.complete.push_back({s, "/run/checkpoint-" + std::to_string(s)});
  l.incomplete = std::move(incomplete);
  l.foreign = std::move(foreign);
  return l;
}

std::string refusal(const TrainingArguments& args, const RunDirectoryListing& listing, const ResumePathPlace& place = {}) {
  try {
    plan_start_over(args, listing, place);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(StartOver, AFreshRunBesideAnEarlierRunsCheckpointsIsRefusedOrDeletesThem) {
  EXPECT_TRUE(plan_start_over(fresh_run(), listing_of({}), {}).paths.empty());
  const auto listing = listing_of({10, 20}, {"/run/.tmp-checkpoint-30"});
  const auto why = refusal(fresh_run(), listing);
  EXPECT_NE(why.find("2 checkpoint(s) of an earlier run (checkpoint-20 the latest)"), std::string::npos) << why;
  EXPECT_NE(why.find("overwrite_output_dir=true"), std::string::npos) << why;
  const auto plan = plan_start_over(fresh_run(true), listing, {});
  EXPECT_EQ(plan.paths, (std::vector<std::string>{"/run/checkpoint-10", "/run/checkpoint-20", "/run/.tmp-checkpoint-30"}));
  EXPECT_NE(plan.what.find("deleted 2 checkpoint(s) of an earlier run"), std::string::npos) << plan.what;
}

TEST(StartOver, ResumingKeepsTheRunsOwnAndAbandonsTheLaterOnes) {
  auto latest = fresh_run();
  latest.resume_from_checkpoint.kind = ResumeFrom::Kind::kLatestIfAny;
  EXPECT_TRUE(plan_start_over(latest, listing_of({10, 20}), {}).paths.empty());
  auto from_10 = fresh_run(true);
  from_10.resume_from_checkpoint = {ResumeFrom::Kind::kPath, "/run/checkpoint-10"};
  ResumePathPlace place;
  place.step_in_output_dir = 10;
  EXPECT_EQ(plan_start_over(from_10, listing_of({10, 20, 30}), place).paths,
            (std::vector<std::string>{"/run/checkpoint-20", "/run/checkpoint-30"}));
  from_10.overwrite_output_dir = false;
  EXPECT_NE(refusal(from_10, listing_of({10, 20}), place).find("after the one resumed from"), std::string::npos);
  place.is_output_dir = true;
  EXPECT_NE(refusal(from_10, listing_of({}), place).find("is the checkpoint resumed from"), std::string::npos);
}

TEST(StartOver, ForeignCheckpointsAreNeverTakenForOurs) {
  const auto listing = listing_of({}, {}, {"/run/checkpoint-500"});
  EXPECT_NE(refusal(fresh_run(), listing).find("checkpoint-500, which mpitrain did not write"), std::string::npos);
  EXPECT_EQ(plan_start_over(fresh_run(true), listing, {}).paths, (std::vector<std::string>{"/run/checkpoint-500"}));
  // A run that saves nothing (no checkpoints, no signal saves) cannot mix with them.
  auto saves_nothing = fresh_run();
  saves_nothing.save_strategy = IntervalStrategy::kNo;
  saves_nothing.save_on_signals = "";
  EXPECT_TRUE(plan_start_over(saves_nothing, listing_of({10}, {}, {"/run/checkpoint-500"}), {}).paths.empty());
}

TEST(ResolveResumePath, TrueAndAutoTakeTheLatestOnlyTrueInsistsOnOne) {
  auto args = fresh_run();
  EXPECT_EQ(resolve_resume_path(args, listing_of({10, 20})), "");
  args.resume_from_checkpoint.kind = ResumeFrom::Kind::kLatest;
  EXPECT_EQ(resolve_resume_path(args, listing_of({10, 20})), "/run/checkpoint-20");
  EXPECT_THROW(resolve_resume_path(args, listing_of({})), std::runtime_error);
  args.resume_from_checkpoint.kind = ResumeFrom::Kind::kLatestIfAny;
  EXPECT_EQ(resolve_resume_path(args, listing_of({})), "");
  EXPECT_EQ(resolve_resume_path(args, listing_of({5})), "/run/checkpoint-5");
  args.resume_from_checkpoint = {ResumeFrom::Kind::kPath, "/no/such/checkpoint-3"};
  try {
    resolve_resume_path(args, listing_of({}));
    ADD_FAILURE() << "accepted a missing path";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("'/no/such/checkpoint-3' does not exist"), std::string::npos) << e.what();
  }
  EXPECT_EQ(directory_named_by("/run/checkpoint-2/"), "/run/checkpoint-2");
}

TEST(DistributedSampler, TheWorldsBatchIsOneRanksBatchOfTheWholeSize) {
  // 2 ranks x batch 3 see exactly the samples 1 rank x batch 6 sees, step by step.
  data::DistributedSampler one(40, 0, 1, 6, 7, true);
  data::DistributedSampler r0(40, 0, 2, 3, 7, true), r1(40, 1, 2, 3, 7, true);
  ASSERT_EQ(one.batches_per_epoch(), 6);  // 40 / 6, the incomplete last batch dropped
  ASSERT_EQ(r0.batches_per_epoch(), 6);
  std::set<std::int64_t> epoch_samples;
  for (std::int64_t k = 0; k < 6; ++k) {
    auto whole = one.batch(0, k);
    auto split = r0.batch(0, k);
    const auto other = r1.batch(0, k);
    split.insert(split.end(), other.begin(), other.end());
    std::sort(whole.begin(), whole.end());
    std::sort(split.begin(), split.end());
    EXPECT_EQ(whole, split) << k;
    epoch_samples.insert(whole.begin(), whole.end());
  }
  EXPECT_EQ(epoch_samples.size(), 36u);  // no sample twice in an epoch
  EXPECT_NE(one.batch(0, 0), one.batch(1, 0));  // each epoch its own permutation
  data::DistributedSampler ordered(10, 1, 2, 2, 7, false);
  EXPECT_EQ(ordered.batch(0, 1), (std::vector<std::int64_t>{5, 7}));
  EXPECT_THROW(ordered.batch(0, 2), std::out_of_range);
}

TEST(LrSchedule, TransformersFormulas) {
  EXPECT_EQ(resolve_warmup_steps(5, 0.5, 100), 5);
  EXPECT_EQ(resolve_warmup_steps(0, 0.1, 95), 10);  // ceil(9.5)
  EXPECT_DOUBLE_EQ(lr_multiplier("linear", 0, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(lr_multiplier("linear", 5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier("linear", 60, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier("linear", 110, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(lr_multiplier("cosine", 60, 10, 110), 0.5);
  EXPECT_NEAR(lr_multiplier("cosine", 35, 10, 110), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  EXPECT_DOUBLE_EQ(lr_multiplier("constant", 0, 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier("constant_with_warmup", 2, 10, 110), 0.2);
  EXPECT_DOUBLE_EQ(lr_multiplier("constant_with_warmup", 50, 10, 110), 1.0);
  EXPECT_THROW(lr_multiplier("polynomial", 1, 0, 10), std::invalid_argument);
}

TEST(TrainerState, RoundTripsThroughTransformersSchema) {
  TrainerState s;
  s.global_step = 40;
  s.epoch = 1.25;
  s.max_steps = 64;
  s.num_train_epochs = 2;
  s.logging_steps = 5;
  s.eval_steps = 10;
  s.save_steps = 20;
  s.train_batch_size = 8;
  s.best_metric = 1.5;
  s.best_model_checkpoint = "/run/checkpoint-20";
  s.log_history = nlohmann::json::array({{{"loss", 2.5}, {"step", 5}}});
  s.loss_since_log = 7.25;
  s.steps_since_log = 3;
  s.num_input_tokens_seen = 12345;
  s.logging_dir = "/run/runs/Dec03_10-00-00_host";
  const auto j = s.to_json();
  EXPECT_EQ(j["num_input_tokens_seen"], 12345);
  EXPECT_TRUE(j["trial_name"].is_null());
  const auto back = TrainerState::from_json(j);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.best_model_checkpoint, s.best_model_checkpoint);
  EXPECT_DOUBLE_EQ(back.loss_since_log, 7.25);
  // No best yet: nulls, read back as none.
  TrainerState none;
  const auto n = none.to_json();
  EXPECT_TRUE(n["best_metric"].is_null());
  EXPECT_TRUE(n["best_model_checkpoint"].is_null());
  EXPECT_FALSE(TrainerState::from_json(n).best_metric.has_value());
  EXPECT_THROW(TrainerState::from_json(nlohmann::json::object()), nlohmann::json::exception);
}

TEST(RunArguments, TypedOnceFromTheValidatedConfig) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "run.json", R"({"model": {"config": {"model_type": "llama"}},
      "training": {"output_dir": "out", "save_mode": "sharded", "resume_from_checkpoint": "auto",
                   "eval_strategy": "epoch", "gather_window_mb": 2, "max_shard_size": "100KB"},
      "parallel": {"sharding": "zero3", "bucket_size_mb": 1}})");
  const auto args = RunArguments::from_config(load_run_config(dir / "run.json", {"--max_steps=7"}));
  EXPECT_EQ(args.training.max_steps, 7);
  EXPECT_EQ(args.training.save_mode, checkpoint::SaveMode::kSharded);
  EXPECT_EQ(args.training.resume_from_checkpoint.kind, ResumeFrom::Kind::kLatestIfAny);
  EXPECT_EQ(args.training.eval_strategy, IntervalStrategy::kEpoch);
  EXPECT_TRUE(args.training.evaluates());
  EXPECT_EQ(args.training.gather_window_bytes, 2u << 20);
  EXPECT_EQ(args.training.max_shard_size, 100'000u);
  EXPECT_EQ(args.training.metric_key(), "eval_loss");
  EXPECT_EQ(args.parallel.sharding, parallel::ShardingStage::kZero3);
  EXPECT_EQ(args.parallel.bucket_bytes, 1u << 20);
  EXPECT_EQ(args.model.config["model_type"], "llama");
  EXPECT_EQ(args.config["training"]["output_dir"], "out");  // the JSON kept for training_args.json
}

}  // namespace
}  // namespace mpitrain::train
