// The validated run config as typed structs, built once at the start: the Trainer's components read fields, not JSON keys.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/checkpoint/assign_writers.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/parallel/sharded_data_parallel.h"
#include "src/models/lora_settings.h"

namespace mpitrain::train {

struct ModelArguments {
  std::string model_name_or_path;  // an HF directory to start from, or empty
  nlohmann::json config;           // else an HF config.json object to build from scratch
  std::uint64_t init_seed = 42;
  // Merged over model_name_or_path's config.json (num_labels, id2label, label2id): a new head.
  nlohmann::json config_overrides = nlohmann::json::object();

  // The HF config the model is built from: `config`, or model_name_or_path's config.json with
  // config_overrides merged over it; null where that file is missing (from_pretrained names
  // it). `source` receives what messages call it. Throws CheckpointError for an unreadable file.
  nlohmann::json built_config(std::string* source = nullptr) const;
};

struct DataArguments {
  std::string train_file, source, tokenizer_name_or_path;
  bool classification = false;  // task: classification, else causal_lm or sft
  bool completion_only_loss = true;  // sft
  bool packing = false;              // sft: examples packed into max_length rows
  std::string task;             // as written, for messages and the preparation record
  std::int64_t seq_len = 128, max_length = 128;
  int eval_every = 10;
  bool shuffle = true;
  bool pad_to_max_length = false;  // rows: batches keep the whole max_length
};

enum class IntervalStrategy { kNo, kSteps, kEpoch, kBest };  // eval_strategy has no kBest

// The kinds of resume_from_checkpoint: false, true (the latest), "auto" (the latest if any), a path.
struct ResumeFrom {
  enum class Kind { kNone, kLatest, kLatestIfAny, kPath } kind = Kind::kNone;
  std::string path;  // kPath
};

// Hugging Face TrainingArguments names and defaults, plus this project's save settings.
struct TrainingArguments {
  std::string output_dir;
  double num_train_epochs = 3;
  std::int64_t max_steps = -1;
  std::int64_t per_device_train_batch_size = 8, per_device_eval_batch_size = 8, gradient_accumulation_steps = 1;
  double learning_rate = 5e-5, weight_decay = 0, adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  double max_grad_norm = 1;
  std::string lr_scheduler_type = "linear";
  std::int64_t warmup_steps = 0;
  double warmup_ratio = 0;
  std::int64_t logging_steps = 500;
  IntervalStrategy logging_strategy = IntervalStrategy::kSteps;
  bool logging_first_step = false, eval_on_start = false;
  bool report_to_tensorboard = false;
  std::string logging_dir;  // empty: transformers' default under output_dir
  enum class TokenCount { kNo, kAll, kNonPadding } num_input_tokens_seen = TokenCount::kNo;
  IntervalStrategy eval_strategy = IntervalStrategy::kNo;
  std::int64_t eval_steps = 0;  // 0: logging_steps
  IntervalStrategy save_strategy = IntervalStrategy::kSteps;
  std::int64_t save_steps = 500, save_total_limit = 0;
  bool overwrite_output_dir = false, load_best_model_at_end = false;
  std::string metric_for_best_model = "loss";  // as written (the eval_ prefix optional)
  bool greater_is_better = false, save_only_model = false;
  std::uint64_t seed = 42;
  std::string device = "cpu";
  bool bf16 = false, gradient_checkpointing = false;
  bool cpu_fused_kernels = true;  // models::fused::set_cpu_fused_kernels
  ResumeFrom resume_from_checkpoint;
  std::uint64_t max_shard_size = 5'000'000'000;  // bytes
  std::string save_dtype;                        // empty: the weights' dtype
  checkpoint::SaveMode save_mode = checkpoint::SaveMode::kParallel;
  checkpoint::SaveIo save_io = checkpoint::SaveIo::kAuto;
  bool async_save = false;
  bool async_save_low_priority = false;
  std::int64_t profile_steps = 0;  // step_profile: steps profiled after the first two (0: off)
  // The local tier (local_checkpointer): every local_save_steps steps (0: off), local_replicas
  // copies of each rank's state in local_save_dir, within local_save_max_size bytes per node
  // (0: the directory's free space).
  std::int64_t local_save_steps = 0;
  std::string local_save_dir = "/dev/shm";
  int local_replicas = 2;
  std::uint64_t local_save_max_size = 0;
  std::string read_once = "auto";  // loads: whether the dp replicas share the reading: auto | true | false
  std::uint64_t gather_window_bytes = 64u << 20;
  bool progress_bar = true;
  std::string save_on_signals = "USR1,TERM";
  bool verify_checksums = true;
  std::string post_save_command;

  bool saves_checkpoints() const { return save_strategy != IntervalStrategy::kNo; }
  bool evaluates() const {
    return eval_strategy != IntervalStrategy::kNo || save_strategy == IntervalStrategy::kBest || eval_on_start;
  }
  std::string metric_key() const;  // metric_for_best_model with HF's eval_ prefix
};

struct ParallelArguments {
  int tensor_parallel_size = 1;
  std::size_t bucket_bytes = 4u << 20;
  parallel::ShardingStage sharding = parallel::ShardingStage::kNone;
  int zero3_prefetch = 1;

  bool sharded() const { return sharding != parallel::ShardingStage::kNone; }
};

// LoRA fine-tuning: on where lora.target_modules or lora.adapter_name_or_path is set.
struct LoraArguments {
  bool enabled = false;
  // From the run config's lora section (task_type from data.task; a classifier's heads added to
  // modules_to_save as PEFT adds them); an adapter directory to continue brings its own.
  models::LoraSettings settings;
  std::string adapter_name_or_path;
  bool merge_at_end = false;
};

struct RunArguments {
  ModelArguments model;
  DataArguments data;
  TrainingArguments training;
  ParallelArguments parallel;
  LoraArguments lora;
  nlohmann::json config;  // the whole validated config, as training_args.json records it

  // `config` is load_run_config's result (validated, defaults filled).
  static RunArguments from_config(const nlohmann::json& config);
};

}  // namespace mpitrain::train
