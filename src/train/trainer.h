// The Trainer: Hugging Face Trainer semantics (steps, eval, checkpoints, rotation, best model, resume) over DP ranks.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "runtime/checkpoint/distributed_save.h"
#include "runtime/comm/mesh.h"
#include "runtime/device/interval_timer.h"
#include "src/data/distributed_sampler.h"
#include "src/data/hdf5_dataset.h"
#include "src/models/deferred_init.h"
#include "src/models/model.h"
#include "src/train/adamw.h"
#include "src/train/losses.h"
#include "src/train/post_save_hook.h"
#include "src/train/run_log.h"
#include "src/train/trainer_state.h"

namespace mpitrain::parallel {
class DataParallelGradients;
class GradientReducer;
class ShardedDataParallel;
}

namespace mpitrain::train {

class Trainer {
 public:
  // `config` is load_run_config's result; collective over the mesh's world. Throws for bad
  // input (data, model directory, output_dir) with the same message on every rank.
  // `device`: where parameters, activations and collectives live (the mesh's communicators
  // must suit it: NCCL for a GPU).
  Trainer(nlohmann::json config, std::shared_ptr<comm::Mesh> mesh, at::Device device = at::kCPU);
  ~Trainer();

  void train();
  // transformers' save_model: rank 0 writes config, weights, generation config, tokenizer
  // files and training_args.json into `dir`; the other ranks wait. Callable at any time.
  void save_model(const std::string& dir);

  const TrainerState& state() const { return state_; }
  models::HfModel& model() { return *model_; }

 private:
  void prepare_data();
  void build_model();
  void resume(const std::string& checkpoint);
  // One optimizer step (all micro-batches); returns this rank's loss (mean over the micro-batches)
  // as a 0-dim float64 tensor where the model is: nothing in a step waits for the device.
  torch::Tensor train_step();
  nlohmann::json evaluate();
  void log_metrics(nlohmann::json entry);
  // Everything a checkpoint holds, taken at a step boundary: written at once, or (async_save)
  // by a background thread from its own host copies while training goes on.
  struct CheckpointSnapshot {
    std::int64_t step = 0;
    checkpoint::SaveMode mode = checkpoint::SaveMode::kParallel;
    bool only_model = false;
    std::vector<checkpoint::LocalTensor> weights, moments;
    nlohmann::json trainer_state, scheduler, optimizer_meta;
    torch::Tensor rng;
    std::string best_model_checkpoint;  // rotation keeps it
  };
  void save_checkpoint();  // waits for the previous async save, snapshots, writes (or starts writing)
  CheckpointSnapshot snapshot_checkpoint(bool copy);
  void write_checkpoint(const CheckpointSnapshot& snapshot, comm::Communicator& comm);  // collective over comm
  void wait_for_async_save();  // rethrows the background writer's (agreed) error
  void save_model_files(const std::string& dir);  // rank 0's part of save_model: config, tokenizer, args
  void save_weights(const std::string& dir, checkpoint::SaveMode mode);  // collective
  // The config's save settings (max_shard_size, gather window) for weights and optimizer alike.
  checkpoint::DistributedSaveOptions save_options(checkpoint::SaveMode mode) const;
  // Tensors laid out as the model's parameters (the parameters themselves, or the optimizer's
  // `per_parameter` moments of each), with this rank's block and whether it writes it in `mode`.
  // `copy`: the data are copies the caller owns (a snapshot), never views of live tensors.
  std::vector<checkpoint::LocalTensor> local_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                                     std::size_t per_parameter, checkpoint::SaveMode mode,
                                                     std::optional<at::ScalarType> dtype, bool copy = false) const;
  // What this rank trains and saves: the parameters, or under sharding their shards.
  std::vector<std::pair<std::string, torch::Tensor>> trained_tensors() const;
  const std::vector<models::ParameterPlacement>& trained_placements() const;
  bool sharding_configured() const;  // parallel.sharding is a zero stage (set-up; sharded_ after)
  // Rank 0, at the start of a run that does not resume: an earlier run's checkpoints in
  // output_dir are deleted with overwrite_output_dir, else the start is refused. Returns what
  // to delete, deleted once the run has started well.
  struct StartOver {
    std::vector<std::string> paths;
    std::string what;  // the warning that says what went
  };
  StartOver start_over_or_refuse_earlier_checkpoints() const;
  void setup_sharding();  // parallel.sharding != none: the ZeRO runtime in place of the reducer
  // Reads the model's weights from a checkpoint, each rank only its blocks (under sharding,
  // into the shards: the caller then calls sharded_->shards_updated(), a collective, outside
  // any agreed block).
  void load_model_weights(const checkpoint::CheckpointReader& reader);
  nlohmann::json memory_and_traffic() const;  // the training summary's per-rank bytes
  void sum_shared_slice_gradients();  // GQA kv slices held by several tp ranks
  void restore_rng(const std::string& dir);
  void rotate_checkpoints(const std::string& best_model_checkpoint);
  // Agrees over the world whether any rank received a stop signal; if so saves (unless this
  // step is saved already) and throws StoppedBySignal on every rank.
  void stop_if_signalled();
  // Collective over `comm`: {path: {size, xxh64}} of every file in `staging`.
  nlohmann::json checksum_staged_files(const std::string& staging, comm::Communicator& comm);
  void maybe_evaluate_and_save(bool epoch_end);
  std::string resolve_resume_path() const;
  double metric_value(const nlohmann::json& eval) const;
  bool improves(double value) const;
  torch::Tensor forward_loss(const data::Batch& batch);  // training forward (bf16 autocast when asked)
  LossValue loss_of(const torch::Tensor& logits, const data::Batch& batch) const;  // the task's loss
  double lr_at(std::int64_t step) const;  // learning rate after `step` optimizer steps

  data::Batch on_device(data::Batch batch) const;
  at::Generator generator() const;  // the device's default generator (dropout streams)

  nlohmann::json config_;
  std::shared_ptr<comm::Mesh> mesh_;
  at::Device device_;
  std::string output_dir_;
  std::unique_ptr<RunLog> log_;
  StartOver start_over_;  // rank 0: what overwrite_output_dir deletes at the end of set-up
  std::shared_ptr<models::HfModel> model_;
  nlohmann::json generation_config_;
  std::string tokenizer_dir_;  // where tokenizer files come from (empty: the built-in one)
  std::unique_ptr<data::Hdf5Dataset> train_data_, eval_data_;
  std::unique_ptr<data::DistributedSampler> sampler_;
  std::unique_ptr<parallel::GradientReducer> reducer_;       // sharding none
  std::shared_ptr<parallel::ShardedDataParallel> sharded_;  // zero1/2/3
  parallel::DataParallelGradients* gradients_ = nullptr;    // whichever of the two runs
  std::vector<torch::Tensor> trained_;  // what the optimizer updates: parameters_, or the shards
  std::vector<models::ParameterPlacement> shard_placements_;  // of sharded_->shards(): dim-0 blocks of placements_
  // Under sharding, the HF directory whose weights each rank reads as shards once they exist
  // (the model is built without reading them, so no rank holds the whole of it).
  std::string weights_to_shard_;
  // Under sharding, a model made from scratch: its parameters get their values one by one as
  // the sharding takes their shards (set-up only).
  std::unique_ptr<models::DeferredInitialisation> deferred_init_;
  std::unique_ptr<AdamW> optimizer_;
  std::vector<torch::Tensor> parameters_;
  std::vector<models::ParameterPlacement> placements_;  // of parameters_, same order
  std::vector<double> norm_shares_;                     // 1 / ranks holding each parameter's slice
  // The tp ranks sharing a slice with partial gradients (by how many share it), for their sum.
  std::map<int, std::shared_ptr<comm::Communicator>> slice_groups_;
  TrainerState state_;
  std::int64_t steps_per_epoch_ = 0, total_steps_ = 0, warmup_steps_ = 0;
  double last_lr_ = 0;
  torch::Tensor last_grad_norm_;  // read back only when logged
  // The losses of the steps since the last log, summed where they were computed (float64, the
  // same sums as on the host); state_.loss_since_log is brought up to date when a log or a
  // checkpoint needs it.
  torch::Tensor loss_window_;
  // The wait for the last gradient buckets, as the device saw it (on a GPU the host does not wait).
  std::unique_ptr<device::IntervalTimer> exposed_comm_;
  std::int64_t last_checkpoint_step_ = -1;
  std::int64_t steps_run_ = 0;  // optimizer steps this process ran (traffic per step)
  // async_save: the background writer, its own communicator (its collectives never mix with
  // training's), and what it threw.
  std::shared_ptr<comm::Communicator> save_comm_;
  std::thread save_thread_;
  std::exception_ptr save_error_;
  double checkpoint_blocking_seconds_ = 0;  // training time spent in save_checkpoint
  std::int64_t checkpoints_saved_ = 0;
  std::unique_ptr<PostSaveHook> post_save_;  // rank 0
  at::ScalarType saved_dtype_ = at::kFloat;  // time in the reducer's final wait, summed over steps
};

}  // namespace mpitrain::train
