// The model as the ranks train it: built or loaded, placed over tp, data-parallel through the bucketed reducer or ZeRO, with one list of what is trained.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/checkpoint/read_once.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/comm/mesh.h"
#include "src/models/model.h"
#include "src/train/run_log.h"
#include "src/train/training_arguments.h"

namespace mpitrain::parallel {
class DataParallelGradients;
class GradientReducer;
class ShardedDataParallel;
}  // namespace mpitrain::parallel

namespace mpitrain::models {
class DeferredInitialisation;
class LoraAdapters;
}

namespace mpitrain::train {

// One tensor the optimizer updates: a parameter (its tp slice), or under sharding its shard.
struct TrainedTensor {
  std::string name;                      // the HF name of the tensor it is a block of
  torch::Tensor tensor;                  // what the optimizer updates and the checkpoint saves
  models::ParameterPlacement placement;  // its block of the HF tensor
  double norm_share = 1;                 // 1 / tp ranks holding the same slice: counted once in the norm
};

class ParallelModel {
 public:
  // Collective over the mesh's world (errors agreed): the model from model_name_or_path (each
  // rank reading its tp slices, or under sharding its shards once they exist) or from
  // model.config (seeded by init_seed; under sharding each parameter made just before its shard
  // is taken, so no rank ever holds the whole model), on `device`, with the DP reducer or ZeRO.
  ParallelModel(const RunArguments& args, std::shared_ptr<comm::Mesh> mesh, at::Device device, RunLog& log);
  ~ParallelModel();

  models::HfModel& model() { return *model_; }
  const models::HfModel& model() const { return *model_; }
  const std::vector<TrainedTensor>& trained() const { return trained_; }
  std::vector<std::pair<std::string, torch::Tensor>> named_trained() const;
  std::vector<torch::Tensor> trained_values() const;
  std::vector<double> norm_shares() const;
  const nlohmann::json& generation_config() const { return generation_config_; }
  const std::string& source_dir() const { return source_dir_; }  // model_name_or_path, or empty

  // LoRA (lora.target_modules set): the adapters are what is trained, the base frozen.
  bool lora() const { return lora_ != nullptr; }
  // Where a saved directory's trained tensors are: the directory, or its adapter file.
  std::string weights_in(const std::string& dir) const;
  nlohmann::json adapter_config() const;     // adapter_config.json (null without LoRA)
  // LoRA, at the end: folds the adapters into the base weights (each rank its slices) and
  // returns the model's own tensors as the save sees them; the model is the merged one after.
  std::vector<checkpoint::LocalTensor> merged_model_tensors(std::optional<at::ScalarType> dtype);

  parallel::DataParallelGradients& gradients() { return *gradients_; }
  // After the last micro-batch's backward and gradients().finalize(): the gradients of kv
  // slices that several tp ranks hold are summed over them (each computed its heads' part).
  void sum_shared_slice_gradients();
  // What the gradient norm sums over: the world under sharding (disjoint shards), tp when it
  // splits tensors, else nothing.
  comm::Communicator* norm_group() const;
  bool sharded() const { return sharded_ != nullptr; }
  bool gathers_in_forward() const;  // zero3: every forward all-gathers over dp

  // Collective over the world, its failures agreed: reads every trained tensor's block from a
  // checkpoint or HF directory of any layout (every tensor of it must be the model's); blocks
  // the dp replicas share are read once and broadcast (read_once). The caller then calls
  // weights_loaded() (once for all loads: the construction's shards of model_name_or_path and
  // a resume's). Returns what this rank read.
  checkpoint::ReadOnceStats load_weights(const checkpoint::CheckpointReader& reader);
  // The dp group when the dp ranks hold the same blocks of every trained tensor (no sharding):
  // the replicas read_once reads for; null under sharding.
  // Null too with read_once off (every rank reads all it needs).
  comm::Communicator* dp_replicas() const { return sharded_ || !read_once_ ? nullptr : &mesh_->dp(); }
  void weights_loaded();  // collective: under zero1/2 the loaded shards become the parameters

  // A tensor laid out like trained()[like]: a trained tensor itself, or an optimizer moment of it.
  struct LaidOut {
    std::string name;
    torch::Tensor data;
    std::size_t like;
  };
  std::vector<LaidOut> trained_laid_out() const;
  // Those tensors as the save sees them: this rank's block of each (ranks holding equal
  // blocks hold copies; the save picks one writer). `dtype`: as saved (default: as held).
  // `copy`: host copies the caller owns (a snapshot), never views of live tensors.
  std::vector<checkpoint::LocalTensor> local_tensors(const std::vector<LaidOut>& tensors,
                                                     std::optional<at::ScalarType> dtype, bool copy) const;

  // The training summary's per-rank bytes (parameters, gradients, optimizer state plus
  // `optimizer_bytes` of moments) and collective bytes per step over `steps` steps.
  nlohmann::json memory_and_traffic(std::uint64_t optimizer_bytes, std::int64_t steps) const;

 private:
  void build(const RunArguments& args, RunLog& log);
  void place(const RunArguments& args, RunLog& log);
  // Every parameter's block from model_name_or_path, unsharded: each block the dp replicas
  // share read by one of them (parallel_model_loading.cpp).
  void read_source_weights(RunLog& log);
  // Collective over dp: training.read_once's answer; auto: whether the dp group spans several
  // hosts (on one host the page cache serves every replica's reads of a file from one read,
  // and a broadcast only adds to that: 1.27x the load time in tests/bench/read_once.sh).
  bool replicas_read_once(const std::string& setting, RunLog& log) const;
  // Makes the adapters, freezes the base, adds the trained tensors to parameters_; their placements.
  std::vector<std::pair<std::string, models::ParameterPlacement>> attach_lora(const RunArguments& args, RunLog& log);
  // LoRA under zero3: the frozen base appended to what ShardedDataParallel shards, marked frozen.
  void append_frozen_base(std::vector<torch::Tensor>& parameters, std::vector<std::int64_t>& rows,
                          std::vector<int>& groups, std::vector<bool>& frozen) const;
  static checkpoint::LocalTensor local_tensor(const std::string& name, torch::Tensor data,
                                              const models::ParameterPlacement& placement,
                                              std::optional<at::ScalarType> dtype, bool copy);
  void set_up_sharding(const ParallelArguments& p, bool bf16);
  void set_up_reducer(const ParallelArguments& p);

  std::shared_ptr<comm::Mesh> mesh_;
  at::Device device_;
  std::shared_ptr<models::HfModel> model_;
  nlohmann::json generation_config_;
  std::string source_dir_;
  bool read_once_ = true;  // training.read_once, auto decided (replicas_read_once)
  std::vector<torch::Tensor> parameters_;
  std::vector<TrainedTensor> trained_;
  // The tp ranks sharing a slice with partial gradients (by how many share it), for their sum.
  std::map<int, std::shared_ptr<comm::Communicator>> slice_groups_;
  std::unique_ptr<parallel::GradientReducer> reducer_;       // sharding none
  std::shared_ptr<parallel::ShardedDataParallel> sharded_;  // zero1/2/3
  parallel::DataParallelGradients* gradients_ = nullptr;    // whichever of the two runs
  std::unique_ptr<models::DeferredInitialisation> deferred_init_;  // sharded from scratch: set-up only
  std::unique_ptr<models::LoraAdapters> lora_;
  std::vector<int> trained_groups_;  // LoRA: each trained tensor's forward group
};

}  // namespace mpitrain::train
