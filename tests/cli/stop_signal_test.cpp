// A stop signal answered wherever it lands: between the micro-batches of a long step, in a long evaluation, during a background save; the checkpoint is the last completed step's and resumes exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "tests/cli/train_fixture.h"

namespace mpitrain {
namespace {

using Clock = std::chrono::steady_clock;

class StopSignal : public Train {
 protected:
  // Waits (polling every 10 ms, up to a minute) until `dir`'s metrics.jsonl logs `step`.
  static bool wait_for_logged_step(const std::string& dir, std::int64_t step) {
    for (int i = 0; i < 6000; ++i) {
      for (const auto& row : metrics(dir))
        if (row.value("step", std::int64_t{-1}) >= step && row.contains("loss")) return true;
      usleep(10000);
    }
    return false;
  }
  // SIGUSR1 to one rank `delay_ms` after `dir` logged `step`; the seconds from the signal to
  // the job's end (its status in `status`), or -1 where it did not end within a minute.
  static double signal_after_step(const BackgroundTrain& job, const std::string& dir, std::int64_t step, int delay_ms,
                                  int* status) {
    EXPECT_TRUE(wait_for_logged_step(dir, step)) << job.err();
    usleep(static_cast<useconds_t>(delay_ms) * 1000);
    const auto sent = Clock::now();
    EXPECT_EQ(std::system(("pkill -USR1 -n -f " + job.ranks()).c_str()), 0);
    for (int i = 0; i < 60000 && !job.ended(); ++i) usleep(1000);
    *status = job.wait_for_status(1);
    return job.ended() ? std::chrono::duration<double>(Clock::now() - sent).count() : -1;
  }
  // write_config's run with `model_config` entries added to the model's config.
  std::string config_with(const std::string& name, const json& training, const json& model_config) {
    const auto path = write_config(name, training);
    auto config = json::parse(testing::read_bytes(path));
    for (auto it = model_config.begin(); it != model_config.end(); ++it) config["model"]["config"][it.key()] = it.value();
    testing::write_bytes(path, config.dump(2));
    return path;
  }
};

TEST_F(StopSignal, ASignalBetweenMicroBatchesDropsTheStepAndTheResumeTakesItAsAnUncutRun) {
  // Steps of 256 micro-batches (about half a second each here), attention dropout so that the
  // dropout stream the checkpoint holds matters: it must be the one the dropped step began with.
  const json long_steps = {{"max_steps", 20000}, {"lr_scheduler_type", "constant"}, {"gradient_accumulation_steps", 256},
                           {"per_device_train_batch_size", 1}};
  const json dropout = {{"attention_dropout", 0.2}};
  const auto config = config_with("dropped", long_steps, dropout);
  const BackgroundTrain job(2, config, local_ / "dropped");
  ASSERT_TRUE(job.started());
  int status = 0;
  const double seconds = signal_after_step(job, out("dropped"), 2, 100, &status);
  ASSERT_EQ(status, 75) << job.err();
  std::cout << "signal to exit, mid-step: " << seconds << " s\n";
  const auto saved = checkpoint::complete_checkpoints(out("dropped"));
  ASSERT_EQ(saved.size(), 1u);
  const auto k = saved[0].step;
  const auto log = job.out() + job.err();
  EXPECT_NE(log.find("SIGUSR1 during step " + std::to_string(k + 1) + " (before micro-batch "), std::string::npos) << log;
  EXPECT_NE(log.find("the step is dropped; step " + std::to_string(k) + " is the one saved"), std::string::npos);
  const auto end = " --max_steps=" + std::to_string(k + 2);
  auto r = run(2, "train " + config + " --resume_from_checkpoint=true" + end);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(2, "train " + config_with("dropped_uncut", long_steps, dropout) + end);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(testing::read_bytes(out("dropped") + "/model.safetensors") ==
              testing::read_bytes(out("dropped_uncut") + "/model.safetensors"));
  EXPECT_EQ(losses(out("dropped")), losses(out("dropped_uncut")));
}

// The eval rows of a run's metrics.jsonl: (step, eval_loss).
std::vector<std::pair<std::int64_t, double>> eval_rows(const std::vector<json>& rows) {
  std::vector<std::pair<std::int64_t, double>> found;
  for (const auto& row : rows)
    if (row.contains("eval_loss")) found.emplace_back(row["step"].get<std::int64_t>(), row["eval_loss"].get<double>());
  return found;
}

TEST_F(StopSignal, ASignalInALongEvaluationCutsItShortAndTheResumeRunsItAgain) {
  // An evaluation of about 190 one-row batches per rank on a model large enough to make it
  // take seconds (on a fast CPU too); the signal lands in the one after step 2.
  const json training = {{"max_steps", 3},     {"lr_scheduler_type", "constant"}, {"eval_strategy", "steps"},
                         {"eval_steps", 2},    {"per_device_eval_batch_size", 1}};
  const json larger = {{"hidden_size", 512}, {"intermediate_size", 2048}, {"num_hidden_layers", 4},
                       {"num_attention_heads", 8}};
  const auto config = config_with("cut_eval", training, larger);
  const BackgroundTrain job(2, config, local_ / "cut_eval");
  ASSERT_TRUE(job.started());
  int status = 0;
  const double seconds = signal_after_step(job, out("cut_eval"), 2, 150, &status);
  ASSERT_EQ(status, 75) << job.err();
  std::cout << "signal to exit, in an evaluation: " << seconds << " s\n";
  const auto log = job.out() + job.err();
  EXPECT_NE(log.find("the evaluation at step 2 was cut short by SIGUSR1 after "), std::string::npos) << log;
  EXPECT_NE(log.find("stopped by SIGUSR1 at step 2 after saving"), std::string::npos) << log;
  const auto saved = checkpoint::complete_checkpoints(out("cut_eval"));
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].step, 2);
  EXPECT_TRUE(eval_rows(metrics(out("cut_eval"))).empty());  // nothing of the cut evaluation is logged
  // The requeued job evaluates step 2 first: its history then is the uncut run's.
  auto r = run(2, "train " + config + " --resume_from_checkpoint=true");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE((r.out + r.err).find("step 2's evaluation is not in the history resumed (a stop cut it short): it runs now"),
            std::string::npos)
      << r.out << r.err;
  r = run(2, "train " + config_with("cut_eval_uncut", training, larger));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto uncut = eval_rows(metrics(out("cut_eval_uncut")));
  ASSERT_EQ(uncut.size(), 1u);
  EXPECT_EQ(eval_rows(metrics(out("cut_eval"))), uncut);
  EXPECT_EQ(losses(out("cut_eval")), losses(out("cut_eval_uncut")));
  EXPECT_TRUE(testing::read_bytes(out("cut_eval") + "/model.safetensors") ==
              testing::read_bytes(out("cut_eval_uncut") + "/model.safetensors"));
}

TEST_F(StopSignal, ASignalDuringABackgroundSaveStopsOnceEveryCheckpointIsComplete) {
  const json training = {{"max_steps", 20000}, {"lr_scheduler_type", "constant"}, {"save_strategy", "steps"},
                         {"save_steps", 2},    {"async_save", true}};
  const json larger = {{"hidden_size", 256}, {"intermediate_size", 1024}, {"num_hidden_layers", 4},
                       {"num_attention_heads", 4}};
  const auto config = config_with("async_stop", training, larger);
  const BackgroundTrain job(2, config, local_ / "async_stop");
  ASSERT_TRUE(job.started());
  int status = 0;
  // Step 2's checkpoint is being written in the background as step 3 runs.
  const double seconds = signal_after_step(job, out("async_stop"), 2, 0, &status);
  ASSERT_EQ(status, 75) << job.err();
  std::cout << "signal to exit, during a background save: " << seconds << " s\n";
  const auto saved = checkpoint::complete_checkpoints(out("async_stop"));
  ASSERT_GE(saved.size(), 1u);
  const auto k = saved.back().step;
  EXPECT_NE(job.err().find("stopped by SIGUSR1 at step " + std::to_string(k) + " after saving"), std::string::npos)
      << job.err();
  for (const auto& entry : fs::directory_iterator(out("async_stop")))
    EXPECT_NE(entry.path().filename().string().rfind(".tmp-", 0), 0u) << entry.path();  // no save left half-done
  for (std::int64_t step = 2; step <= k; step += 2)
    EXPECT_TRUE(checkpoint::is_complete_checkpoint(out("async_stop") + "/checkpoint-" + std::to_string(step))) << step;
}

}  // namespace
}  // namespace mpitrain
