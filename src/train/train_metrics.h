// What the loop reports: the loss window kept on the device, log entries with HF's keys, the progress line, and the run summary.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>

#include "runtime/comm/communicator.h"
#include "src/train/run_log.h"
#include "src/train/training_arguments.h"
#include "src/train/trainer_state.h"

namespace mpitrain::train {

class TrainMetrics {
 public:
  // Starts the clocks; the loss window continues state.loss_since_log (a resume mid-window).
  TrainMetrics(const TrainerState& state, const at::Device& device);

  // After each optimizer step: `loss` (0-dim float64 on the device, this rank's mean over the
  // micro-batches) joins the window; nothing here waits for the device unless a bar is drawn.
  void step_done(TrainerState& state, const torch::Tensor& loss, const torch::Tensor& grad_norm, double lr, RunLog& log);
  // At a logging step: the window's mean loss over the dp group (one all-reduce), grad_norm,
  // learning_rate and tokens_per_second since the last log; resets the window.
  nlohmann::json log_entry(TrainerState& state, comm::Communicator& dp);
  // state.loss_since_log brought up to date (a checkpoint records it).
  void sync_window(TrainerState& state) const;

  double runtime() const;
  // The summary's timing keys over this process's steps, which took `runtime` seconds.
  nlohmann::json summary(const TrainerState& state, double runtime, double exposed_comm_seconds) const;

 private:
  std::chrono::steady_clock::time_point start_, window_start_;
  std::int64_t first_step_, first_tokens_, window_tokens_;
  torch::Tensor loss_window_;  // float64 sums where the losses were computed
  torch::Tensor last_grad_norm_;
  double last_lr_ = 0;
};

// Whether the training loss is logged after this step, as transformers' logging_strategy,
// logging_steps and logging_first_step decide (epoch_end: the step ends an epoch).
bool logs_at(const TrainingArguments& args, const TrainerState& state, bool epoch_end);

// Rounds like transformers' logs (4 decimals for losses) so the JSON stays readable.
double round_to(double value, int digits);

}  // namespace mpitrain::train
