// The Trainer: Hugging Face Trainer semantics (steps, eval, checkpoints, best model, resume) as a thin loop over named components.
#include "src/train/trainer.h"

#include <filesystem>
#include <fstream>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/crash_point.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/comm/agreement.h"
#include "src/train/evaluator.h"
#include "src/train/lr_schedule.h"
#include "src/train/stop_signal.h"
#include "src/train/task_forward.h"

namespace mpitrain::train {

namespace fs = std::filesystem;
using nlohmann::json;

Trainer::~Trainer() = default;

double Trainer::lr_at(std::int64_t step) const {
  const auto& t = args_.training;
  return t.learning_rate * lr_multiplier(t.lr_scheduler_type, step, warmup_steps_, total_steps_);
}

json Trainer::scheduler_state() const {
  const auto& t = args_.training;
  return {{"lr_scheduler_type", t.lr_scheduler_type}, {"base_lr", t.learning_rate}, {"last_epoch", state_.global_step},
          {"warmup_steps", warmup_steps_},           {"total_steps", total_steps_}, {"last_lr", lr_at(state_.global_step)}};
}

bool Trainer::train_step() {
  const auto& t = args_.training;
  const auto accumulation = t.gradient_accumulation_steps;
  const auto epoch = state_.global_step / steps_per_epoch_;
  const auto first_batch = (state_.global_step % steps_per_epoch_) * accumulation;
  auto& gradients = model_->gradients();
  torch::Tensor loss_sum;
  model_->model().train();
  // Only a step of several micro-batches can be dropped midway (a stop agreed between them).
  const auto start = accumulation > 1 ? step_start() : StepStart{};
  std::vector<data::Batch> batches;
  for (std::int64_t micro = 0; micro < accumulation; ++micro)
    batches.push_back(on_device(data_.train->read(sampler_->batch(epoch, first_batch + micro)), device_));
  // Prompt/completion rows: the loss is the mean over every completion token of the global
  // batch (all dp ranks, all micro-batches, as HF's num_items_in_batch makes it), so a
  // micro-batch weighs its targets over the step's; other data: each micro-batch alike.
  const auto step_targets = data_.train->has_token_labels() ? global_target_count(batches, mesh_->dp(), device_) : torch::Tensor();
  using TokenCount = TrainingArguments::TokenCount;
  if (t.num_input_tokens_seen != TokenCount::kNo)
    state_.num_input_tokens_seen +=
        global_input_tokens(batches, t.num_input_tokens_seen == TokenCount::kAll, mesh_->dp(), device_);
  for (std::int64_t micro = 0; micro < accumulation; ++micro) {
    if (micro > 0 && stop_agreed()) {
      drop_step(start, micro);
      return false;
    }
    const auto& batch = batches[static_cast<std::size_t>(micro)];
    state_.tokens_seen += batch.tokens * mesh_->dp_size();
    gradients.prepare_for_backward(micro == accumulation - 1);
    const auto logits = forward_logits(model_->model(), batch, device_, t.bf16);
    const auto value = task_loss(model_->model(), logits, batch, args_.data.classification);
    // (dp: the gradients' average over the dp group is then their sum over it.)
    // A micro-batch with no target at all has a NaN mean: it adds nothing.
    auto loss = step_targets.defined()
                    ? torch::where(value.count > 0, value.loss, torch::zeros_like(value.loss)) *
                          value.count.to(torch::kDouble) * static_cast<double>(mesh_->dp_size()) / step_targets
                    : value.loss / static_cast<double>(accumulation);
    // Gradients are summed over the dp group; this scale makes the sum their average.
    (loss * gradients.loss_scale()).backward();
    const auto logged = loss.detach().to(torch::kDouble);
    loss_sum = loss_sum.defined() ? loss_sum + logged : logged;
  }
  // What the backward pass did not hide: the wait for the last buckets.
  exposed_comm_->measure([&] { gradients.finalize(); });
  model_->sum_shared_slice_gradients();
  const auto grad_norm = clip_grad_norm(model_->trained_values(), t.max_grad_norm, model_->norm_shares(), model_->norm_group());
  optimizer_->step(lr_at(state_.global_step));
  gradients.step_done();
  ++steps_run_;
  ++state_.global_step;
  metrics_->step_done(state_, loss_sum, grad_norm, lr_at(state_.global_step), *log_);
  return true;
}

void Trainer::log_metrics(json entry) {
  if (args_.training.num_input_tokens_seen != TrainingArguments::TokenCount::kNo)
    entry["num_input_tokens_seen"] = state_.num_input_tokens_seen;
  entry["epoch"] = round_to(static_cast<double>(state_.global_step) / static_cast<double>(steps_per_epoch_), 4);
  entry["step"] = state_.global_step;
  state_.log_history.push_back(entry);
  log_->metrics(entry);
  if (tensorboard_) tensorboard_->write(entry);
}

json Trainer::run_evaluation() {
  const auto& t = args_.training;
  EvaluationOptions options;
  options.batch_size = t.per_device_eval_batch_size;
  options.device = device_;
  options.bf16 = t.bf16;
  options.forwards_in_step = model_->gathers_in_forward();
  options.stop_requested = [this] { return stop_agreed(); };
  EvaluationOutcome outcome;
  const auto metrics = evaluate(model_->model(), *data_.eval, mesh_->dp(), options, &outcome);
  if (outcome.cut_short)
    log_->warn("the evaluation at step " + std::to_string(state_.global_step) + " was cut short by " +
               signal_name(agreed_signal_) + " after " + std::to_string(outcome.batches_run) + " of " +
               std::to_string(outcome.batches) + " batches: its metrics are not logged (a resume from step " +
               std::to_string(state_.global_step) + " runs it again)");
  else if (outcome.empty)
    log_->warn("the eval split is empty");
  return metrics;
}

bool Trainer::evaluation_due(bool epoch_end) const {
  const auto strategy = args_.training.eval_strategy;
  return (strategy == IntervalStrategy::kSteps && state_.global_step % state_.eval_steps == 0) ||
         (strategy == IntervalStrategy::kEpoch && epoch_end);
}

bool Trainer::evaluate_now(bool epoch_end) {
  const auto& t = args_.training;
  if (!evaluation_due(epoch_end)) return false;
  const auto metrics = run_evaluation();
  if (metrics.empty()) return false;  // cut short by a stop
  log_metrics(metrics);
  const auto key = t.metric_key();
  if (!metrics.contains(key)) throw std::runtime_error("metric_for_best_model '" + key + "' is not an eval metric");
  const double value = metrics[key].get<double>();
  const bool best = !state_.best_metric || (t.greater_is_better ? value > *state_.best_metric : value < *state_.best_metric);
  if (best) {
    state_.best_metric = value;
    // Recorded as the checkpoint this step will be saved to (if it is saved).
    state_.best_model_checkpoint = (fs::path(t.output_dir) / checkpoint::checkpoint_name(state_.global_step)).string();
  }
  return best;
}

void Trainer::maybe_evaluate_and_save(bool epoch_end) {
  const bool new_best = evaluate_now(epoch_end);
  if (agreed_signal_ != 0) return;  // the stop that cut the evaluation short saves
  if (checkpointer_->due(state_.global_step, state_.save_steps, epoch_end, new_best))
    save_checkpoint();
  else
    log_save_reports();  // a background save that has finished
}

void Trainer::save_checkpoint() {
  metrics_->sync_window(state_);  // a resume continues the window where it was
  checkpointer_->save(state_, scheduler_state());
  log_save_reports();
}

void Trainer::maybe_save_locally() {
  if (!local_checkpoints_ || !local_checkpoints_->due(state_.global_step)) return;
  metrics_->sync_window(state_);
  local_checkpoints_->save(state_);
}

void Trainer::finish() {
  if (local_checkpoints_) local_checkpoints_->remove_job_states();
}

void Trainer::log_save_reports() {
  for (auto& report : checkpointer_->take_reports()) log_metrics(std::move(report));
}

void Trainer::save_model(const std::string& dir) {
  checkpointer_->save_model(dir);
  log_save_reports();
}

void Trainer::write_loss_plot() const {
  if (mesh_->world().rank() == 0)
    train::write_loss_plot((fs::path(args_.training.output_dir) / "loss.svg").string(), state_.log_history);
}

void Trainer::load_best_model() {
  const auto& best = state_.best_model_checkpoint;
  if (!args_.training.load_best_model_at_end || best.empty()) return;
  if (!checkpoint::is_complete_checkpoint(best)) {
    log_->warn("load_best_model_at_end: the best checkpoint " + best + " is gone: the model saved is the last step's");
    return;
  }
  std::unique_ptr<checkpoint::CheckpointReader> reader;
  comm::run_agreed(mesh_->world(), [&] { reader = std::make_unique<checkpoint::CheckpointReader>(model_->weights_in(best)); });
  model_->load_weights(*reader);
  model_->weights_loaded();
  log_->info("loaded the best model from " + best + " (" + args_.training.metric_for_best_model + " " +
             std::to_string(state_.best_metric.value_or(0)) + ")");
}

void Trainer::write_profile(const StepProfile& profile) {
  if (mesh_->world().rank() != 0) return;
  const auto path = fs::path(args_.training.output_dir) / "profile.txt";
  std::ofstream(path) << profile.table();
  log_->info("the profile of " + std::to_string(args_.training.profile_steps) + " steps (time by operation) is in " +
             path.string());
}

void Trainer::take_stop_signals() { record_stop_signals(stop_signals_); }

void Trainer::train() {
  take_stop_signals();
  log_->info("training " + std::to_string(total_steps_) + " steps (" + std::to_string(steps_per_epoch_) +
             " per epoch) from step " + std::to_string(state_.global_step));
  metrics_ = std::make_unique<TrainMetrics>(state_, device_);
  if (args_.training.eval_on_start && data_.eval)
    if (const auto metrics = run_evaluation(); !metrics.empty()) log_metrics(metrics);
  run_missed_evaluation();
  if (agreed_signal_ != 0) stop_if_signalled();  // one that cut those evaluations short
  StepProfile profile(args_.training.profile_steps);
  while (state_.global_step < total_steps_) {
    profile.step_starts();
    const bool stepped = train_step();
    if (profile.step_ends()) write_profile(profile);
    if (!stepped) stop_if_signalled();  // a dropped step: the stop saves the last one
    state_.epoch = static_cast<double>(state_.global_step) / static_cast<double>(steps_per_epoch_);
    if (logs_at(args_.training, state_, state_.global_step % steps_per_epoch_ == 0))
      log_metrics(metrics_->log_entry(state_, mesh_->dp()));
    maybe_evaluate_and_save(state_.global_step % steps_per_epoch_ == 0);
    maybe_save_locally();
    checkpoint::crash_point("step.done", mesh_->world().rank());  // a test's kill between steps
    stop_if_signalled();
  }
  checkpointer_->wait();
  if (local_checkpoints_) local_checkpoints_->wait();
  log_save_reports();
  log_->finish_progress();
  const double runtime = metrics_->runtime();
  load_best_model();
  log_metrics(summary(runtime));
  write_loss_plot();
}

}  // namespace mpitrain::train
