// The Trainer's start: output_dir checked and locked, logs, data, model, optimizer and checkpointer built, the step plan, resume; and undoing a start that failed.
#include <cmath>
#include <filesystem>

#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"
#include "src/models/fused/fused_ops.h"
#include "src/models/pretrained.h"
#include "src/train/data_model_checks.h"
#include "src/train/data_settings.h"
#include "src/train/lr_schedule.h"
#include "src/train/stop_signal.h"
#include "src/train/trainer.h"

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
  models::fused::set_cpu_fused_kernels(args_.training.cpu_fused_kernels);
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
  if (t.local_save_steps > 0)
    local_checkpoints_ = std::make_unique<LocalCheckpointer>(args_, mesh_, *model_, *optimizer_, *log_, checkpointer_->generator());
}

std::string Trainer::resume_if_asked() {
  const auto& t = args_.training;
  const auto kind = t.resume_from_checkpoint.kind;
  // The local tier answers resume_from_checkpoint=true|auto (a named checkpoint is that one).
  const bool local = local_checkpoints_ && (kind == ResumeFrom::Kind::kLatest || kind == ResumeFrom::Kind::kLatestIfAny);
  std::string resume_path;
  std::int64_t persistent_step = -1;
  comm::run_agreed(mesh_->world(), [&] {
    const auto listing = RunDirectoryListing::of(t.output_dir);
    if (!listing.complete.empty()) persistent_step = listing.complete.back().step;
    // `true` with no persistent checkpoint is refused below unless the local tier has one.
    if (!(local && listing.complete.empty())) resume_path = resolve_resume_path(t, listing);
  });
  std::string resumed_from = resume_path;
  if (local) {
    const auto step = local_checkpoints_->restore(state_, resume_path.empty() ? -1 : persistent_step);
    if (step >= 0) {
      resumed_from = "the local checkpoint of step " + std::to_string(step);
      resume_path.clear();
    }
  } else if (local_checkpoints_) {
    local_checkpoints_->forget_earlier_runs();
  }
  if (kind == ResumeFrom::Kind::kLatest && resumed_from.empty())
    throw comm::AgreedError("resume_from_checkpoint=true but " + t.output_dir + " holds no complete checkpoint" +
                            (local ? " and the local tier none of this layout" : ""));
  if (!resume_path.empty()) checkpointer_->resume(resume_path, state_);
  if (!resumed_from.empty()) {
    // As transformers does: the intervals as the checkpoint recorded them, the length this run's.
    state_.max_steps = total_steps_;
    state_.num_train_epochs = num_train_epochs_;
  }
  // Shards read from model_name_or_path or the checkpoint become the parameters zero1/2
  // compute with; collective, so after every rank's reading has been agreed.
  if (!model_->source_dir().empty() || !resumed_from.empty()) model_->weights_loaded();
  return resumed_from;
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

}  // namespace mpitrain::train
