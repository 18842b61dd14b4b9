// The Trainer: Hugging Face Trainer semantics (steps, eval, checkpoints, rotation, best model, resume) over DP ranks.
#include "src/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/crash_point.h"
#include "runtime/parallel/tensor_parallel.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/agreement.h"
#include "runtime/parallel/gradient_reducer.h"
#include "runtime/parallel/sharded_data_parallel.h"
#include "src/data/byte_tokenizer.h"
#include "src/data/prepare_data.h"
#include "src/data/preparation_record.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "src/models/autocast.h"
#include "src/train/losses.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/remove_tree.h"
#include "src/train/lr_schedule.h"
#include "src/train/stop_signal.h"

namespace mpitrain::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Where a checkpoint keeps the optimizer's moments (a weights directory of their own).
const char* kOptimizerDir = "optimizer";

// The directory a path names, written with a trailing slash or not ("checkpoint-2/").
fs::path directory_named_by(const std::string& path) {
  auto dir = fs::path(path).lexically_normal();
  return dir.has_filename() ? dir : dir.parent_path();
}

const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                 "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt"};

// Rounds like transformers' logs (4 decimals for losses) so the JSON stays readable.
double round_to(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

void check_output_dir(const std::string& dir) {
  if (fs::exists(dir) && !fs::is_directory(dir)) throw std::runtime_error("output_dir '" + dir + "' is a file");
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw std::runtime_error("output_dir '" + dir + "' cannot be created: " + error.message());
  if (::access(dir.c_str(), W_OK) != 0) throw std::runtime_error("output_dir '" + dir + "' is not writable");
}

// Why every rank needs output_dir (empty: only rank 0 writes there, so node-local storage
// will do).
std::string why_output_dir_is_shared(const json& config) {
  const auto& t = config["training"];
  if (t["save_strategy"] != "no") return "every rank writes checkpoints there and reads them on resume";
  if (!t["save_on_signals"].get<std::string>().empty())
    return "every rank writes a checkpoint there when a stop signal comes (save_on_signals)";
  const auto& resume = t["resume_from_checkpoint"];
  if (resume == true || resume == "auto") return "every rank looks for the checkpoint to resume from there";
  if (t["save_mode"] != "gather") return "save_mode " + t["save_mode"].get<std::string>() + " writes there from every rank";
  if (config["data"]["train_file"].get<std::string>().empty()) return "every rank reads the data prepared there";
  return "";
}

}  // namespace

bool Trainer::sharding_configured() const {
  return parallel::parse_sharding_stage(config_["parallel"]["sharding"]) != parallel::ShardingStage::kNone;
}

Trainer::Trainer(json config, std::shared_ptr<comm::Mesh> mesh, at::Device device)
    : config_(std::move(config)), mesh_(std::move(mesh)), device_(device), exposed_comm_(device::interval_timer_for(device)) {
  auto& world = mesh_->world();
  const auto& t = config_["training"];
  output_dir_ = t["output_dir"].get<std::string>();
  comm::run_agreed(world, [&] { check_output_dir(output_dir_); });
  // At the start, not at the first checkpoint hours later.
  if (const auto why = why_output_dir_is_shared(config_); !why.empty())
    checkpoint::require_shared_directory(world, output_dir_, why + ": output_dir must be on a shared filesystem");
  comm::run_agreed(world, [&] { log_ = std::make_unique<RunLog>(output_dir_, world.rank(), t["progress_bar"].get<bool>()); });
  // Refused now; what overwrite_output_dir deletes goes only once the run has started well
  // (its resume checkpoint found and verified, the model and data accepted).
  comm::run_agreed(world, [&] {
    if (world.rank() == 0) start_over_ = start_over_or_refuse_earlier_checkpoints();
  });
  install_stop_signals(t["save_on_signals"].get<std::string>());
  // The background writer moves host copies only.
  if (t["async_save"].get<bool>()) save_comm_ = world.cpu_communicator().split(0, world.rank(), "save");
  if (world.rank() == 0)
    post_save_ = std::make_unique<PostSaveHook>(t["post_save_command"].get<std::string>(),
                                                (fs::path(output_dir_) / "logs" / "post_save.log").string(),
                                                [this](const std::string& line) { log_->info(line); });
  prepare_data();
  build_model();

  const std::int64_t batch = t["per_device_train_batch_size"].get<std::int64_t>();
  const std::int64_t accumulation = t["gradient_accumulation_steps"].get<std::int64_t>();
  sampler_ = std::make_unique<data::DistributedSampler>(train_data_->size(), mesh_->dp_rank(), mesh_->dp_size(), batch,
                                                        t["seed"].get<std::uint64_t>(), config_["data"]["shuffle"]);
  if (sampler_->batches_per_epoch() < accumulation)
    throw comm::AgreedError(train_data_->path() + ": " + std::to_string(train_data_->size()) +
                            " training samples are fewer than one optimizer step needs (" + std::to_string(mesh_->dp_size()) +
                            " ranks x batch " + std::to_string(batch) + " x " + std::to_string(accumulation) +
                            " accumulation steps)");
  steps_per_epoch_ = std::max<std::int64_t>(1, sampler_->batches_per_epoch() / accumulation);
  const auto max_steps = t["max_steps"].get<std::int64_t>();
  total_steps_ = max_steps >= 0 ? max_steps
                                : static_cast<std::int64_t>(std::ceil(t["num_train_epochs"].get<double>() *
                                                                      static_cast<double>(steps_per_epoch_)));
  warmup_steps_ = resolve_warmup_steps(t["warmup_steps"].get<std::int64_t>(), t["warmup_ratio"].get<double>(), total_steps_);

  state_.max_steps = total_steps_;
  state_.num_train_epochs = max_steps >= 0 ? std::ceil(static_cast<double>(total_steps_) / steps_per_epoch_)
                                           : t["num_train_epochs"].get<double>();
  state_.logging_steps = t["logging_steps"].get<std::int64_t>();
  state_.eval_steps = t["eval_steps"].get<std::int64_t>() > 0 ? t["eval_steps"].get<std::int64_t>() : state_.logging_steps;
  state_.save_steps = t["save_steps"].get<std::int64_t>();
  state_.train_batch_size = batch;

  saved_dtype_ = t["save_dtype"].get<std::string>().empty() ? parameters_.front().scalar_type()
                                                            : models::parse_torch_dtype(t["save_dtype"]);
  if (sharding_configured()) {
    // Over the world: ShardedDataParallel agrees a failure over its dp group only, and under
    // tp the other groups would go on into the next collective and wait for the timeout.
    comm::run_agreed(world, [&] {
      setup_sharding();
      model_->to(device_);  // the buffers; the parameters are there already
    });
    if (!weights_to_shard_.empty())
      comm::run_agreed(world, [&] {
        models::load_weight_blocks(*model_, checkpoint::HfWeights::open(weights_to_shard_), shard_placements_, trained_);
      });
  } else {
    parallel::ReducerOptions reducer_options;
    reducer_options.bucket_bytes = static_cast<std::size_t>(config_["parallel"]["bucket_size_mb"].get<double>() * (1 << 20));
    reducer_options.loss_is_prescaled = true;  // train_step scales the loss by gradients_->loss_scale()
    reducer_ = std::make_unique<parallel::GradientReducer>(mesh_->dp_ptr(), parameters_, reducer_options);
    gradients_ = reducer_.get();
    trained_ = parameters_;
  }
  AdamWOptions adam;
  adam.beta1 = t["adam_beta1"].get<double>();
  adam.beta2 = t["adam_beta2"].get<double>();
  adam.eps = t["adam_epsilon"].get<double>();
  adam.weight_decay = t["weight_decay"].get<double>();
  optimizer_ = std::make_unique<AdamW>(trained_tensors(), adam);

  // Dropout streams differ per dp rank and agree inside a tp group (its ranks compute the
  // replicated activations alike); resume replaces them with the saved ones.
  torch::manual_seed(t["seed"].get<std::uint64_t>() + static_cast<std::uint64_t>(mesh_->dp_rank()));
  std::string resume_path;
  comm::run_agreed(world, [&] { resume_path = resolve_resume_path(); });
  if (!resume_path.empty()) {
    // Every file as it was saved (the ranks share the reading), agreed before any is used.
    if (t["verify_checksums"].get<bool>())
      comm::run_agreed(world, [&] {
        checkpoint::verify_checksums(resume_path, checkpoint::read_complete_marker(resume_path), world.rank(), world.size());
      });
    comm::run_agreed(world, [&] { resume(resume_path); });
  }
  // Shards loaded (from the HF directory or the checkpoint) become the parameters zero1/2
  // compute with; collective, so after every rank's reading has been agreed.
  if (sharded_ && (!weights_to_shard_.empty() || !resume_path.empty())) sharded_->shards_updated();
  // The run has started well: what overwrite_output_dir deletes goes now.
  comm::run_agreed(world, [&] {
    if (world.rank() != 0 || start_over_.paths.empty()) return;
    for (const auto& path : start_over_.paths) checkpoint::remove_tree(path);  // a link goes, not what it points to
    log_->warn(start_over_.what);
  });
  // metrics.jsonl tells this run's story (appended to as it was, it held an earlier run's steps
  // before this one's, or a resume's steps twice): the history of the checkpoint resumed from,
  // then what this run logs, as trainer_state.json's log_history does.
  comm::run_agreed(world, [&] {
    const auto why = resume_path.empty() ? std::string("a fresh start")
                                         : "resumed from " + resume_path + " at step " + std::to_string(state_.global_step);
    if (const auto moved = log_->restart_metrics(state_.log_history, why))
      log_->info("metrics.jsonl: " + std::to_string(moved) + " earlier line(s) not in this run's history (" + why +
                 ") moved to logs/metrics-dropped.jsonl");
  });
}

Trainer::~Trainer() {
  // A background save still writing finishes (its collectives need every rank's writer).
  if (save_thread_.joinable()) save_thread_.join();
}

void Trainer::prepare_data() {
  auto& world = mesh_->world();
  auto& d = config_["data"];
  std::string train_file = d["train_file"].get<std::string>();
  const std::string source = d["source"].get<std::string>();
  const std::string tokenizer = d["tokenizer_name_or_path"].get<std::string>();
  comm::run_agreed(world, [&] {
    if (tokenizer.empty()) return;
    if (!fs::exists(fs::path(tokenizer) / "tokenizer_config.json") && !fs::exists(fs::path(tokenizer) / "tokenizer.json"))
      throw std::runtime_error("data.tokenizer_name_or_path '" + tokenizer + "' holds no tokenizer.json or tokenizer_config.json");
    if (!train_file.empty() && fs::exists(train_file)) return;
    throw std::runtime_error("data.tokenizer_name_or_path needs pre-tokenized data in data.train_file (prepare-data "
                             "tokenizes with the built-in byte tokenizer only)");
  });
  tokenizer_dir_ = tokenizer;
  const bool prepared_in_output_dir = train_file.empty();
  if (prepared_in_output_dir) {
    if (source.empty()) throw comm::AgreedError("data.train_file or data.source is required");
    train_file = (fs::path(output_dir_) / "data" / "prepared.h5").string();
  }
  // Rank 0 prepares missing data; every rank learns whether it worked. Its own file in
  // output_dir is prepared again when the source or the settings changed (before, an edited
  // max_length or source trained on the old data silently), or its preparation never finished.
  comm::run_agreed(world, [&] {
    if (world.rank() != 0) return;
    nlohmann::json record;
    if (prepared_in_output_dir) {
      nlohmann::json settings = {{"task", d["task"]}, {"eval_every", d["eval_every"]}, {"tokenizer", "bytes"}};
      if (d["task"] == "classification") settings["max_length"] = d["max_length"];
      record = data::preparation_record(source, settings);
      if (data::prepared_from(train_file, record)) return;
      if (fs::exists(train_file)) {
        log_->info(train_file + " was prepared from another source or settings, or not to the end: preparing it again");
        fs::remove(train_file);
      }
    } else if (fs::exists(train_file)) {
      return;
    }
    if (source.empty()) throw std::runtime_error(train_file + ": data file does not exist (and no data.source to prepare it from)");
    log_->info("preparing " + train_file + " from " + source);
    const auto report = d["task"] == "classification"
                            ? data::prepare_classification(source, train_file, d["max_length"].get<std::int64_t>(),
                                                           d["eval_every"].get<int>())
                            : data::prepare_text_corpus(source, train_file, d["eval_every"].get<int>());
    log_->info("prepared " + std::to_string(report.documents) + " documents: " +
               std::to_string(report.train_tokens + report.train_rows) + " train and " +
               std::to_string(report.eval_tokens + report.eval_rows) + " eval tokens/rows");
    if (prepared_in_output_dir) data::write_preparation_record(train_file, record);
  });
  const auto seq_len = d["seq_len"].get<std::int64_t>();
  comm::run_agreed(world, [&] {
    train_data_ = std::make_unique<data::Hdf5Dataset>(train_file, "train", seq_len);
    if (config_["training"]["eval_strategy"] != "no" || config_["training"]["save_strategy"] == "best")
      eval_data_ = std::make_unique<data::Hdf5Dataset>(train_file, "eval", seq_len);
    const bool wants_classification = d["task"] == "classification";
    if (train_data_->is_classification() != wants_classification)
      throw std::runtime_error(train_file + ": holds " +
                               (train_data_->is_classification() ? "classification rows" : "a token stream") +
                               " but data.task is '" + d["task"].get<std::string>() + "'");
  });
}

void Trainer::build_model() {
  auto& world = mesh_->world();
  const auto& m = config_["model"];
  const auto name = m["model_name_or_path"].get<std::string>();
  auto tp = std::make_shared<const parallel::TensorParallel>(mesh_->tp_ptr());
  const bool sharded = sharding_configured();
  comm::run_agreed(world, [&] {
    if (!name.empty()) {
      // Each rank reads only its tp slices; under sharding only its shards of them, later.
      auto loaded = models::from_pretrained(name, torch::kFloat32, tp, /*load_now=*/!sharded);
      if (sharded) weights_to_shard_ = name;
      model_ = loaded.model;
      generation_config_ = loaded.generation_config;
      // The model's own tokenizer travels with it, unless the data names another.
      for (const char* file : kTokenizerFiles)
        if (tokenizer_dir_.empty() && fs::exists(fs::path(name) / file)) tokenizer_dir_ = name;
      for (const auto& unused : loaded.ignored_tensors) log_->warn(name + ": tensor '" + unused + "' is not used");
    } else {
      // The same seed on every rank: layers initialise whole tensors and keep their slice, so
      // any tp size starts from the weights one rank would.
      torch::manual_seed(m["init_seed"].get<std::uint64_t>());
      // Sharded, each parameter is made when its shard is taken: no rank builds the whole model.
      if (sharded) deferred_init_ = std::make_unique<models::DeferredInitialisation>();
      model_ = models::create_model(m["config"], "model.config", tp);
      if (deferred_init_) deferred_init_->stop_recording();
    }
    model_->set_gradient_checkpointing(config_["training"]["gradient_checkpointing"].get<bool>());
    const auto vocab = model_->config().value("vocab_size", std::int64_t{0});
    if (train_data_->vocab_size() > vocab)
      throw std::runtime_error(train_data_->path() + ": data vocab_size " + std::to_string(train_data_->vocab_size()) +
                               " exceeds the model's vocab_size " + std::to_string(vocab));
    // Before the first step, in words (else the first forward fails, or Llama runs on silently):
    // learned position tables end there; rotary ones run on, on positions they never trained.
    const auto positions = model_->position_limit();
    for (const auto* dataset : {train_data_.get(), eval_data_.get()}) {
      if (!dataset || dataset->sequence_length() <= positions.length) continue;
      const auto length = std::to_string(dataset->sequence_length());
      const auto what = (dataset->is_classification()
                             ? dataset->path() + ": rows of " + length + " tokens (data.max_length when prepared) exceed"
                             : "data.seq_len " + length + " exceeds") +
                        " the model's " + positions.key + " " + std::to_string(positions.length);
      if (positions.learned) throw std::runtime_error(what + " (learned position embeddings end there)");
      log_->warn(what + ": positions beyond it were never trained (rotary embeddings extrapolate)");
      break;  // said once
    }
  });
  // Under sharding the parameters reach the device as ShardedDataParallel takes their shards
  // (zero3: only the shards), so a model that fits only sharded never lands whole on a GPU.
  if (!sharded) model_->to(device_);  // keeps each parameter's identity (its data moves)
  for (const auto& p : model_->parameters()) parameters_.push_back(p);
  for (auto& [name, placement] : model_->placements()) {
    norm_shares_.push_back(1.0 / placement.replicas);
    if (placement.partial_gradient && !slice_groups_.count(placement.replicas))
      slice_groups_[placement.replicas] =
          placement.replicas == mesh_->tp_size()
              ? mesh_->tp_ptr()
              : mesh_->tp().split(mesh_->tp_rank() / placement.replicas, mesh_->tp_rank(), "tp-slice");
    placements_.push_back(std::move(placement));
  }
  // Every replica starts from its dp group's rank 0 weights, whatever each rank's initialisation
  // did (weights read later as shards are the same file on every rank).
  // (Deferred ones are made alike on every rank from the same seed.)
  if (weights_to_shard_.empty() && !deferred_init_) parallel::broadcast_parameters(mesh_->dp(), parameters_);
  std::int64_t count = 0, local = 0;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    std::int64_t numel = 1;
    for (auto d : placements_[i].shape) numel *= d;
    count += numel;
    local += parameters_[i].numel();
  }
  log_->info("model " + model_->architecture() + ": " + std::to_string(count) + " parameters (" + std::to_string(local) +
             " on this rank); " + std::to_string(mesh_->dp_size()) + " data-parallel x " +
             std::to_string(mesh_->tp_size()) + " tensor-parallel ranks");
}

Trainer::StartOver Trainer::start_over_or_refuse_earlier_checkpoints() const {
  StartOver plan;
  const auto& t = config_["training"];
  const auto& resume = t["resume_from_checkpoint"];
  fs::path resume_path;
  std::error_code error;
  if (resume.is_string() && !resume.get<std::string>().empty() && resume != "auto") {
    resume_path = directory_named_by(resume.get<std::string>());
    // The final save would overwrite the files being resumed from (and checkpoints nest in it).
    if (fs::equivalent(resume_path, output_dir_, error))
      throw std::runtime_error("output_dir '" + output_dir_ +
                               "' is the checkpoint resumed from: the run would write over it; give the directory "
                               "that holds it, or another one");
  }
  // A run that writes no checkpoint cannot mix its own with an earlier run's.
  if (t["save_strategy"] == "no" && t["save_on_signals"].get<std::string>().empty()) return plan;
  const bool overwrite = t["overwrite_output_dir"].get<bool>();
  // Someone else's checkpoint-N (another trainer's, a folder of the user's): a save of that
  // step would replace it, and before, any save deleted it as an incomplete checkpoint.
  const auto foreign = checkpoint::foreign_checkpoints(output_dir_);
  if (!foreign.empty()) {
    const auto named = fs::path(foreign.front()).filename().string() +
                       (foreign.size() > 1 ? " and " + std::to_string(foreign.size() - 1) + " more" : "");
    if (!overwrite)
      throw std::runtime_error("output_dir '" + output_dir_ + "' holds " + named +
                               ", which mpitrain did not write (another trainer's checkpoint? a folder of yours?): "
                               "move it, use another output_dir, or overwrite_output_dir=true deletes it");
    plan.paths = foreign;
    plan.what = "overwrite_output_dir: deleted " + named + " (not written by mpitrain) in " + output_dir_;
  }
  if (resume == true || resume == "auto") return plan;  // continues the run they belong to, from its latest
  // Resuming from a given checkpoint of this output_dir abandons the later ones: they would
  // stay beside this run's checkpoints of the same steps and be picked by the next resume. A
  // checkpoint of another directory leaves every one here an earlier run's.
  const auto complete = checkpoint::complete_checkpoints(output_dir_);
  std::int64_t from_step = -1;
  if (!resume_path.empty() && fs::equivalent(resume_path.parent_path(), output_dir_, error))
    for (const auto& entry : complete)
      if (fs::equivalent(entry.path, resume_path, error)) from_step = entry.step;
  std::vector<checkpoint::CheckpointEntry> earlier;
  for (const auto& entry : complete)
    if (entry.step > from_step) earlier.push_back(entry);
  if (earlier.empty()) return plan;
  const std::string which = std::to_string(earlier.size()) + " checkpoint(s) " +
                            (from_step < 0 ? "of an earlier run" : "after the one resumed from") + " (" +
                            fs::path(earlier.back().path).filename().string() + " the latest)";
  if (!overwrite)
    throw std::runtime_error("output_dir '" + output_dir_ + "' holds " + which + ": " +
                             (from_step < 0 ? "resume it (resume_from_checkpoint=true or auto), or start over"
                                            : "resume from the latest (resume_from_checkpoint=true), or go on") +
                             " with overwrite_output_dir=true, which deletes them");
  for (const auto& entry : earlier) plan.paths.push_back(entry.path);
  for (const auto& stale : checkpoint::incomplete_checkpoints(output_dir_)) plan.paths.push_back(stale);
  plan.what = (plan.what.empty() ? "overwrite_output_dir: deleted " : plan.what + "; and ") + which + " in " + output_dir_;
  return plan;
}

std::string Trainer::resolve_resume_path() const {
  const auto& r = config_["training"]["resume_from_checkpoint"];
  if (r.is_boolean()) {
    if (!r.get<bool>()) return "";
    const auto complete = checkpoint::complete_checkpoints(output_dir_);
    if (complete.empty())
      throw comm::AgreedError("resume_from_checkpoint=true but " + output_dir_ + " holds no complete checkpoint");
    return complete.back().path;
  }
  const auto path = r.get<std::string>();
  if (path.empty()) return "";
  if (path == "auto") {  // a (re)queued job: continue where the last run saved, or start
    const auto complete = checkpoint::complete_checkpoints(output_dir_);
    return complete.empty() ? "" : complete.back().path;
  }
  if (!fs::is_directory(path))
    throw comm::AgreedError("resume_from_checkpoint '" + path + "' " +
                            (fs::exists(path) ? "is not a directory (a checkpoint-<step> directory)" : "does not exist"));
  if (!checkpoint::is_complete_checkpoint(path))
    throw comm::AgreedError("resume_from_checkpoint '" + path + "' is incomplete (no " +
                            std::string(checkpoint::kCompleteMarker) + "; the job that wrote it did not finish)");
  return path;
}

void Trainer::resume(const std::string& dir) {
  // Consolidated or sharded, whatever layout wrote it: each tensor is read as this rank needs it.
  load_model_weights(checkpoint::CheckpointReader(dir));
  const auto state_path = (fs::path(dir) / "trainer_state.json").string();
  try {
    state_ = TrainerState::from_json(models::read_json_file(state_path));
  } catch (const json::exception& e) {
    throw checkpoint::CheckpointError(state_path, std::string("malformed (") + e.what() + ")");
  }
  if (state_.global_step < 0 || !std::isfinite(state_.epoch) || state_.epoch < 0)
    throw checkpoint::CheckpointError(state_path, "global_step and epoch must be non-negative, got " +
                                                      std::to_string(state_.global_step) + " and " +
                                                      std::to_string(state_.epoch));
  // A run directory moved since the best checkpoint was recorded: it is found by its name
  // beside the checkpoint resumed from (else load_best_model_at_end and rotation's guard of the
  // best would look for the old path).
  if (!state_.best_model_checkpoint.empty() && !checkpoint::is_complete_checkpoint(state_.best_model_checkpoint)) {
    const auto beside =
        (directory_named_by(dir).parent_path() / fs::path(state_.best_model_checkpoint).filename()).string();
    if (checkpoint::is_complete_checkpoint(beside)) state_.best_model_checkpoint = beside;
  }
  const auto optimizer_dir = fs::path(dir) / kOptimizerDir;
  if (fs::exists(optimizer_dir)) {
    // The moments are laid out like their parameters: read this rank's blocks, whatever
    // (dp, tp) layout saved them.
    checkpoint::CheckpointReader reader(optimizer_dir.string());
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    std::size_t i = 0;
    for (const auto& [name, tensor] : optimizer_->state_tensors()) {
      const auto& placement = trained_placements()[i++ / 2];  // exp_avg and exp_avg_sq of each parameter
      tensors.emplace_back(name, tensor.numel() == 0 ? tensor : models::read_placed(reader, name, placement, tensor.sizes()));
    }
    const auto meta = models::read_json_file((optimizer_dir / "optimizer.json").string());
    optimizer_->load_state(tensors, meta.value("step", state_.global_step));
  } else {
    log_->warn(dir + " has no optimizer state (save_only_model): the optimizer restarts");
  }
  restore_rng(dir);
  log_->info("resumed from " + dir + " at step " + std::to_string(state_.global_step));
}

void Trainer::setup_sharding() {
  const auto& p = config_["parallel"];
  parallel::ShardingOptions options;
  options.stage = parallel::parse_sharding_stage(p["sharding"]);
  options.bucket_bytes = static_cast<std::size_t>(p["bucket_size_mb"].get<double>() * (1 << 20));
  options.prefetch = p["zero3_prefetch"].get<int>();
  options.device = device_;
  // Mixed precision: bfloat16 parameters, activations and gradients, float32 shards and moments.
  if (config_["training"]["bf16"].get<bool>()) options.compute_dtype = at::kBFloat16;
  if (deferred_init_) options.before_sharding = [this](const torch::Tensor& p) { deferred_init_->materialise(p); };
  // Each tp-local tensor is split along the outer dim of its block (its dim 0, or the parts
  // of a fused view), so a shard is again one rectangular block of the HF tensor: 2-D (dp, tp).
  std::vector<std::int64_t> rows;
  for (const auto& placement : placements_) rows.push_back(placement.block.sizes.empty() ? 1 : placement.block.sizes[0]);
  sharded_ = std::make_shared<parallel::ShardedDataParallel>(mesh_->dp_ptr(), parameters_, rows,
                                                             model_->parameter_groups(), options);
  for (std::size_t i = 0; i < placements_.size(); ++i) {
    auto placement = placements_[i];
    const auto& s = sharded_->layout()[i];
    if (!placement.block.sizes.empty()) {
      placement.block.offsets[0] += s.start;
      placement.block.sizes[0] = s.count;
    }
    shard_placements_.push_back(std::move(placement));
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
  trained_ = sharded_->shards();
}

std::vector<std::pair<std::string, torch::Tensor>> Trainer::trained_tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::size_t i = 0;
  for (const auto& item : model_->named_parameters()) named.emplace_back(item.key(), trained_[i++]);
  return named;
}

const std::vector<models::ParameterPlacement>& Trainer::trained_placements() const {
  return sharded_ ? shard_placements_ : placements_;
}

void Trainer::load_model_weights(const checkpoint::CheckpointReader& reader) {
  if (!sharded_) {
    models::load_weights(*model_, reader);
    return;
  }
  models::require_no_foreign_tensors(*model_, reader);
  // Only this rank's shard of each tensor is read.
  torch::NoGradGuard no_grad;
  std::size_t i = 0;
  for (const auto& [name, shard] : trained_tensors()) {
    const auto& placement = shard_placements_[i++];
    if (shard.numel() > 0) shard.detach().copy_(models::read_placed(reader, name, placement, shard.sizes()));
  }
}

void Trainer::restore_rng(const std::string& dir) {
  // The rule: at the layout that saved (same dp and tp sizes) each rank restores its own
  // stream. At another layout, dp index d restores the stream of the saving run's (d, tp 0)
  // rank, so the ranks of a tp group agree; a dp index the saving run did not have is
  // seeded from (seed, dp index, step).
  const auto marker = checkpoint::read_complete_marker(dir);
  const int saved_dp = marker.value("dp", marker.value("world_size", 1)), saved_tp = marker.value("tp", 1);
  int source = mesh_->world().rank();
  if (saved_dp != mesh_->dp_size() || saved_tp != mesh_->tp_size())
    source = mesh_->dp_rank() < saved_dp ? mesh_->dp_rank() * saved_tp : -1;
  torch::manual_seed(config_["training"]["seed"].get<std::uint64_t>() + static_cast<std::uint64_t>(mesh_->dp_rank()) +
                     static_cast<std::uint64_t>(state_.global_step) * 1000003ull);
  const auto rng_file = fs::path(dir) / ("rng_state_" + std::to_string(source) + ".safetensors");
  if (source < 0 || !fs::exists(rng_file)) return;
  checkpoint::SafetensorsFile file(rng_file.string());
  auto generator = this->generator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  // Dropout draws from the device's generator: a GPU state is saved under its own name.
  const char* key = device_.is_cpu() ? "torch_cpu" : "torch_cuda";
  if (!file.header().find(key)) {  // saved on the other kind of device: its stream does not apply
    log_->warn(rng_file.string() + " holds no '" + key + "' state (saved on another device type): dropout streams reseeded");
    return;
  }
  generator.set_state(checkpoint::read_tensor(file, file.entry(key)));
}

at::Generator Trainer::generator() const {
  return at::globalContext().defaultGenerator(device_);  // a handle: states set through it are the device's
}

data::Batch Trainer::on_device(data::Batch batch) const {
  if (device_.is_cpu()) return batch;
  for (auto* t : {&batch.input_ids, &batch.attention_mask, &batch.labels})
    if (t->defined()) *t = t->to(device_, /*non_blocking=*/true);
  return batch;
}

torch::Tensor Trainer::forward_loss(const data::Batch& batch) {
  models::ModelInputs inputs{batch.input_ids, batch.attention_mask, {}};
  torch::Tensor logits;
  {
    models::AutocastScope scope(device_, config_["training"]["bf16"].get<bool>());
    logits = model_->forward(inputs);
  }
  return loss_of(logits, batch).loss;
}

LossValue Trainer::loss_of(const torch::Tensor& logits, const data::Batch& batch) const {
  if (train_data_->is_classification()) return classification_loss(logits, batch.labels);
  // Under tp > 1 the logits are this rank's vocabulary columns: vocab-parallel cross-entropy.
  return causal_lm_loss(logits, batch.labels, batch.attention_mask, &model_->tensor_parallel(),
                        model_->logits_vocab_start());
}

double Trainer::lr_at(std::int64_t step) const {
  const auto& t = config_["training"];
  return t["learning_rate"].get<double>() * lr_multiplier(t["lr_scheduler_type"], step, warmup_steps_, total_steps_);
}

torch::Tensor Trainer::train_step() {
  const auto accumulation = config_["training"]["gradient_accumulation_steps"].get<std::int64_t>();
  const auto epoch = state_.global_step / steps_per_epoch_;
  const auto first_batch = (state_.global_step % steps_per_epoch_) * accumulation;
  torch::Tensor loss_sum;
  model_->train();
  for (std::int64_t micro = 0; micro < accumulation; ++micro) {
    const auto batch = on_device(train_data_->read(sampler_->batch(epoch, first_batch + micro)));
    state_.tokens_seen += batch.tokens * mesh_->dp_size();
    gradients_->prepare_for_backward(micro == accumulation - 1);
    auto loss = forward_loss(batch) / static_cast<double>(accumulation);
    // Gradients are summed over the dp group; this scale makes the sum their average.
    (loss * gradients_->loss_scale()).backward();
    const auto value = loss.detach().to(torch::kDouble);
    loss_sum = loss_sum.defined() ? loss_sum + value : value;
  }
  // What the backward pass did not hide: the wait for the last buckets.
  exposed_comm_->measure([&] { gradients_->finalize(); });
  sum_shared_slice_gradients();
  // Shards are disjoint over dp and tp slices over tp: the norm sums over whichever is split.
  comm::Communicator* norm_group = sharded_ ? &mesh_->world() : mesh_->tp_size() > 1 ? &mesh_->tp() : nullptr;
  last_grad_norm_ = clip_grad_norm(trained_, config_["training"]["max_grad_norm"].get<double>(), norm_shares_, norm_group);
  optimizer_->step(lr_at(state_.global_step));
  gradients_->step_done();
  ++steps_run_;
  ++state_.global_step;
  last_lr_ = lr_at(state_.global_step);
  return loss_sum;
}

void Trainer::sum_shared_slice_gradients() {
  // A kv slice shared by several tp ranks got from each only its own query heads' part.
  for (std::size_t i = 0; i < trained_.size(); ++i) {
    if (!placements_[i].partial_gradient || !trained_[i].grad().defined()) continue;
    const auto it = slice_groups_.find(placements_[i].replicas);
    auto grad = trained_[i].grad();
    it->second->allreduce(grad);
  }
}

json Trainer::memory_and_traffic() const {
  // Bytes held between steps on this rank, by ZeRO's three kinds, and collective bytes per step.
  std::uint64_t parameters = 0, gradients = 0, optimizer = 0;
  for (const auto& [name, moment] : optimizer_->state_tensors()) optimizer += moment.nbytes();
  json out;
  const double ranks = mesh_->dp_size();
  const double steps = static_cast<double>(std::max<std::int64_t>(steps_run_, 1));
  if (sharded_) {
    const auto m = sharded_->memory();
    parameters = m.parameters;
    gradients = m.gradients;
    optimizer += m.master_shards;
    const auto& t = sharded_->traffic();
    // Ring algorithms: each rank sends (n-1)/n of an all-gather's or reduce-scatter's buffer.
    out["zero_allgather_bytes_per_step"] = round_to(static_cast<double>(t.allgather_bytes) / steps, 0);
    out["zero_reduce_scatter_bytes_per_step"] = round_to(static_cast<double>(t.reduce_scatter_bytes) / steps, 0);
    out["comm_bytes_per_rank_per_step"] = round_to(
        static_cast<double>(t.allgather_bytes + t.reduce_scatter_bytes) / steps * (ranks - 1) / ranks, 0);
    if (sharded_->stage() == parallel::ShardingStage::kZero3) out["memory_peak_gathered_parameter_bytes"] = m.peak_gathered;
  } else {
    for (const auto& p : parameters_) {
      parameters += p.nbytes();
      if (p.grad().defined()) gradients += p.grad().nbytes();
    }
    std::uint64_t buckets = 0;
    for (std::size_t b = 0; b < reducer_->bucket_count(); ++b) buckets += reducer_->bucket_bytes(b);
    // A ring all-reduce sends 2 (n-1)/n of the buffer per rank.
    out["comm_bytes_per_rank_per_step"] = round_to(static_cast<double>(buckets) * 2 * (ranks - 1) / ranks, 0);
  }
  out["memory_parameter_bytes"] = parameters;
  out["memory_gradient_bytes"] = gradients;
  out["memory_optimizer_bytes"] = optimizer;
  return out;
}

json Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  const auto batch = static_cast<std::size_t>(config_["training"]["per_device_eval_batch_size"].get<std::int64_t>());
  // Every eval sample counts once: rank r takes samples r, r + dp, ...; ranks may run a
  // different number of batches, since the only collective is the final sum. Except under
  // zero3, where every forward all-gathers over dp: there every rank runs as many batches as
  // the rank with the most samples, a rank out of samples running sample 0 and ignoring it.
  std::vector<std::int64_t> mine;
  for (std::int64_t i = mesh_->dp_rank(); i < eval_data_->size(); i += mesh_->dp_size()) mine.push_back(i);
  const bool gathers = sharded_ && sharded_->stage() == parallel::ShardingStage::kZero3;
  const auto most = static_cast<std::size_t>((eval_data_->size() + mesh_->dp_size() - 1) / mesh_->dp_size());
  const auto batches = ((gathers ? most : mine.size()) + batch - 1) / batch;
  double loss_sum = 0, correct = 0;
  std::int64_t count_sum = 0;
  for (std::size_t b = 0; b < batches; ++b) {
    const auto start = b * batch, end = std::min(mine.size(), start + batch);
    const bool padding = start >= mine.size();  // zero3: in step with the other ranks' gathers
    const auto indices = padding ? std::vector<std::int64_t>{0}
                                 : std::vector<std::int64_t>(mine.begin() + static_cast<std::ptrdiff_t>(start),
                                                             mine.begin() + static_cast<std::ptrdiff_t>(end));
    const auto data = on_device(eval_data_->read(indices));
    models::ModelInputs inputs{data.input_ids, data.attention_mask, {}};
    auto logits = model_->forward(inputs);
    if (padding) continue;
    const auto loss = loss_of(logits, data);
    const auto count = loss.count.item<std::int64_t>();
    loss_sum += loss.loss.item<double>() * static_cast<double>(count);
    count_sum += count;
    if (eval_data_->is_classification()) correct += (logits.argmax(-1) == data.labels).sum().item<double>();
  }
  auto totals = torch::tensor({loss_sum, static_cast<double>(count_sum), correct}, torch::kFloat64);
  mesh_->dp().allreduce(totals, comm::ReduceOp::kSum);
  json result;
  const double n = std::max(1.0, totals[1].item<double>());
  result["eval_loss"] = round_to(totals[0].item<double>() / n, 4);
  if (eval_data_->is_classification()) result["eval_accuracy"] = round_to(totals[2].item<double>() / n, 4);
  if (totals[1].item<double>() == 0) log_->warn("the eval split is empty");
  return result;
}

void Trainer::log_metrics(json entry) {
  entry["epoch"] = round_to(static_cast<double>(state_.global_step) / static_cast<double>(steps_per_epoch_), 4);
  entry["step"] = state_.global_step;
  state_.log_history.push_back(entry);
  log_->metrics(entry);
}

double Trainer::metric_value(const json& eval) const {
  auto name = config_["training"]["metric_for_best_model"].get<std::string>();
  if (name.rfind("eval_", 0) != 0) name = "eval_" + name;
  if (!eval.contains(name)) throw std::runtime_error("metric_for_best_model '" + name + "' is not an eval metric");
  return eval[name].get<double>();
}

bool Trainer::improves(double value) const {
  if (!state_.best_metric) return true;
  return config_["training"]["greater_is_better"].get<bool>() ? value > *state_.best_metric
                                                              : value < *state_.best_metric;
}

void Trainer::maybe_evaluate_and_save(bool epoch_end) {
  const auto& t = config_["training"];
  const auto step = state_.global_step;
  const bool eval_now = (t["eval_strategy"] == "steps" && step % state_.eval_steps == 0) ||
                        (t["eval_strategy"] == "epoch" && epoch_end);
  bool new_best = false;
  if (eval_now) {
    auto metrics = evaluate();
    log_metrics(metrics);
    const double value = metric_value(metrics);
    new_best = improves(value);
    if (new_best) {
      state_.best_metric = value;
      // Recorded as the checkpoint this step will be saved to (if it is saved).
      state_.best_model_checkpoint = (fs::path(output_dir_) / checkpoint::checkpoint_name(step)).string();
    }
  }
  const bool save_now = (t["save_strategy"] == "steps" && step % state_.save_steps == 0) ||
                        (t["save_strategy"] == "epoch" && epoch_end) || (t["save_strategy"] == "best" && new_best);
  if (save_now) save_checkpoint();
}

std::vector<checkpoint::LocalTensor> Trainer::local_tensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& named, std::size_t per_parameter,
    checkpoint::SaveMode mode, std::optional<at::ScalarType> dtype, bool copy) const {
  auto& world = mesh_->world();
  // Writers: one rank per distinct block. In gather mode the dp group 0 writes (rank 0 then
  // receives only the tp slices it lacks); otherwise tensors are spread over the ranks by
  // bytes: unsplit ones over the world, tp slices over the dp replicas of each slice.
  std::vector<std::uint64_t> bytes;
  for (const auto& [name, tensor] : named) bytes.push_back(tensor.nbytes());
  const auto world_writer = checkpoint::balance_writers(bytes, world.size());
  const auto dp_writer = checkpoint::balance_writers(bytes, mesh_->dp_size());
  std::vector<checkpoint::LocalTensor> out;
  for (std::size_t i = 0; i < named.size(); ++i) {
    const auto& placement = trained_placements()[i / per_parameter];
    auto data = named[i].second.detach();
    const auto saved_dtype = dtype ? *dtype : data.scalar_type();
    // A snapshot converts now (it is a copy anyway); a save converts block by block as it
    // writes, so the saved dtype never costs a converted copy of the whole model.
    if (copy && saved_dtype != data.scalar_type()) data = data.to(saved_dtype);
    checkpoint::LocalTensor local;
    local.layout.name = named[i].first;
    local.layout.shape = placement.shape;
    if (placement.view != placement.shape) local.layout.view = placement.view;
    local.layout.dtype = checkpoint::from_scalar_type(saved_dtype);
    local.layout.block = placement.block;
    const bool unsplit = placement.replicas == mesh_->tp_size();
    const bool first_of_slice = mesh_->tp_rank() % placement.replicas == 0;
    if (sharded_)  // every dp rank holds its own rows: the first tp rank of each slice writes them
      local.layout.writer = first_of_slice && !placement.block.empty();
    else if (mode == checkpoint::SaveMode::kGather)
      local.layout.writer = mesh_->dp_rank() == 0 && (unsplit ? mesh_->tp_rank() == 0 : first_of_slice);
    else if (unsplit)
      local.layout.writer = world_writer[i] == world.rank();
    else
      local.layout.writer = dp_writer[i] == mesh_->dp_rank() && first_of_slice;
    auto packed = data.contiguous();
    // A snapshot is a host copy (a GPU's memory is kept for training).
    if (copy && !packed.is_cpu())
      packed = packed.to(torch::kCPU);
    else if (copy && packed.data_ptr() == named[i].second.data_ptr())
      packed = packed.clone();
    local.data = packed.view(placement.block.sizes);
    out.push_back(std::move(local));
  }
  return out;
}

checkpoint::DistributedSaveOptions Trainer::save_options(checkpoint::SaveMode mode) const {
  const auto& t = config_["training"];
  checkpoint::DistributedSaveOptions options;
  options.mode = mode;
  options.max_shard_size = checkpoint::parse_shard_size(t["max_shard_size"].get<std::string>());
  options.gather_window_bytes = static_cast<std::uint64_t>(t["gather_window_mb"].get<double>() * (1 << 20));
  options.io = checkpoint::parse_save_io(t["save_io"].get<std::string>());
  options.check_shared_directory = false;  // output_dir, checked at the start where it matters
  return options;
}

void Trainer::save_weights(const std::string& dir, checkpoint::SaveMode mode) {
  checkpoint::save_distributed(mesh_->world(), dir, local_tensors(trained_tensors(), 1, mode, saved_dtype_),
                               save_options(mode));
}

void Trainer::save_model_files(const std::string& dir) {
  models::save_pretrained_metadata(*model_, dir, saved_dtype_, generation_config_);
  if (!tokenizer_dir_.empty()) {
    for (const char* file : kTokenizerFiles) {
      const auto from = fs::path(tokenizer_dir_) / file, to = fs::path(dir) / file;
      // Saving into the directory the tokenizer came from leaves its files as they are.
      if (fs::exists(from) && !(fs::exists(to) && fs::equivalent(from, to)))
        fs::copy_file(from, to, fs::copy_options::overwrite_existing);
    }
  } else {
    data::ByteTokenizer::save(dir, model_->config().value("max_position_embeddings",
                                                          model_->config().value("n_positions", std::int64_t{1024})));
  }
  json args = config_["training"];
  args["mpitrain"] = {{"model", config_["model"]}, {"data", config_["data"]}, {"parallel", config_["parallel"]}};
  models::write_json_file((fs::path(dir) / "training_args.json").string(), args);
}

void Trainer::save_model(const std::string& dir) {
  auto& world = mesh_->world();
  // The final model is always an HF directory: a sharded save_mode writes it in parallel.
  const auto mode = checkpoint::parse_save_mode(config_["training"]["save_mode"].get<std::string>());
  const auto start = std::chrono::steady_clock::now();
  save_weights(dir, mode == checkpoint::SaveMode::kSharded ? checkpoint::SaveMode::kParallel : mode);
  const double weights_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Config and tokenizer files are small: rank 0 writes them; the agreement is the others' wait.
  comm::run_agreed(world, [&] {
    if (world.rank() == 0) save_model_files(dir);
  });
  char took[64];
  std::snprintf(took, sizeof took, " (weights written in %.3f s)", weights_seconds);
  log_->info("saved the model to " + dir + took);
  if (post_save_) {
    post_save_->run(dir);
    post_save_->finish();  // the run ends here: the last upload is waited for
  }
}

void Trainer::save_checkpoint() {
  const auto start = std::chrono::steady_clock::now();
  wait_for_async_save();  // one save at a time: the previous one is complete before this starts
  const bool async = save_comm_ != nullptr;
  auto snapshot = snapshot_checkpoint(async);
  last_checkpoint_step_ = snapshot.step;
  if (async) {
    save_thread_ = std::thread([this, snapshot = std::move(snapshot)] {
      try {
        write_checkpoint(snapshot, *save_comm_);
      } catch (...) {
        save_error_ = std::current_exception();
      }
    });
  } else {
    write_checkpoint(snapshot, mesh_->world());
  }
  const double blocked = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  checkpoint_blocking_seconds_ += blocked;
  ++checkpoints_saved_;
  log_->info("checkpoint of step " + std::to_string(last_checkpoint_step_) + ": training waited " +
             std::to_string(blocked) + " s" + (async ? " (written in the background)" : ""));
}

void Trainer::wait_for_async_save() {
  if (save_thread_.joinable()) save_thread_.join();
  if (save_error_) std::rethrow_exception(std::exchange(save_error_, nullptr));
}

Trainer::CheckpointSnapshot Trainer::snapshot_checkpoint(bool copy) {
  const auto& t = config_["training"];
  CheckpointSnapshot s;
  s.step = state_.global_step;
  if (loss_window_.defined()) state_.loss_since_log = loss_window_.item<double>();  // resumed mid-window
  s.mode = checkpoint::parse_save_mode(t["save_mode"].get<std::string>());
  s.only_model = t["save_only_model"].get<bool>();
  s.weights = local_tensors(trained_tensors(), 1, s.mode, saved_dtype_, copy);
  s.trainer_state = state_.to_json();
  s.best_model_checkpoint = state_.best_model_checkpoint;
  if (s.only_model) return s;
  // The moments, laid out like their parameters and saved like them: resumable at any layout.
  s.moments = local_tensors(optimizer_->state_tensors(), 2, s.mode, std::nullopt, copy);
  s.optimizer_meta = {{"step", optimizer_->steps()}};
  s.scheduler = {{"lr_scheduler_type", t["lr_scheduler_type"]}, {"base_lr", t["learning_rate"]}, {"last_epoch", s.step},
                 {"warmup_steps", warmup_steps_}, {"total_steps", total_steps_}, {"last_lr", last_lr_}};
  auto generator = this->generator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  s.rng = generator.get_state();
  return s;
}

void Trainer::write_checkpoint(const CheckpointSnapshot& s, comm::Communicator& comm) {
  const auto staging = checkpoint::staging_dir(output_dir_, s.step);
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) {
      for (const auto& stale : checkpoint::incomplete_checkpoints(output_dir_)) checkpoint::remove_tree(stale);
      checkpoint::prepare_staging_dir(output_dir_, s.step);
    }
  });
  checkpoint::save_distributed(comm, staging, s.weights, save_options(s.mode));
  checkpoint::crash_point("checkpoint.weights_saved", comm.rank());
  if (!s.only_model)
    checkpoint::save_distributed(comm, (fs::path(staging) / kOptimizerDir).string(), s.moments, save_options(s.mode));
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) {
      save_model_files(staging);
      if (!s.only_model) {
        models::write_json_file((fs::path(staging) / kOptimizerDir / "optimizer.json").string(), s.optimizer_meta);
        models::write_json_file((fs::path(staging) / "scheduler.json").string(), s.scheduler);
      }
      models::write_json_file((fs::path(staging) / "trainer_state.json").string(), s.trainer_state);
    }
    if (!s.only_model)
      checkpoint::write_safetensors(
          (fs::path(staging) / ("rng_state_" + std::to_string(comm.rank()) + ".safetensors")).string(),
          {checkpoint::tensor_bytes(device_.is_cpu() ? "torch_cpu" : "torch_cuda", s.rng)});
  });
  const auto files = checksum_staged_files(staging, comm);
  checkpoint::crash_point("checkpoint.before_commit", comm.rank());
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    json marker = {{"step", s.step}, {"world_size", comm.size()}, {"dp", mesh_->dp_size()}, {"tp", mesh_->tp_size()},
                   {"files", files}};
    const auto path = checkpoint::commit_staging_dir(output_dir_, s.step, marker.dump(2) + "\n");
    log_->info("saved " + path);
    post_save_->finish();  // rotation must not delete a checkpoint still being uploaded
    rotate_checkpoints(s.best_model_checkpoint);
    post_save_->run(path);
  });
}

json Trainer::checksum_staged_files(const std::string& staging, comm::Communicator& world) {
  // Every rank hashes a share of the files (balanced by size); rank 0 records them all in the
  // marker, so a resume can tell a corrupted or truncated file from a good one.
  std::vector<checkpoint::FileChecksum> mine;
  comm::run_agreed(world, [&] {
    const auto files = checkpoint::checkpoint_files(staging);
    std::vector<std::uint64_t> sizes;
    for (const auto& f : files) sizes.push_back(fs::file_size(fs::path(staging) / f));
    const auto owner = checkpoint::balance_writers(sizes, world.size());
    for (std::size_t i = 0; i < files.size(); ++i)
      if (owner[i] == world.rank()) mine.push_back(checkpoint::checksum_file(staging, files[i]));
  });
  // Each rank's share as JSON text; the lengths say where one rank's text ends in the gather.
  std::string text = checkpoint::checksums_to_json(mine).dump();
  auto bytes = torch::from_blob(text.data(), {static_cast<std::int64_t>(text.size())}, torch::kUInt8).clone();
  auto lengths = world.allgather(torch::tensor({static_cast<std::int64_t>(text.size())}, torch::kInt64));
  auto all = world.allgatherv(bytes);
  const auto* joined = reinterpret_cast<const char*>(all.data_ptr());
  json merged = json::object();
  std::int64_t at = 0;
  for (std::int64_t r = 0; r < lengths.numel(); ++r) {
    const auto length = lengths[r].item<std::int64_t>();
    merged.update(json::parse(std::string(joined + at, static_cast<std::size_t>(length))));
    at += length;
  }
  return merged;
}

void Trainer::stop_if_signalled() {
  // One small all-reduce per step: a signal that reached any rank stops every rank at the
  // same step boundary (Slurm may signal only some tasks; mpirun forwards to all).
  auto signal = torch::tensor({static_cast<std::int64_t>(received_stop_signal())}, torch::kInt64);
  mesh_->world().allreduce(signal, comm::ReduceOp::kMax);
  const int received = static_cast<int>(signal.item<std::int64_t>());
  if (received == 0) return;
  if (last_checkpoint_step_ != state_.global_step) save_checkpoint();
  wait_for_async_save();  // the exit status promises a complete checkpoint
  log_->finish_progress();
  // The curves so far (else the previous run's loss.svg stays beside this run's metrics).
  if (mesh_->world().rank() == 0) write_loss_plot((fs::path(output_dir_) / "loss.svg").string(), state_.log_history);
  throw StoppedBySignal("stopped by " + signal_name(received) + " at step " + std::to_string(state_.global_step) +
                        " after saving " + (fs::path(output_dir_) / checkpoint::checkpoint_name(state_.global_step)).string() +
                        "; resume_from_checkpoint=true continues (exit status " +
                        std::to_string(kStoppedForRequeueExitStatus) + ")");
}

void Trainer::rotate_checkpoints(const std::string& best_model_checkpoint) {
  const auto limit = config_["training"]["save_total_limit"].get<std::int64_t>();
  for (const auto& path :
       checkpoint::checkpoints_to_rotate(checkpoint::complete_checkpoints(output_dir_), limit, best_model_checkpoint)) {
    log_->info("deleting older checkpoint " + path + " (save_total_limit " + std::to_string(limit) + ")");
    // Renamed aside first: the checkpoint leaves the listing at once, and whatever a failed or
    // killed delete leaves is no checkpoint-N for a resume to pick. A delete that fails
    // (permissions, an immutable file) costs disk space, not the run.
    const auto aside = (fs::path(output_dir_) / (".deleting-" + fs::path(path).filename().string())).string();
    try {
      std::error_code not_renamed;
      fs::rename(path, aside, not_renamed);
      if (not_renamed) fs::remove(fs::path(path) / checkpoint::kCompleteMarker);  // else at least not "complete"
      checkpoint::remove_tree(not_renamed ? path : aside);
    } catch (const std::exception& e) {
      log_->warn("could not delete " + path + " (" + std::string(e.what()).substr(0, 300) + "); training goes on");
    }
  }
}

void Trainer::train() {
  const auto& t = config_["training"];
  log_->info("training " + std::to_string(total_steps_) + " steps (" + std::to_string(steps_per_epoch_) +
             " per epoch) from step " + std::to_string(state_.global_step));
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  const auto first_step = state_.global_step;
  const auto first_tokens = state_.tokens_seen;
  auto window_tokens = state_.tokens_seen;
  last_lr_ = lr_at(state_.global_step);
  loss_window_ = torch::scalar_tensor(state_.loss_since_log, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  while (state_.global_step < total_steps_) {
    const auto loss = train_step();
    loss_window_ = loss_window_ + loss;
    ++state_.steps_since_log;
    state_.epoch = static_cast<double>(state_.global_step) / static_cast<double>(steps_per_epoch_);
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start).count();
    const double tokens_per_second = static_cast<double>(state_.tokens_seen - first_tokens) / std::max(elapsed, 1e-9);
    if (log_->draws_progress())
      log_->progress(state_.global_step, total_steps_, loss.item<double>(), last_lr_, tokens_per_second);
    if (state_.global_step % state_.logging_steps == 0) {
      state_.loss_since_log = loss_window_.item<double>();
      // One small allreduce per log, not per step: the mean loss over the window and the dp group.
      auto mean = torch::tensor({state_.loss_since_log / static_cast<double>(state_.steps_since_log)}, torch::kFloat64);
      mesh_->dp().allreduce(mean, comm::ReduceOp::kAvg);
      const double window = std::chrono::duration<double>(now - window_start).count();
      log_metrics({{"loss", round_to(mean.item<double>(), 4)},
                   {"grad_norm", last_grad_norm_.item<double>()},
                   {"learning_rate", last_lr_},
                   {"tokens_per_second",
                    round_to(static_cast<double>(state_.tokens_seen - window_tokens) / std::max(window, 1e-9), 1)}});
      window_tokens = state_.tokens_seen;
      state_.loss_since_log = 0;
      loss_window_ = torch::zeros_like(loss_window_);
      state_.steps_since_log = 0;
      window_start = now;
    }
    maybe_evaluate_and_save(state_.global_step % steps_per_epoch_ == 0);
    stop_if_signalled();
  }
  wait_for_async_save();
  log_->finish_progress();
  const double runtime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (t["load_best_model_at_end"].get<bool>() && !state_.best_model_checkpoint.empty() &&
      !checkpoint::is_complete_checkpoint(state_.best_model_checkpoint)) {
    log_->warn("load_best_model_at_end: the best checkpoint " + state_.best_model_checkpoint +
               " is gone: the model saved is the last step's");
  } else if (t["load_best_model_at_end"].get<bool>() && !state_.best_model_checkpoint.empty()) {
    comm::run_agreed(mesh_->world(), [&] { load_model_weights(checkpoint::CheckpointReader(state_.best_model_checkpoint)); });
    if (sharded_) sharded_->shards_updated();
    log_->info("loaded the best model from " + state_.best_model_checkpoint + " (" +
               config_["training"]["metric_for_best_model"].get<std::string>() + " " +
               std::to_string(state_.best_metric.value_or(0)) + ")");
  }
  const auto steps_run = state_.global_step - first_step;
  json summary = {{"train_runtime", round_to(runtime, 4)},
                  {"exposed_comm_fraction", round_to(exposed_comm_->seconds() / std::max(runtime, 1e-9), 4)},
               {"train_steps_per_second", round_to(static_cast<double>(steps_run) / std::max(runtime, 1e-9), 3)},
               {"train_tokens_per_second",
                round_to(static_cast<double>(state_.tokens_seen - first_tokens) / std::max(runtime, 1e-9), 1)}};
  summary.update(memory_and_traffic());
  if (checkpoints_saved_ > 0) {
    summary["checkpoints_saved"] = checkpoints_saved_;
    summary["checkpoint_blocking_seconds"] = round_to(checkpoint_blocking_seconds_, 4);
  }
  if (mesh_->tp_size() > 1) {
    // The tp group's f/g all-reduces (including eval's): what the bench compares with raw MPI.
    const auto tp = model_->tensor_parallel().stats();
    const double calls = static_cast<double>(std::max<std::int64_t>(tp.calls, 1));
    summary["tp_allreduce_fraction"] = round_to(tp.seconds / std::max(runtime, 1e-9), 4);
    summary["tp_allreduce_calls"] = tp.calls;
    summary["tp_allreduce_mean_bytes"] = round_to(static_cast<double>(tp.bytes) / calls, 1);
    summary["tp_allreduce_mean_us"] = round_to(tp.seconds / calls * 1e6, 1);
  }
  log_metrics(summary);
  if (mesh_->world().rank() == 0) write_loss_plot((fs::path(output_dir_) / "loss.svg").string(), state_.log_history);
}

}  // namespace mpitrain::train
