// Stopping on a signal within seconds wherever it lands: agreed at step boundaries, between micro-batches (the step dropped) and every few evaluation batches; the checkpoint saved is the last completed step's.
#include <filesystem>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "src/train/stop_signal.h"
#include "src/train/trainer.h"

namespace mpitrain::train {

namespace fs = std::filesystem;

bool Trainer::stop_agreed() {
  if (agreed_signal_ != 0) return true;
  // Slurm may signal only some tasks (mpirun forwards to all): the largest number any rank
  // received. A host tensor over the host communicator: nothing here waits for the device.
  auto signal = torch::tensor({static_cast<std::int64_t>(received_stop_signal())}, torch::kInt64);
  mesh_->world().cpu_communicator().allreduce(signal, comm::ReduceOp::kMax);
  agreed_signal_ = static_cast<int>(signal.item<std::int64_t>());
  return agreed_signal_ != 0;
}

void Trainer::stop_if_signalled() {
  if (!stop_agreed()) return;
  if (!checkpointer_->saved(state_.global_step)) save_checkpoint();
  checkpointer_->wait();  // the exit status promises a complete checkpoint
  // The persistent checkpoint holds this step: the local ones (no newer) are not needed.
  if (local_checkpoints_) local_checkpoints_->remove_job_states();
  log_save_reports();
  log_->finish_progress();
  write_loss_plot();  // the curves so far (else the previous run's loss.svg stays beside this run's metrics)
  throw StoppedBySignal("stopped by " + signal_name(agreed_signal_) + " at step " + std::to_string(state_.global_step) +
                        " after saving " +
                        (fs::path(args_.training.output_dir) / checkpoint::checkpoint_name(state_.global_step)).string() +
                        "; resume_from_checkpoint=true continues (exit status " +
                        std::to_string(kStoppedForRequeueExitStatus) + ")");
}

Trainer::StepStart Trainer::step_start() const {
  StepStart start;
  auto generator = checkpointer_->generator();
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    start.rng = generator.get_state();
  }
  start.tokens_seen = state_.tokens_seen;
  start.num_input_tokens_seen = state_.num_input_tokens_seen;
  return start;
}

void Trainer::drop_step(const StepStart& start, std::int64_t micro) {
  // Every rank stops before the same micro-batch, so the collectives here match. The
  // reductions of the micro-batches done land (none stays in flight), then go with the
  // gradients; the optimizer never saw them.
  auto& gradients = model_->gradients();
  gradients.finalize();
  gradients.step_done();
  // The state the last completed step left: a resume repeats this step exactly as an uncut
  // run takes it (the same dropout masks, the same token counts).
  {
    auto generator = checkpointer_->generator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(start.rng);
  }
  state_.tokens_seen = start.tokens_seen;
  state_.num_input_tokens_seen = start.num_input_tokens_seen;
  log_->warn(signal_name(agreed_signal_) + " during step " + std::to_string(state_.global_step + 1) + " (before micro-batch " +
             std::to_string(micro + 1) + " of " + std::to_string(args_.training.gradient_accumulation_steps) +
             "): the step is dropped; step " + std::to_string(state_.global_step) + " is the one saved");
}

void Trainer::run_missed_evaluation() {
  const auto step = state_.global_step;
  if (step == 0 || steps_run_ > 0 || !data_.eval) return;
  const bool epoch_end = step % steps_per_epoch_ == 0;
  if (!evaluation_due(epoch_end)) return;
  for (const auto& entry : state_.log_history)
    if (entry.value("step", std::int64_t{-1}) == step && entry.contains("eval_loss")) return;
  log_->info("step " + std::to_string(step) +
             "'s evaluation is not in the history resumed (a stop cut it short): it runs now");
  evaluate_now(epoch_end);
}

}  // namespace mpitrain::train
