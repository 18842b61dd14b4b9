// The model as the ranks train it: built or loaded, placed over tp, data-parallel through the bucketed reducer or ZeRO, with one list of what is trained.
#include "src/train/parallel_model.h"

#include <cmath>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/torch_bin.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/launch.h"
#include "runtime/parallel/gradient_reducer.h"
#include "runtime/parallel/sharded_data_parallel.h"
#include "runtime/parallel/tensor_parallel.h"
#include "src/models/deferred_init.h"
#include "src/models/lora.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "src/train/memory_check.h"

namespace mpitrain::train {

using nlohmann::json;

namespace {

double per_step(std::uint64_t bytes, double steps) { return std::round(static_cast<double>(bytes) / steps); }

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Before anything is allocated: a model (or micro-batch) that cannot fit in this host's memory is
// refused by name, instead of growing for minutes or ending in the allocator's own words. On a
// GPU the host holds little of it, and the device reports its own shortage.
void require_training_fits(const RunArguments& args, const comm::Mesh& mesh, at::Device device) {
  if (!device.is_cpu()) return;
  // First, before anything can throw: finding the ranks of this host is collective.
  const int local_ranks = comm::detect_launch().local_size;
  std::string source;
  const auto config = args.model.built_config(&source);
  if (config.is_null()) return;  // from_pretrained says what is missing
  TrainingShape shape;
  shape.tp = mesh.tp_size();
  shape.dp = mesh.dp_size();
  shape.sharding = args.parallel.sharding;
  shape.micro_batch = args.training.per_device_train_batch_size;
  shape.seq_len = args.data.task == "causal_lm" ? args.data.seq_len : args.data.max_length;
  shape.gradient_checkpointing = args.training.gradient_checkpointing;
  const auto need = training_memory_per_rank(models::estimate_size(config, source, shape.seq_len), shape);
  require_fits(need, host_memory_available(), local_ranks, shape, config, source);
}

}  // namespace

ParallelModel::ParallelModel(const RunArguments& args, std::shared_ptr<comm::Mesh> mesh, at::Device device, RunLog& log)
    : mesh_(std::move(mesh)), device_(device) {
  read_once_ = replicas_read_once(args.training.read_once, log);
  build(args, log);
  place(args, log);
  if (args.parallel.sharded()) {
    // Over the world: ShardedDataParallel agrees a failure over its dp group only, and under
    // tp the other groups would go on into the next collective and wait for the timeout.
    comm::run_agreed(mesh_->world(), [&] {
      set_up_sharding(args.parallel, args.training.bf16);
      model_->to(device_);  // the buffers; the parameters are there already
    });
    if (!source_dir_.empty() && !lora_)  // under LoRA the base was read whole and the adapters are trained
      comm::run_agreed(mesh_->world(), [&] {
        std::vector<models::ParameterPlacement> placements;
        for (const auto& t : trained_) placements.push_back(t.placement);
        models::load_weight_blocks(*model_, checkpoint::open_model_weights(source_dir_), placements, trained_values());
      });
  } else {
    set_up_reducer(args.parallel);
  }
}

ParallelModel::~ParallelModel() = default;

void ParallelModel::build(const RunArguments& args, RunLog& log) {
  const auto& m = args.model;
  auto tp = std::make_shared<const parallel::TensorParallel>(mesh_->tp_ptr());
  // Under LoRA only the adapters are sharded: the frozen base is read and held whole.
  const bool sharded = args.parallel.sharded() && !args.lora.enabled;
  comm::run_agreed(mesh_->world(), [&] { require_training_fits(args, *mesh_, device_); });
  comm::run_agreed(mesh_->world(), [&] {
    if (!m.model_name_or_path.empty()) {
      // Each rank reads only its tp slices; under sharding only its shards of them, later.
      // A new task head is drawn alike on every rank.
      torch::manual_seed(m.init_seed);
      // Not read yet: unsharded, in place() on the device, the dp replicas reading it once.
      auto loaded = models::from_pretrained(m.model_name_or_path, torch::kFloat32, tp, /*load_now=*/false,
                                            m.config_overrides);
      source_dir_ = m.model_name_or_path;
      model_ = loaded.model;
      generation_config_ = loaded.generation_config;
      if (!loaded.initialised_tensors.empty())
        log.info("initialised: " + joined(loaded.initialised_tensors) + " (a new " + model_->architecture() +
                 " head: " + m.model_name_or_path + " holds another architecture)");
      if (!loaded.ignored_tensors.empty())
        log.warn(m.model_name_or_path + ": not used, and not saved: " + joined(loaded.ignored_tensors));
    } else {
      // The same seed on every rank: layers initialise whole tensors and keep their slice, so
      // any tp size starts from the weights one rank would.
      torch::manual_seed(m.init_seed);
      // Sharded, each parameter is made when its shard is taken: no rank builds the whole model.
      if (sharded) deferred_init_ = std::make_unique<models::DeferredInitialisation>();
      model_ = models::create_model(m.config, "model.config", tp);
      if (deferred_init_) deferred_init_->stop_recording();
    }
    model_->set_gradient_checkpointing(args.training.gradient_checkpointing);
  });
}

void ParallelModel::place(const RunArguments& args, RunLog& log) {
  // Under sharding the parameters reach the device as ShardedDataParallel takes their shards
  // (zero3: only the shards), so a model that fits only sharded never lands whole on a GPU.
  const bool sharded = args.parallel.sharded();
  if (!sharded || args.lora.enabled) {
    model_->to(device_);  // keeps each parameter's identity (its data moves)
    if (!source_dir_.empty()) read_source_weights(log);
  }
  std::vector<std::pair<std::string, models::ParameterPlacement>> placements;
  if (args.lora.enabled) {
    comm::run_agreed(mesh_->world(), [&] { placements = attach_lora(args, log); });
  } else {
    for (const auto& p : model_->parameters()) parameters_.push_back(p);
    placements = model_->placements();
  }
  for (auto& [name, placement] : placements) {
    if (placement.partial_gradient && !slice_groups_.count(placement.replicas))
      slice_groups_[placement.replicas] =
          placement.replicas == mesh_->tp_size()
              ? mesh_->tp_ptr()
              : mesh_->tp().split(mesh_->tp_rank() / placement.replicas, mesh_->tp_rank(), "tp-slice");
    trained_.push_back({name, parameters_[trained_.size()], placement, 1.0 / placement.replicas});
  }
  // Every replica starts from its dp group's rank 0 weights, whatever each rank's initialisation
  // did (weights read later as shards are the same file on every rank; deferred ones are made
  // alike on every rank from the same seed).
  // (Read unsharded from model_name_or_path, every parameter is its dp group's already; a LoRA
  // run's adapters are new.)
  const bool replicas_equal = !source_dir_.empty() && (sharded || !args.lora.enabled);
  if (!replicas_equal && !deferred_init_) parallel::broadcast_parameters(mesh_->dp(), parameters_);
  std::int64_t count = 0, local = 0;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    std::int64_t numel = 1;
    for (auto d : trained_[i].placement.shape) numel *= d;
    count += numel;
    local += parameters_[i].numel();
  }
  log.info("model " + model_->architecture() + ": " + std::to_string(count) + (lora_ ? " trained" : "") +
           " parameters (" + std::to_string(local) + " on this rank); " + std::to_string(mesh_->dp_size()) +
           " data-parallel x " +
           std::to_string(mesh_->tp_size()) + " tensor-parallel ranks");
}

void ParallelModel::set_up_reducer(const ParallelArguments& p) {
  parallel::ReducerOptions options;
  options.bucket_bytes = p.bucket_bytes;
  options.loss_is_prescaled = true;  // the step scales the loss by gradients().loss_scale()
  reducer_ = std::make_unique<parallel::GradientReducer>(mesh_->dp_ptr(), parameters_, options);
  gradients_ = reducer_.get();
}

void ParallelModel::set_up_sharding(const ParallelArguments& p, bool bf16) {
  parallel::ShardingOptions options;
  options.stage = p.sharding;
  options.bucket_bytes = p.bucket_bytes;
  options.prefetch = p.zero3_prefetch;
  options.device = device_;
  // Mixed precision: bfloat16 parameters, activations and gradients, float32 shards and moments.
  if (bf16) options.compute_dtype = at::kBFloat16;
  if (deferred_init_) options.before_sharding = [this](const torch::Tensor& t) { deferred_init_->materialise(t); };
  // Each tp-local tensor is split along the outer dim of its block (its dim 0, or the parts
  // of a fused view), so a shard is again one rectangular block of the HF tensor: 2-D (dp, tp).
  std::vector<std::int64_t> rows;
  for (const auto& t : trained_) rows.push_back(t.placement.rows());
  auto sharded = parameters_;
  auto groups = lora_ ? trained_groups_ : model_->parameter_groups();
  if (lora_ && p.sharding == parallel::ShardingStage::kZero3) append_frozen_base(sharded, rows, groups, options.frozen);
  sharded_ = std::make_shared<parallel::ShardedDataParallel>(mesh_->dp_ptr(), sharded, rows, groups, options);
  const auto shards = sharded_->shards();
  for (std::size_t i = 0; i < trained_.size(); ++i) {
    auto& placement = trained_[i].placement;
    const auto& s = sharded_->layout()[i];
    if (!placement.block.sizes.empty()) {
      placement.block.offsets[0] += s.start;
      placement.block.sizes[0] = s.count;
    }
    trained_[i].tensor = shards[i];
  }
  if (deferred_init_) {
    // Every recorded parameter is a model parameter, so each was made before its shard.
    if (deferred_init_->materialised() != deferred_init_->recorded())
      throw std::logic_error("deferred initialisation: " +
                             std::to_string(deferred_init_->recorded() - deferred_init_->materialised()) +
                             " parameters were never made");
    deferred_init_.reset();
  }
  model_->install_parameter_group_hooks(sharded_);
  gradients_ = sharded_.get();
}

std::vector<std::pair<std::string, torch::Tensor>> ParallelModel::named_trained() const {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& t : trained_) named.emplace_back(t.name, t.tensor);
  return named;
}

std::vector<torch::Tensor> ParallelModel::trained_values() const {
  std::vector<torch::Tensor> values;
  for (const auto& t : trained_) values.push_back(t.tensor);
  return values;
}

std::vector<double> ParallelModel::norm_shares() const {
  std::vector<double> shares;
  for (const auto& t : trained_) shares.push_back(t.norm_share);
  return shares;
}

void ParallelModel::sum_shared_slice_gradients() {
  // A kv slice shared by several tp ranks got from each only its own query heads' part.
  for (const auto& t : trained_) {
    if (!t.placement.partial_gradient || !t.tensor.grad().defined()) continue;
    auto grad = t.tensor.grad();
    slice_groups_.at(t.placement.replicas)->allreduce(grad);
  }
}

comm::Communicator* ParallelModel::norm_group() const {
  // Shards are disjoint over dp and tp slices over tp: the norm sums over whichever is split.
  if (sharded_) return &mesh_->world();
  return mesh_->tp_size() > 1 ? &mesh_->tp() : nullptr;
}

bool ParallelModel::gathers_in_forward() const {
  return sharded_ && sharded_->stage() == parallel::ShardingStage::kZero3;
}

void ParallelModel::weights_loaded() {
  if (sharded_) sharded_->shards_updated();
}

std::vector<ParallelModel::LaidOut> ParallelModel::trained_laid_out() const {
  std::vector<LaidOut> out;
  for (std::size_t i = 0; i < trained_.size(); ++i) out.push_back({trained_[i].name, trained_[i].tensor, i});
  return out;
}

std::vector<checkpoint::LocalTensor> ParallelModel::local_tensors(const std::vector<LaidOut>& tensors,
                                                                  std::optional<at::ScalarType> dtype, bool copy) const {
  std::vector<checkpoint::LocalTensor> out;
  for (const auto& t : tensors) out.push_back(local_tensor(t.name, t.data, trained_.at(t.like).placement, dtype, copy));
  return out;
}

checkpoint::LocalTensor ParallelModel::local_tensor(const std::string& name, torch::Tensor data,
                                                    const models::ParameterPlacement& placement,
                                                    std::optional<at::ScalarType> dtype, bool copy) {
  const auto original = data.data_ptr();
  data = data.detach();
  const auto saved_dtype = dtype ? *dtype : data.scalar_type();
  // A snapshot converts now (it is a copy anyway); a save converts block by block as it
  // writes, so the saved dtype never costs a converted copy of the whole model.
  if (copy && saved_dtype != data.scalar_type()) data = data.to(saved_dtype);
  checkpoint::LocalTensor local;
  local.layout.name = name;
  local.layout.shape = placement.shape;
  if (placement.view != placement.shape) local.layout.view = placement.view;
  local.layout.dtype = checkpoint::from_scalar_type(saved_dtype);
  local.layout.block = placement.block;
  auto packed = data.contiguous();
  // A snapshot is a host copy (a GPU's memory is kept for training).
  if (copy && !packed.is_cpu())
    packed = packed.to(torch::kCPU);
  else if (copy && packed.data_ptr() == original)
    packed = packed.clone();
  local.data = packed.view(placement.block.sizes);
  return local;
}

json ParallelModel::memory_and_traffic(std::uint64_t optimizer_bytes, std::int64_t steps_run) const {
  // Bytes held between steps on this rank, by ZeRO's three kinds, and collective bytes per step.
  std::uint64_t parameters = 0, gradients = 0, optimizer = optimizer_bytes;
  json out;
  const double ranks = mesh_->dp_size();
  const double steps = static_cast<double>(std::max<std::int64_t>(steps_run, 1));
  if (sharded_) {
    const auto m = sharded_->memory();
    parameters = m.parameters;
    gradients = m.gradients;
    optimizer += m.master_shards;
    const auto& t = sharded_->traffic();
    // Ring algorithms: each rank sends (n-1)/n of an all-gather's or reduce-scatter's buffer.
    out["zero_allgather_bytes_per_step"] = per_step(t.allgather_bytes, steps);
    out["zero_reduce_scatter_bytes_per_step"] = per_step(t.reduce_scatter_bytes, steps);
    out["comm_bytes_per_rank_per_step"] =
        std::round(static_cast<double>(t.allgather_bytes + t.reduce_scatter_bytes) / steps * (ranks - 1) / ranks);
    if (sharded_->stage() == parallel::ShardingStage::kZero3) out["memory_peak_gathered_parameter_bytes"] = m.peak_gathered;
    parameters += m.frozen_shards;  // LoRA under zero3: the frozen base's shards
  } else {
    for (const auto& p : parameters_) {
      parameters += p.nbytes();
      if (p.grad().defined()) gradients += p.grad().nbytes();
    }
    std::uint64_t buckets = 0;
    for (std::size_t b = 0; b < reducer_->bucket_count(); ++b) buckets += reducer_->bucket_bytes(b);
    // A ring all-reduce sends 2 (n-1)/n of the buffer per rank.
    out["comm_bytes_per_rank_per_step"] = std::round(static_cast<double>(buckets) * 2 * (ranks - 1) / ranks);
  }
  // LoRA: the frozen base is held too (never stepped: no gradient, no optimizer state).
  if (lora_ && !gathers_in_forward())
    for (const auto& p : model_->parameters())
      if (!p.requires_grad()) parameters += p.nbytes();
  out["memory_parameter_bytes"] = parameters;
  out["memory_gradient_bytes"] = gradients;
  out["memory_optimizer_bytes"] = optimizer;
  return out;
}

}  // namespace mpitrain::train
