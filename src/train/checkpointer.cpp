// What a training checkpoint holds and when one is saved: snapshots, the async writer, the final model save, and resume with RNG restore.
#include "src/train/checkpointer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/comm/agreement.h"
#include "runtime/device/thread_priority.h"
#include "src/models/lora_settings.h"
#include "src/models/pretrained.h"
#include "src/train/run_directory.h"
#include "src/train/save_report.h"
#include "src/train/train_metrics.h"

namespace mpitrain::train {

namespace fs = std::filesystem;
using nlohmann::json;

using checkpoint::seconds_since;

Checkpointer::Checkpointer(const RunArguments& args, std::shared_ptr<comm::Mesh> mesh, at::Device device,
                           ParallelModel& model, AdamW& optimizer, RunLog& log, ModelFiles files)
    : args_(args), mesh_(std::move(mesh)), device_(device), model_(model), optimizer_(optimizer), log_(log),
      files_(std::move(files)) {
  auto& world = mesh_->world();
  // The background writer moves host copies only.
  if (args_.training.async_save) save_comm_ = world.cpu_communicator().split(0, world.rank(), "save");
  if (world.rank() == 0)
    post_save_ = std::make_unique<PostSaveHook>(args_.training.post_save_command,
                                                (fs::path(args_.training.output_dir) / "logs" / "post_save.log").string(),
                                                [this](const std::string& line) { log_.info(line); });
}

Checkpointer::~Checkpointer() {
  if (save_thread_.joinable()) save_thread_.join();
}

at::Generator Checkpointer::generator() const {
  return at::globalContext().defaultGenerator(device_);  // a handle: states set through it are the device's
}

std::string Checkpointer::rng_key() const { return device_.is_cpu() ? "torch_cpu" : "torch_cuda"; }

checkpoint::DistributedSaveOptions Checkpointer::save_options(checkpoint::SaveMode mode) const {
  const auto& t = args_.training;
  checkpoint::DistributedSaveOptions options;
  options.mode = mode;
  options.max_shard_size = t.max_shard_size;
  options.gather_window_bytes = t.gather_window_bytes;
  options.io = t.save_io;
  options.check_shared_directory = false;  // output_dir, checked at the start where it matters
  if (model_.lora()) {
    // A PEFT adapter directory: one adapter_model.safetensors, never sharded (PEFT reads no
    // index); a sharded save_mode writes it in parallel.
    options.single_file = models::kAdapterWeightsFile;
    options.max_shard_size = UINT64_MAX;
    if (mode == checkpoint::SaveMode::kSharded) options.mode = checkpoint::SaveMode::kParallel;
  }
  return options;
}

void Checkpointer::resume(const std::string& dir, TrainerState& state) {
  const auto start = std::chrono::steady_clock::now();
  auto& world = mesh_->world();
  std::unique_ptr<checkpoint::TrainingCheckpointReader> reader;
  comm::run_agreed(world, [&] { reader = std::make_unique<checkpoint::TrainingCheckpointReader>(dir); });
  // Every file as it was saved (the ranks share the reading), agreed before any is used.
  if (args_.training.verify_checksums) comm::run_agreed(world, [&] { reader->verify_checksums(world.rank(), world.size()); });
  // Consolidated or sharded, whatever layout wrote it: each tensor is read as this rank needs it.
  std::unique_ptr<checkpoint::CheckpointReader> weights;
  comm::run_agreed(world, [&] { weights = std::make_unique<checkpoint::CheckpointReader>(model_.weights_in(dir)); });
  const auto read = model_.load_weights(*weights);
  bool has_moments = false;
  comm::run_agreed(world, [&] {
    const auto state_path = (fs::path(dir) / checkpoint::kTrainerStateFile).string();
    try {
      state = TrainerState::from_json(reader->trainer_state());
    } catch (const json::exception& e) {
      throw checkpoint::CheckpointError(state_path, std::string("malformed (") + e.what() + ")");
    }
    if (state.global_step < 0 || !std::isfinite(state.epoch) || state.epoch < 0)
      throw checkpoint::CheckpointError(state_path, "global_step and epoch must be non-negative, got " +
                                                        std::to_string(state.global_step) + " and " +
                                                        std::to_string(state.epoch));
    // A run directory moved since the best checkpoint was recorded: it is found by its name
    // beside the checkpoint resumed from (else load_best_model_at_end and rotation's guard of
    // the best would look for the old path).
    state.best_model_checkpoint = best_checkpoint_beside(dir, state.best_model_checkpoint);
    has_moments = reader->has_optimizer_state();
    if (!has_moments) log_.warn(dir + " has no optimizer state (save_only_model): the optimizer restarts");
  });
  const auto moments = has_moments ? load_optimizer(*reader, state.global_step) : checkpoint::ReadOnceStats{};
  comm::run_agreed(world, [&] { restore_rng(*reader, state); });
  char took[32];
  std::snprintf(took, sizeof took, " in %.3f s", seconds_since(start));
  log_.info("resumed from " + dir + " at step " + std::to_string(state.global_step) + took + " (" +
            checkpoint::read_figures(read + moments) + ")");
}

checkpoint::ReadOnceStats Checkpointer::load_optimizer(const checkpoint::TrainingCheckpointReader& reader,
                                                       std::int64_t global_step) {
  // The moments are laid out like their parameters: this rank's blocks are read, whatever
  // (dp, tp) layout saved them, those the dp replicas share by one of them.
  auto& world = mesh_->world();
  std::unique_ptr<checkpoint::CheckpointReader> moments;
  comm::run_agreed(world, [&] { moments = std::make_unique<checkpoint::CheckpointReader>(reader.optimizer_dir()); });
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<checkpoint::BlockToRead> blocks;
  for (const auto& m : optimizer_.moments()) {
    tensors.emplace_back(m.name, m.tensor.numel() == 0 ? m.tensor : torch::empty_like(m.tensor));
    const auto& placement = model_.trained().at(m.parameter).placement;
    const auto name = m.name;
    const auto shape = m.tensor.sizes().vec();
    blocks.push_back({tensors.back().second, [&moments, name, placement, shape] {
                        return models::read_placed(*moments, name, placement, shape);
                      }});
  }
  const auto stats = checkpoint::read_once(world, model_.dp_replicas(), blocks);
  comm::run_agreed(world, [&] { optimizer_.load_state(tensors, reader.optimizer_state().value("step", global_step)); });
  return stats;
}

void Checkpointer::restore_rng(const checkpoint::TrainingCheckpointReader& reader, const TrainerState& state) {
  // The rule: at the layout that saved (same dp and tp sizes) each rank restores its own
  // stream. At another layout, dp index d restores the stream of the saving run's (d, tp 0)
  // rank, so the ranks of a tp group agree; a dp index the saving run did not have is
  // seeded from (seed, dp index, step).
  const auto& marker = reader.marker();
  int source = mesh_->world().rank();
  if (marker.dp != mesh_->dp_size() || marker.tp != mesh_->tp_size())
    source = mesh_->dp_rank() < marker.dp ? mesh_->dp_rank() * marker.tp : -1;
  torch::manual_seed(args_.training.seed + static_cast<std::uint64_t>(mesh_->dp_rank()) +
                     static_cast<std::uint64_t>(state.global_step) * 1000003ull);
  bool found = true;
  const auto saved = reader.rng_state(source, rng_key(), &found);
  if (!found) {  // saved on the other kind of device: its stream does not apply
    log_.warn((fs::path(reader.dir()) / checkpoint::rng_state_file(source)).string() + " holds no '" + rng_key() +
              "' state (saved on another device type): dropout streams reseeded");
    return;
  }
  if (!saved.defined()) return;
  auto generator = this->generator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(saved);
}

bool Checkpointer::due(std::int64_t step, std::int64_t save_steps, bool epoch_end, bool new_best) const {
  switch (args_.training.save_strategy) {
    case IntervalStrategy::kSteps: return step % save_steps == 0;
    case IntervalStrategy::kEpoch: return epoch_end;
    case IntervalStrategy::kBest: return new_best;
    case IntervalStrategy::kNo: return false;
  }
  return false;
}

checkpoint::TrainingCheckpoint Checkpointer::snapshot(const TrainerState& state, const json& scheduler, bool copy) const {
  const auto& t = args_.training;
  checkpoint::TrainingCheckpoint c;
  c.step = state.global_step;
  c.dp = mesh_->dp_size();
  c.tp = mesh_->tp_size();
  c.only_model = t.save_only_model;
  c.weights = model_.local_tensors(model_.trained_laid_out(), files_.saved_dtype, copy);
  c.trainer_state = state.to_json();
  if (c.only_model) return c;
  // The moments, laid out like their parameters and saved like them: resumable at any layout.
  std::vector<ParallelModel::LaidOut> moments;
  for (const auto& m : optimizer_.moments()) moments.push_back({m.name, m.tensor, m.parameter});
  c.moments = model_.local_tensors(moments, std::nullopt, copy);
  c.optimizer_state = {{"step", optimizer_.steps()}};
  c.scheduler = scheduler;
  c.rng_key = rng_key();
  auto generator = this->generator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  c.rng = generator.get_state();
  return c;
}

void Checkpointer::write(const checkpoint::TrainingCheckpoint& contents, comm::Communicator& comm,
                         const std::string& best, checkpoint::SaveTimes times) {
  using checkpoint::SaveStage;
  using checkpoint::StageTimer;
  const auto start = std::chrono::steady_clock::now();
  checkpoint::TrainingCheckpointOptions options;
  options.save = save_options(args_.training.save_mode);
  options.write_model_files = [this](const std::string& staging) { files_.write(model_.model(), staging); };
  options.after_commit = [this, best](const std::string& committed) {
    log_.info("saved " + committed);
    {
      const StageTimer uploading(SaveStage::kUploadHook);
      post_save_->finish();  // rotation must not delete a checkpoint still being uploaded
    }
    {
      const StageTimer rotating(SaveStage::kRotation);
      rotate_checkpoints(args_.training.output_dir, args_.training.save_total_limit, best,
                         [this](const std::string& line) { log_.info(line); },
                         [this](const std::string& line) { log_.warn(line); });
    }
    const StageTimer uploading(SaveStage::kUploadHook);
    post_save_->run(committed);
  };
  {
    const checkpoint::RecordSaveTimes record(times);
    checkpoint::write_training_checkpoint(comm, args_.training.output_dir, contents, options);
  }
  report(comm, times, seconds_since(start) + times[SaveStage::kSnapshot], checkpoint::checkpoint_name(contents.step),
         {{"checkpoint_step", contents.step}});
}

void Checkpointer::report(comm::Communicator& comm, const checkpoint::SaveTimes& times, double seconds,
                          const std::string& what, json extra) {
  auto entry = save_report(comm, times, seconds, what);
  entry.update(extra);
  if (comm.rank() == 0) log_.info(save_report_line(entry));
  std::lock_guard<std::mutex> lock(reports_mutex_);
  reports_.push_back(std::move(entry));
}

std::vector<json> Checkpointer::take_reports() {
  std::lock_guard<std::mutex> lock(reports_mutex_);
  for (auto& entry : reports_)
    if (const auto step = entry.find("checkpoint_step"); step != entry.end())
      if (const auto waited = waited_.find(step->get<std::int64_t>()); waited != waited_.end())
        entry["save_training_waited_seconds"] = round_to(waited->second, 4);
  return std::exchange(reports_, {});
}

void Checkpointer::save(const TrainerState& state, const json& scheduler) {
  const auto start = std::chrono::steady_clock::now();
  wait();  // one save at a time: the previous one is complete before this starts
  const bool async = save_comm_ != nullptr;
  checkpoint::SaveTimes times;
  checkpoint::TrainingCheckpoint contents;
  {
    const checkpoint::RecordSaveTimes record(times);
    const checkpoint::StageTimer copying(checkpoint::SaveStage::kSnapshot);
    contents = snapshot(state, scheduler, async);
  }
  last_saved_step_ = contents.step;
  const auto best = state.best_model_checkpoint;  // rotation keeps it
  if (async) {
    save_thread_ = std::thread([this, contents = std::move(contents), best, times] {
      if (args_.training.async_save_low_priority) lower_writer_priority();
      try {
        write(contents, *save_comm_, best, times);
      } catch (...) {
        save_error_ = std::current_exception();
      }
    });
  } else {
    write(contents, mesh_->world(), best, times);
  }
  const double blocked = seconds_since(start);
  {
    std::lock_guard<std::mutex> lock(reports_mutex_);
    waited_[last_saved_step_] = blocked;
  }
  blocking_seconds_ += blocked;
  ++checkpoints_saved_;
  log_.info("checkpoint of step " + std::to_string(last_saved_step_) + ": training waited " + std::to_string(blocked) +
            " s" + (async ? " (written in the background)" : ""));
}

void Checkpointer::lower_writer_priority() {
  const auto why = device::lower_this_thread_priority();
  // Said once: every save's thread tries again (a new thread starts at training's priority).
  if (!why.empty() && !priority_warned_) log_.warn("async_save_low_priority: the background writer keeps its priority (" + why + ")");
  priority_warned_ = priority_warned_ || !why.empty();
}

void Checkpointer::wait() {
  if (save_thread_.joinable()) save_thread_.join();
  if (save_error_) std::rethrow_exception(std::exchange(save_error_, nullptr));
}

void Checkpointer::save_merged(const std::string& dir, checkpoint::SaveMode mode) {
  auto& world = mesh_->world();
  auto options = save_options(mode);
  options.single_file = checkpoint::kSingleWeightsFile;
  options.max_shard_size = args_.training.max_shard_size;
  const auto start = std::chrono::steady_clock::now();
  checkpoint::SaveTimes times;
  {
    const checkpoint::RecordSaveTimes record(times);
    checkpoint::save_distributed(world, dir, model_.merged_model_tensors(files_.saved_dtype), options);
    auto files = files_;
    files.adapter_config = nullptr;  // an HF model directory: the base's config
    comm::run_agreed(world, [&] {
      const checkpoint::StageTimer writing(checkpoint::SaveStage::kWrite);
      if (world.rank() == 0) files.write(model_.model(), dir);
    });
  }
  log_.info("saved the merged model (W + scale B A) to " + dir);
  report(world, times, seconds_since(start), "merged");
}

void Checkpointer::save_model(const std::string& dir) {
  auto& world = mesh_->world();
  // The final model is always an HF directory: a sharded save_mode writes it in parallel.
  const auto mode = args_.training.save_mode == checkpoint::SaveMode::kSharded ? checkpoint::SaveMode::kParallel
                                                                               : args_.training.save_mode;
  const auto start = std::chrono::steady_clock::now();
  checkpoint::SaveTimes times;
  double weights_seconds = 0;
  {
    const checkpoint::RecordSaveTimes record(times);
    checkpoint::save_distributed(world, dir,
                                 model_.local_tensors(model_.trained_laid_out(), files_.saved_dtype, false),
                                 save_options(mode));
    weights_seconds = seconds_since(start);
    // Config and tokenizer files are small: rank 0 writes them; the agreement is the others' wait.
    comm::run_agreed(world, [&] {
      const checkpoint::StageTimer writing(checkpoint::SaveStage::kWrite);
      if (world.rank() == 0) files_.write(model_.model(), dir);
    });
  }
  char took[64];
  std::snprintf(took, sizeof took, " (weights written in %.3f s)", weights_seconds);
  log_.info("saved the " + std::string(model_.lora() ? "adapter" : "model") + " to " + dir + took);
  report(world, times, seconds_since(start), "final");
  if (model_.lora() && args_.lora.merge_at_end) save_merged(dir + "/merged", mode);
  if (post_save_) {  // once everything is written (the merged model too)
    post_save_->run(dir);
    post_save_->finish();  // the run ends here: the last upload is waited for
  }
}

}  // namespace mpitrain::train
