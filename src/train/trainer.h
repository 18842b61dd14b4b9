// The Trainer: Hugging Face Trainer semantics (steps, eval, checkpoints, best model, resume) as a thin loop over named components.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/comm/mesh.h"
#include "runtime/device/interval_timer.h"
#include "src/data/distributed_sampler.h"
#include "src/data/training_data.h"
#include "src/train/adamw.h"
#include "src/train/checkpointer.h"
#include "src/train/local_checkpointer.h"
#include "src/train/output_dir_lock.h"
#include "src/train/parallel_model.h"
#include "src/train/run_directory.h"
#include "src/train/run_log.h"
#include "src/train/step_profile.h"
#include "src/train/tensorboard_log.h"
#include "src/train/train_metrics.h"
#include "src/train/trainer_state.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

class Trainer {
 public:
  // `config` is load_run_config's result; collective over the mesh's world. Throws for bad
  // input (data, model directory, output_dir) with the same message on every rank.
  // `device`: where parameters, activations and collectives live (the mesh's communicators
  // must suit it: NCCL for a GPU).
  Trainer(const nlohmann::json& config, std::shared_ptr<comm::Mesh> mesh, at::Device device = at::kCPU);
  ~Trainer();

  // From now on a save_on_signals signal saves a checkpoint at the next step boundary and
  // stops (StoppedBySignal); until then it ends the process at once (nothing to save yet).
  // train() calls it; a launcher calls it earlier to tell a job script it may forward signals.
  void take_stop_signals();
  void train();
  // transformers' save_model: the weights as an HF directory, written by the ranks that hold
  // them (save_mode), and rank 0's config, generation config, tokenizer files and
  // training_args.json into `dir`. Collective; callable at any time.
  void save_model(const std::string& dir);

  // Collective, once the final model is saved: the job is done, so its local checkpoints
  // (local_save_steps) are removed from every node.
  void finish();

  const TrainerState& state() const { return state_; }
  models::HfModel& model() { return model_->model(); }

 private:
  // The constructor's work: output_dir checked and locked, logs, data, model, optimizer, resume.
  void start();
  // After start() failed: removes what it created in output_dir (never what was there before).
  void undo_failed_start(bool output_dir_existed);
  void plan_steps();
  void build_optimizer_and_checkpointer();
  // Collective: resumes from the checkpoint resume_from_checkpoint names (if any), or from the
  // local tier where it holds a newer state, and makes the loaded shards the parameters;
  // returns what it resumed from (a path, or "the local checkpoint of step N"; "" for a fresh start).
  std::string resume_if_asked();
  // Collective: metrics.jsonl restarted as this run's story (the resumed checkpoint's history first).
  void restart_metrics(const std::string& resume_path);
  // One optimizer step (all micro-batches); its loss joins the metrics' window where the
  // model is: nothing in a step waits for the device. False where a stop signal was agreed
  // between its micro-batches: the step is dropped (drop_step) and the state is the last step's.
  bool train_step();
  void log_metrics(nlohmann::json entry);
  void maybe_evaluate_and_save(bool epoch_end);
  bool evaluation_due(bool epoch_end) const;  // eval_strategy's answer at this step
  bool evaluate_now(bool epoch_end);  // returns whether this evaluation is the best so far
  // The eval metrics (collective over dp); logs nothing. Empty where a stop signal cut it short
  // (said in the log; stop_agreed() is then true).
  nlohmann::json run_evaluation();
  void save_checkpoint();
  void maybe_save_locally();  // local_save_steps
  // The reports of the saves finished since the last call, into metrics.jsonl and the history.
  void log_save_reports();
  nlohmann::json scheduler_state() const;
  // trainer_stop.cpp. Collective over the world's host communicator (no device wait): whether
  // any rank has received a stop signal; once agreed, true without asking again.
  bool stop_agreed();
  // Agrees whether any rank received a stop signal; if so saves (unless this step is saved
  // already) and throws StoppedBySignal on every rank.
  void stop_if_signalled();
  // What a step changes before its optimizer step, so that a dropped one can be undone.
  struct StepStart {
    torch::Tensor rng;  // the dropout stream's state (saved with the checkpoint)
    std::int64_t tokens_seen = 0, num_input_tokens_seen = 0;
  };
  StepStart step_start() const;
  // A stop agreed before micro-batch `micro` of the step: reductions in flight land, the
  // gradients go, the state is `start`'s again.
  void drop_step(const StepStart& start, std::int64_t micro);
  // A resumed run whose checkpoint's step had an evaluation due that its history lacks (a stop
  // cut it short) runs it first.
  void run_missed_evaluation();
  void load_best_model();
  nlohmann::json summary(double runtime) const;  // trainer_summary.cpp
  double lr_at(std::int64_t step) const;  // learning rate after `step` optimizer steps
  void write_loss_plot() const;
  void write_profile(const StepProfile& profile);  // rank 0

  RunArguments args_;
  std::shared_ptr<comm::Mesh> mesh_;
  at::Device device_;
  std::unique_ptr<OutputDirLock> lock_;  // rank 0; released last
  std::unique_ptr<RunLog> log_;
  std::vector<int> stop_signals_;  // save_on_signals
  int agreed_signal_ = 0;          // the stop signal every rank has agreed on, 0 until then
  StartOver start_over_;  // rank 0: what overwrite_output_dir deletes once the run has started well
  data::TrainingData data_;
  std::unique_ptr<ParallelModel> model_;
  std::unique_ptr<data::DistributedSampler> sampler_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<LocalCheckpointer> local_checkpoints_;  // local_save_steps > 0
  std::unique_ptr<TrainMetrics> metrics_;
  std::unique_ptr<TensorBoardLog> tensorboard_;  // rank 0, report_to=tensorboard
  TrainerState state_;
  std::int64_t steps_per_epoch_ = 0, total_steps_ = 0, warmup_steps_ = 0;
  double num_train_epochs_ = 0;
  std::int64_t steps_run_ = 0;  // optimizer steps this process ran (traffic per step)
  // The wait for the last gradient buckets, as the device saw it (on a GPU the host does not wait).
  std::unique_ptr<device::IntervalTimer> exposed_comm_;
};

}  // namespace mpitrain::train
