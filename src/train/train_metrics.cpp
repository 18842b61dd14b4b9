// What the loop reports: the loss window kept on the device, log entries with HF's keys, the progress line, and the run summary.
#include "src/train/train_metrics.h"

#include <cmath>

namespace mpitrain::train {

namespace {

double seconds(std::chrono::steady_clock::duration d) { return std::max(std::chrono::duration<double>(d).count(), 1e-9); }

}  // namespace

bool logs_at(const TrainingArguments& args, const TrainerState& state, bool epoch_end) {
  if (args.logging_first_step && state.global_step == 1) return true;
  if (args.logging_strategy == IntervalStrategy::kSteps) return state.global_step % state.logging_steps == 0;
  return args.logging_strategy == IntervalStrategy::kEpoch && epoch_end;
}

double round_to(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

TrainMetrics::TrainMetrics(const TrainerState& state, const at::Device& device)
    : start_(std::chrono::steady_clock::now()),
      window_start_(start_),
      first_step_(state.global_step),
      first_tokens_(state.tokens_seen),
      window_tokens_(state.tokens_seen),
      loss_window_(torch::scalar_tensor(state.loss_since_log, torch::TensorOptions().dtype(torch::kFloat64).device(device))) {}

void TrainMetrics::step_done(TrainerState& state, const torch::Tensor& loss, const torch::Tensor& grad_norm, double lr,
                             RunLog& log) {
  loss_window_ = loss_window_ + loss;
  last_grad_norm_ = grad_norm;
  last_lr_ = lr;
  ++state.steps_since_log;
  if (log.draws_progress()) {
    const double tokens_per_second =
        static_cast<double>(state.tokens_seen - first_tokens_) / seconds(std::chrono::steady_clock::now() - start_);
    log.progress(state.global_step, state.max_steps, loss.item<double>(), lr, tokens_per_second);
  }
}

nlohmann::json TrainMetrics::log_entry(TrainerState& state, comm::Communicator& dp) {
  const auto now = std::chrono::steady_clock::now();
  state.loss_since_log = loss_window_.item<double>();
  // One small allreduce per log, not per step: the mean loss over the window and the dp group.
  auto mean = torch::tensor({state.loss_since_log / static_cast<double>(state.steps_since_log)}, torch::kFloat64);
  dp.allreduce(mean, comm::ReduceOp::kAvg);
  nlohmann::json entry = {
      {"loss", round_to(mean.item<double>(), 4)},
      {"grad_norm", last_grad_norm_.item<double>()},
      {"learning_rate", last_lr_},
      {"tokens_per_second", round_to(static_cast<double>(state.tokens_seen - window_tokens_) / seconds(now - window_start_), 1)}};
  window_tokens_ = state.tokens_seen;
  state.loss_since_log = 0;
  loss_window_ = torch::zeros_like(loss_window_);
  state.steps_since_log = 0;
  window_start_ = now;
  return entry;
}

void TrainMetrics::sync_window(TrainerState& state) const { state.loss_since_log = loss_window_.item<double>(); }

double TrainMetrics::runtime() const { return seconds(std::chrono::steady_clock::now() - start_); }

nlohmann::json TrainMetrics::summary(const TrainerState& state, double runtime, double exposed_comm_seconds) const {
  const auto steps_run = state.global_step - first_step_;
  return {{"train_runtime", round_to(runtime, 4)},
          {"exposed_comm_fraction", round_to(exposed_comm_seconds / runtime, 4)},
          {"train_steps_per_second", round_to(static_cast<double>(steps_run) / runtime, 3)},
          {"train_tokens_per_second", round_to(static_cast<double>(state.tokens_seen - first_tokens_) / runtime, 1)}};
}

}  // namespace mpitrain::train
