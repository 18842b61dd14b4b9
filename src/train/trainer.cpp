// The Trainer: Hugging Face Trainer semantics (steps, eval, checkpoints, best model, resume) as a thin loop over named components.
#include "src/train/trainer.h"

#include <cmath>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"
#include "runtime/parallel/tensor_parallel.h"
#include "src/models/pretrained.h"
#include "src/train/data_model_checks.h"
#include "src/train/data_settings.h"
#include "src/train/evaluator.h"
#include "src/train/lr_schedule.h"
#include "src/train/stop_signal.h"
#include "src/train/task_forward.h"

namespace mpitrain::train {

namespace fs = std::filesystem;
using nlohmann::json;

Trainer::Trainer(const json& config, std::shared_ptr<comm::Mesh> mesh, at::Device device)
    : args_(RunArguments::from_config(config)),
      mesh_(std::move(mesh)),
      device_(device),
      exposed_comm_(device::interval_timer_for(device)) {
  // As rank 0 sees it before any rank creates it: every rank then knows whether to remove it.
  const bool output_dir_existed =
      comm::broadcast_string(mesh_->world(), fs::exists(args_.training.output_dir) ? "yes" : "no", 0) == "yes";
  try {
    start();
  } catch (...) {
    undo_failed_start(output_dir_existed);
    throw;
  }
}

void Trainer::undo_failed_start(bool output_dir_existed) {
  // A refused start leaves nothing it made behind: its logs, its metrics.jsonl, its lock, and
  // output_dir itself where it made it and nothing else is there (data it prepared stays).
  // The lock first and each rank's log last: the rank whose log goes last finds logs/ and
  // output_dir empty (whatever the order the ranks get here).
  lock_.reset();
  if (log_) log_->discard_created_files();
  log_.reset();
  // Every rank tries, once its own files are gone: the last one's removal finds it empty.
  std::error_code not_empty;
  if (!output_dir_existed) fs::remove(args_.training.output_dir, not_empty);
}

void Trainer::start() {
  auto& world = mesh_->world();
  const auto& t = args_.training;
  comm::run_agreed(world, [&] { check_output_dir(t.output_dir); });
  // Before anything is written there: a second job into a live job's output_dir stops here.
  std::string lock_taken_over;
  comm::run_agreed(world, [&] {
    if (world.rank() == 0)
      lock_ = std::make_unique<OutputDirLock>(t.output_dir, [&](const std::string& line) { lock_taken_over = line; });
  });
  // At the start, not at the first checkpoint hours later.
  if (const auto why = why_output_dir_is_shared(args_); !why.empty())
    checkpoint::require_shared_directory(world, t.output_dir, why + ": output_dir must be on a shared filesystem");
  comm::run_agreed(world, [&] { log_ = std::make_unique<RunLog>(t.output_dir, world.rank(), t.progress_bar); });
  if (!lock_taken_over.empty()) log_->warn(lock_taken_over);
  // Refused now; what overwrite_output_dir deletes goes only once the run has started well
  // (its resume checkpoint found and verified, the model and data accepted).
  comm::run_agreed(world, [&] {
    if (world.rank() != 0) return;
    // A checkpoint named by path that cannot be resumed is said so first, not taken for one
    // of "an earlier run's" checkpoints below.
    if (t.resume_from_checkpoint.kind == ResumeFrom::Kind::kPath) require_resumable_checkpoint(t.resume_from_checkpoint.path);
    const auto listing = RunDirectoryListing::of(t.output_dir);
    start_over_ = plan_start_over(t, listing, ResumePathPlace::of(t.output_dir, t.resume_from_checkpoint, listing));
  });
  stop_signals_ = parse_stop_signals(t.save_on_signals);
  data_ = data::open_training_data(world, data_settings(args_), t.output_dir,
                                   [this](const std::string& line) { log_->info(line); });
  give_model_the_rows_pad_id(args_.model, *data_.train, *log_);
  model_ = std::make_unique<ParallelModel>(args_, mesh_, device_, *log_);
  comm::run_agreed(world, [&] { check_data_fits_model(model_->model(), {data_.train.get(), data_.eval.get()}, *log_); });
  plan_steps();
  build_optimizer_and_checkpointer();
  // Dropout streams differ per dp rank and agree inside a tp group (its ranks compute the
  // replicated activations alike); resume replaces them with the saved ones.
  torch::manual_seed(t.seed + static_cast<std::uint64_t>(mesh_->dp_rank()));
  const auto resume_path = resume_if_asked();
  // The run has started well: what overwrite_output_dir deletes goes now.
  comm::run_agreed(world, [&] {
    if (world.rank() != 0 || start_over_.paths.empty()) return;
    for (const auto& path : start_over_.paths) checkpoint::remove_tree(path);  // a link goes, not what it points to
    log_->warn(start_over_.what);
  });
  restart_metrics(resume_path);
}

void Trainer::build_optimizer_and_checkpointer() {
  const auto& t = args_.training;
  AdamWOptions adam;
  adam.beta1 = t.adam_beta1;
  adam.beta2 = t.adam_beta2;
  adam.eps = t.adam_epsilon;
  adam.weight_decay = t.weight_decay;
  optimizer_ = std::make_unique<AdamW>(model_->named_trained(), adam);
  ModelFiles files;
  files.saved_dtype = t.save_dtype.empty() ? model_->trained().front().tensor.scalar_type()
                                           : models::parse_torch_dtype(t.save_dtype);
  files.generation_config = model_->generation_config();
  files.tokenizer_dir = tokenizer_source(args_);
  files.run_config = args_.config;
  files.adapter_config = model_->adapter_config();
  checkpointer_ = std::make_unique<Checkpointer>(args_, mesh_, device_, *model_, *optimizer_, *log_, std::move(files));
}

std::string Trainer::resume_if_asked() {
  std::string resume_path;
  comm::run_agreed(mesh_->world(), [&] {
    resume_path = resolve_resume_path(args_.training, RunDirectoryListing::of(args_.training.output_dir));
  });
  if (!resume_path.empty()) {
    checkpointer_->resume(resume_path, state_);
    // As transformers does: the intervals as the checkpoint recorded them, the length this run's.
    state_.max_steps = total_steps_;
    state_.num_train_epochs = num_train_epochs_;
  }
  // Shards read from model_name_or_path or the checkpoint become the parameters zero1/2
  // compute with; collective, so after every rank's reading has been agreed.
  if (!model_->source_dir().empty() || !resume_path.empty()) model_->weights_loaded();
  return resume_path;
}

void Trainer::restart_metrics(const std::string& resume_path) {
  // metrics.jsonl tells this run's story (appended to as it was, it held an earlier run's steps
  // before this one's, or a resume's steps twice): the history of the checkpoint resumed from,
  // then what this run logs, as trainer_state.json's log_history does.
  comm::run_agreed(mesh_->world(), [&] {
    const auto why = resume_path.empty() ? std::string("a fresh start")
                                         : "resumed from " + resume_path + " at step " + std::to_string(state_.global_step);
    if (const auto moved = log_->restart_metrics(state_.log_history, why))
      log_->info("metrics.jsonl: " + std::to_string(moved) + " earlier line(s) not in this run's history (" + why +
                 ") moved to logs/metrics-dropped.jsonl");
    tensorboard_ = open_tensorboard_log(args_.training, state_, mesh_->world().rank(), !resume_path.empty(),
                                        [this](const std::string& l) { log_->info(l); },
                                        [this](const std::string& l) { log_->warn(l); });
  });
}

Trainer::~Trainer() = default;

void Trainer::plan_steps() {
  const auto& t = args_.training;
  const auto batch = t.per_device_train_batch_size, accumulation = t.gradient_accumulation_steps;
  sampler_ = std::make_unique<data::DistributedSampler>(data_.train->size(), mesh_->dp_rank(), mesh_->dp_size(), batch,
                                                        t.seed, args_.data.shuffle);
  if (sampler_->batches_per_epoch() < accumulation)
    throw comm::AgreedError(data_.train->path() + ": " + std::to_string(data_.train->size()) +
                            " training samples are fewer than one optimizer step needs (" + std::to_string(mesh_->dp_size()) +
                            " ranks x batch " + std::to_string(batch) + " x " + std::to_string(accumulation) +
                            " accumulation steps)");
  steps_per_epoch_ = std::max<std::int64_t>(1, sampler_->batches_per_epoch() / accumulation);
  total_steps_ = t.max_steps >= 0 ? t.max_steps
                                   : static_cast<std::int64_t>(std::ceil(t.num_train_epochs * static_cast<double>(steps_per_epoch_)));
  warmup_steps_ = resolve_warmup_steps(t.warmup_steps, t.warmup_ratio, total_steps_);
  num_train_epochs_ = t.max_steps >= 0 ? std::ceil(static_cast<double>(total_steps_) / steps_per_epoch_) : t.num_train_epochs;
  state_.max_steps = total_steps_;
  state_.num_train_epochs = num_train_epochs_;
  state_.logging_steps = t.logging_steps;
  state_.eval_steps = t.eval_steps > 0 ? t.eval_steps : t.logging_steps;
  state_.save_steps = t.save_steps;
  state_.train_batch_size = batch;
}

double Trainer::lr_at(std::int64_t step) const {
  const auto& t = args_.training;
  return t.learning_rate * lr_multiplier(t.lr_scheduler_type, step, warmup_steps_, total_steps_);
}

json Trainer::scheduler_state() const {
  const auto& t = args_.training;
  return {{"lr_scheduler_type", t.lr_scheduler_type}, {"base_lr", t.learning_rate}, {"last_epoch", state_.global_step},
          {"warmup_steps", warmup_steps_},           {"total_steps", total_steps_}, {"last_lr", lr_at(state_.global_step)}};
}

void Trainer::train_step() {
  const auto& t = args_.training;
  const auto accumulation = t.gradient_accumulation_steps;
  const auto epoch = state_.global_step / steps_per_epoch_;
  const auto first_batch = (state_.global_step % steps_per_epoch_) * accumulation;
  auto& gradients = model_->gradients();
  torch::Tensor loss_sum;
  model_->model().train();
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
  bool empty = false;
  const auto metrics = evaluate(model_->model(), *data_.eval, mesh_->dp(), options, &empty);
  if (empty) log_->warn("the eval split is empty");
  return metrics;
}

bool Trainer::evaluate_now(bool epoch_end) {
  const auto& t = args_.training;
  const bool due = (t.eval_strategy == IntervalStrategy::kSteps && state_.global_step % state_.eval_steps == 0) ||
                   (t.eval_strategy == IntervalStrategy::kEpoch && epoch_end);
  if (!due) return false;
  const auto metrics = run_evaluation();
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
  if (checkpointer_->due(state_.global_step, state_.save_steps, epoch_end, new_best)) save_checkpoint();
}

void Trainer::save_checkpoint() {
  metrics_->sync_window(state_);  // a resume continues the window where it was
  checkpointer_->save(state_, scheduler_state());
}

void Trainer::write_loss_plot() const {
  if (mesh_->world().rank() == 0)
    train::write_loss_plot((fs::path(args_.training.output_dir) / "loss.svg").string(), state_.log_history);
}

void Trainer::stop_if_signalled() {
  // One small all-reduce per step: a signal that reached any rank stops every rank at the
  // same step boundary (Slurm may signal only some tasks; mpirun forwards to all).
  auto signal = torch::tensor({static_cast<std::int64_t>(received_stop_signal())}, torch::kInt64);
  mesh_->world().allreduce(signal, comm::ReduceOp::kMax);
  const int received = static_cast<int>(signal.item<std::int64_t>());
  if (received == 0) return;
  if (!checkpointer_->saved(state_.global_step)) save_checkpoint();
  checkpointer_->wait();  // the exit status promises a complete checkpoint
  log_->finish_progress();
  write_loss_plot();  // the curves so far (else the previous run's loss.svg stays beside this run's metrics)
  throw StoppedBySignal("stopped by " + signal_name(received) + " at step " + std::to_string(state_.global_step) +
                        " after saving " +
                        (fs::path(args_.training.output_dir) / checkpoint::checkpoint_name(state_.global_step)).string() +
                        "; resume_from_checkpoint=true continues (exit status " +
                        std::to_string(kStoppedForRequeueExitStatus) + ")");
}

void Trainer::load_best_model() {
  const auto& best = state_.best_model_checkpoint;
  if (!args_.training.load_best_model_at_end || best.empty()) return;
  if (!checkpoint::is_complete_checkpoint(best)) {
    log_->warn("load_best_model_at_end: the best checkpoint " + best + " is gone: the model saved is the last step's");
    return;
  }
  comm::run_agreed(mesh_->world(), [&] { model_->load_weights(checkpoint::CheckpointReader(model_->weights_in(best))); });
  model_->weights_loaded();
  log_->info("loaded the best model from " + best + " (" + args_.training.metric_for_best_model + " " +
             std::to_string(state_.best_metric.value_or(0)) + ")");
}

void Trainer::take_stop_signals() { record_stop_signals(stop_signals_); }

void Trainer::train() {
  take_stop_signals();
  log_->info("training " + std::to_string(total_steps_) + " steps (" + std::to_string(steps_per_epoch_) +
             " per epoch) from step " + std::to_string(state_.global_step));
  metrics_ = std::make_unique<TrainMetrics>(state_, device_);
  if (args_.training.eval_on_start && data_.eval) log_metrics(run_evaluation());
  while (state_.global_step < total_steps_) {
    train_step();
    state_.epoch = static_cast<double>(state_.global_step) / static_cast<double>(steps_per_epoch_);
    if (logs_at(args_.training, state_, state_.global_step % steps_per_epoch_ == 0))
      log_metrics(metrics_->log_entry(state_, mesh_->dp()));
    maybe_evaluate_and_save(state_.global_step % steps_per_epoch_ == 0);
    stop_if_signalled();
  }
  checkpointer_->wait();
  log_->finish_progress();
  const double runtime = metrics_->runtime();
  load_best_model();
  log_metrics(summary(runtime));
  write_loss_plot();
}

}  // namespace mpitrain::train
