// What a training checkpoint holds and when one is saved: snapshots, the async writer, the final model save, and resume with RNG restore.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "runtime/checkpoint/save_timing.h"
#include "runtime/checkpoint/training_checkpoint.h"
#include "runtime/comm/mesh.h"
#include "src/train/adamw.h"
#include "src/train/model_files.h"
#include "src/train/parallel_model.h"
#include "src/train/post_save_hook.h"
#include "src/train/run_log.h"
#include "src/train/trainer_state.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

class Checkpointer {
 public:
  // `model`, `optimizer` and `log` outlive it. Collective over the mesh's world (async_save
  // splits a communicator of its own for the background writer).
  Checkpointer(const RunArguments& args, std::shared_ptr<comm::Mesh> mesh, at::Device device, ParallelModel& model,
               AdamW& optimizer, RunLog& log, ModelFiles files);
  ~Checkpointer();  // a background save still writing finishes (its collectives need every rank)

  // Collective: resumes from `dir` (a complete checkpoint of any layout; its files verified
  // first when verify_checksums): the weights into the model, the moments into the optimizer,
  // `state` from trainer_state.json, and this rank's RNG stream. Errors agreed. The caller
  // calls model.weights_loaded() after.
  void resume(const std::string& dir, TrainerState& state);

  // Whether this step's boundary saves (save_strategy; `new_best`: this step's eval improved).
  bool due(std::int64_t step, std::int64_t save_steps, bool epoch_end, bool new_best) const;
  // Collective: checkpoint-<state.global_step> with `scheduler` (scheduler.json), written now
  // or (async_save) by a background writer from host copies while training goes on; the
  // previous background save is waited for first.
  void save(const TrainerState& state, const nlohmann::json& scheduler);
  bool saved(std::int64_t step) const { return last_saved_step_ == step; }
  void wait();  // the background save, if any; rethrows its (agreed) error

  // Collective: transformers' save_model: the weights as an HF directory (a sharded save_mode
  // writes in parallel), rank 0 the model's files; then the post-save hook, waited for.
  void save_model(const std::string& dir);
  // The reports (save_report) of the saves finished since the last call, oldest first; a
  // checkpoint's also carries checkpoint_step and save_training_waited_seconds. Each save's
  // line is in the log already (rank 0).
  std::vector<nlohmann::json> take_reports();

  std::int64_t checkpoints_saved() const { return checkpoints_saved_; }
  double blocking_seconds() const { return blocking_seconds_; }  // training time spent in save()
  // The device's default generator (dropout streams): its state is what a checkpoint saves.
  at::Generator generator() const;

 private:
  checkpoint::TrainingCheckpoint snapshot(const TrainerState& state, const nlohmann::json& scheduler, bool copy) const;
  // `times` holds the snapshot's already; the write's stages are added.
  void write(const checkpoint::TrainingCheckpoint& contents, comm::Communicator& comm, const std::string& best,
             checkpoint::SaveTimes times);
  void lower_writer_priority();  // async_save_low_priority, on the writer's thread
  // Collective over `comm`: the save's report, logged by rank 0 and kept for take_reports.
  void report(comm::Communicator& comm, const checkpoint::SaveTimes& times, double seconds, const std::string& what,
              nlohmann::json extra = nlohmann::json::object());
  checkpoint::DistributedSaveOptions save_options(checkpoint::SaveMode mode) const;
  // LoRA's merge_at_end: the adapters folded into the base, saved as an HF directory.
  void save_merged(const std::string& dir, checkpoint::SaveMode mode);
  void restore_rng(const checkpoint::TrainingCheckpointReader& reader, const TrainerState& state);
  // Collective: the moments into the optimizer; what this rank read.
  checkpoint::ReadOnceStats load_optimizer(const checkpoint::TrainingCheckpointReader& reader, std::int64_t global_step);
  std::string rng_key() const;      // its name in the RNG files

  const RunArguments& args_;
  std::shared_ptr<comm::Mesh> mesh_;
  at::Device device_;
  ParallelModel& model_;
  AdamW& optimizer_;
  RunLog& log_;
  ModelFiles files_;
  std::unique_ptr<PostSaveHook> post_save_;  // rank 0
  // async_save: the background writer, its own communicator (its collectives never mix with
  // training's), and what it threw.
  std::shared_ptr<comm::Communicator> save_comm_;
  std::thread save_thread_;
  std::exception_ptr save_error_;
  std::mutex reports_mutex_;  // the background writer adds, the training loop takes
  std::vector<nlohmann::json> reports_;
  std::map<std::int64_t, double> waited_;  // seconds training waited for each checkpoint step
  std::atomic<bool> priority_warned_{false};
  std::int64_t last_saved_step_ = -1;
  std::int64_t checkpoints_saved_ = 0;
  double blocking_seconds_ = 0;
};

}  // namespace mpitrain::train
