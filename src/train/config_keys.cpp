// The key table of the run config: every key with its section, type, default and meaning (docs/configuration.md is made from it).
#include "src/train/run_config.h"

namespace mpitrain::train {

namespace {

using Type = KeySpec::Type;

void add_model_and_data_keys(std::vector<KeySpec>& keys) {
  keys.insert(keys.end(), {
      {"model", "model_name_or_path", Type::kString, "", "start from this HF directory (its config.json defines the model)"},
      {"model", "config", Type::kObject, nullptr, "an HF config.json object for a model trained from scratch"},
      {"model", "init_seed", Type::kInt, 42, "seed of the from-scratch initialisation (and of a new task head)"},
      {"model", "config_overrides", Type::kObject, nlohmann::json::object(),
       "keys merged over model_name_or_path's config.json (num_labels, id2label, label2id), as from_pretrained's "
       "keyword arguments; a base checkpoint without this model's head gets a new one"},
      {"data", "train_file", Type::kString, "", "HDF5 file made by prepare-data (made from `source` when missing)"},
      {"data", "source", Type::kString, "", "text files (causal LM) or JSON lines (classification) to prepare"},
      {"data", "task", Type::kString, "causal_lm",
       "causal_lm (text files) | classification (JSON lines text, label) | sft (JSON lines prompt, completion)"},
      {"data", "completion_only_loss", Type::kBool, true, "sft: the loss is on the completion's tokens only"},
      {"data", "packing", Type::kBool, false,
       "sft: examples packed whole into max_length rows (best-fit decreasing); each attends only to itself and "
       "numbers its positions from 0, so the loss is what the examples give unpacked"},
      {"data", "seq_len", Type::kInt, 128, "tokens per causal-LM training window"},
      {"data", "max_length", Type::kInt, 128, "tokens per classification or prompt/completion row (longer ones are cut)"},
      {"data", "pad_to_max_length", Type::kBool, false,
       "rows: every batch padded to max_length; false pads each batch to its longest row (DataCollatorWithPadding)"},
      {"data", "eval_every", Type::kInt, 10, "every n-th document goes to the eval split when preparing"},
      {"data", "shuffle", Type::kBool, true, "shuffle the training samples every epoch"},
      {"data", "tokenizer_name_or_path", Type::kString, "",
       "an HF tokenizer directory (tokenizer.json): data.source is tokenized with it and its files are saved with "
       "the model; empty: model_name_or_path's own tokenizer where it has one, else the byte tokenizer"},
  });
}

// Hugging Face TrainingArguments names and defaults, then this project's own.
void add_training_keys(std::vector<KeySpec>& keys) {
  keys.insert(keys.end(), {
      {"training", "output_dir", Type::kString, "", "where checkpoints and the final model go"},
      {"training", "num_train_epochs", Type::kFloat, 3.0, ""},
      {"training", "max_steps", Type::kInt, -1, "overrides num_train_epochs when >= 0; 0 re-saves the start model"},
      {"training", "per_device_train_batch_size", Type::kInt, 8, ""},
      {"training", "per_device_eval_batch_size", Type::kInt, 8, ""},
      {"training", "gradient_accumulation_steps", Type::kInt, 1, ""},
      {"training", "learning_rate", Type::kFloat, 5e-5, ""},
      {"training", "weight_decay", Type::kFloat, 0.0, ""},
      {"training", "adam_beta1", Type::kFloat, 0.9, ""},
      {"training", "adam_beta2", Type::kFloat, 0.999, ""},
      {"training", "adam_epsilon", Type::kFloat, 1e-8, ""},
      {"training", "max_grad_norm", Type::kFloat, 1.0, "0 disables clipping"},
      {"training", "lr_scheduler_type", Type::kString, "linear", "linear | cosine | constant | constant_with_warmup"},
      {"training", "warmup_steps", Type::kInt, 0, ""},
      {"training", "warmup_ratio", Type::kFloat, 0.0, ""},
      {"training", "logging_steps", Type::kInt, 500, ""},
      {"training", "logging_strategy", Type::kString, "steps", "steps | epoch | no: when the training loss is logged"},
      {"training", "logging_first_step", Type::kBool, false, "log after the first step too"},
      {"training", "include_num_input_tokens_seen", Type::kPathOrBool, "no",
       "no | all (every input id, padding too) | non_padding (true: all): num_input_tokens_seen over every "
       "dp rank in each log line and trainer_state.json"},
      {"training", "eval_on_start", Type::kBool, false, "evaluate once before the first step (a sanity check)"},
      {"training", "report_to", Type::kString, "none", "none | tensorboard (all: tensorboard): rank 0 writes a TensorBoard event file"},
      {"training", "logging_dir", Type::kString, "",
       "TensorBoard's directory; empty: <output_dir>/runs/<Mon><dd>_<HH-MM-SS>_<host> as transformers, kept by a resume"},
      {"training", "eval_strategy", Type::kString, "no", "no | steps | epoch"},
      {"training", "eval_steps", Type::kInt, 0, "defaults to logging_steps"},
      {"training", "save_strategy", Type::kString, "steps", "no | steps | epoch | best"},
      {"training", "save_steps", Type::kInt, 500, ""},
      {"training", "save_total_limit", Type::kInt, 0, "0 keeps every checkpoint; the best is never deleted"},
      {"training", "overwrite_output_dir", Type::kBool, false,
       "start over in an output_dir holding an earlier run's checkpoints, deleting them first (without it, such a start must resume)"},
      {"training", "load_best_model_at_end", Type::kBool, false, ""},
      {"training", "metric_for_best_model", Type::kString, "loss", "an eval metric name (eval_ prefix optional)"},
      {"training", "greater_is_better", Type::kBool, nullptr,
       "null: true unless metric_for_best_model ends in loss (as transformers decides) or is perplexity"},
      {"training", "save_only_model", Type::kBool, false, "checkpoints without optimizer, scheduler and RNG state"},
      {"training", "seed", Type::kInt, 42, ""},
      {"training", "device", Type::kString, "cpu", "cpu | cuda (one GPU per local rank, NCCL collectives; needs a CUDA LibTorch build)"},
      {"training", "bf16", Type::kBool, false,
       "bfloat16 compute with float32 master weights (autocast, in evaluation too, as HF's Trainer; under sharding, "
       "bfloat16 parameters and gradients)"},
      {"training", "cpu_fused_kernels", Type::kBool, true,
       "on the CPU: causal attention, RMSNorm, SwiGLU and RoPE as fused passes (false: transformers' eager ATen ops)"},
      {"training", "gradient_checkpointing", Type::kBool, false,
       "recompute each layer's activations in backward instead of keeping them (less memory, about one more forward per step)"},
      {"training", "resume_from_checkpoint", Type::kPathOrBool, false, "a checkpoint directory, true for the latest, or auto: the latest if there is one (requeued jobs)"},
      {"training", "max_shard_size", Type::kString, "5GB", "shard saved weights above this size"},
      {"training", "save_mode", Type::kString, "parallel",
       "gather | parallel | sharded: how checkpoint weights are written (the final model is always an HF directory)"},
      {"training", "async_save", Type::kBool, false,
       "checkpoints are copied to host memory and written by a background thread while training goes on"},
      {"training", "async_save_low_priority", Type::kBool, false,
       "the background writer runs at nice +10 in the idle I/O class (for GPU nodes, where training needs few cores)"},
      {"training", "profile_steps", Type::kInt, 0,
       "profile N steps after the first two: rank 0 writes the time by operation to output_dir/profile.txt (0: off)"},
      {"training", "local_save_steps", Type::kInt, 0,
       "every N steps each rank's state into node-local memory, with replicas on partner ranks (0: off)"},
      {"training", "local_save_dir", Type::kString, "/dev/shm", "node-local tmpfs the local checkpoints go to"},
      {"training", "local_replicas", Type::kInt, 2, "copies of each rank's local checkpoint: its own and replicas on other nodes"},
      {"training", "local_save_max_size", Type::kString, "",
       "the local checkpoints' budget per node (e.g. 8GB; default: local_save_dir's free space)"},
      {"training", "read_once", Type::kString, "auto",
       "true: blocks the dp replicas share are read by one of them and broadcast; false: every rank reads its own; "
       "auto: true where the dp ranks are on several hosts"},
      {"training", "save_io", Type::kString, "auto",
       "parallel mode: mpiio (collective writes through subarray views) | posix (pwrite) | auto (mpiio for strided blocks)"},
      {"training", "gather_window_mb", Type::kFloat, 64.0, "rank 0's receive window in gather mode"},
      {"training", "save_dtype", Type::kString, "", "float32 | bfloat16 | float16 (default: the weights' dtype)"},
      {"training", "progress_bar", Type::kBool, true, "rank 0 draws a progress bar when the console is a terminal"},
      {"training", "save_on_signals", Type::kString, "USR1,TERM",
       "signals (USR1, USR2, TERM, INT) that save the last completed step and stop with exit status 75 (agreed at steps, micro-batches, every 4 eval batches)"},
      {"training", "verify_checksums", Type::kBool, true,
       "check every file of a checkpoint against the checksums saved with it before resuming"},
      {"training", "post_save_command", Type::kString, "",
       "run by rank 0 after each completed save, with the directory as its argument (failures are logged)"},
  });
}

void add_parallel_keys(std::vector<KeySpec>& keys) {
  keys.insert(keys.end(), {
      {"parallel", "tensor_parallel_size", Type::kInt, 1, "ranks that split each layer (Megatron-style); world = dp x tp"},
      {"parallel", "bucket_size_mb", Type::kFloat, 4.0, "gradient allreduce (zero1/2: reduce-scatter) bucket size"},
      {"parallel", "sharding", Type::kString, "none",
       "none | zero1 (optimizer state sharded over dp) | zero2 (+ gradients) | zero3 (+ parameters)"},
      {"parallel", "zero3_prefetch", Type::kInt, 1, "zero3: parameter groups all-gathered ahead of the compute"},
      {"parallel", "collective_timeout_s", Type::kFloat, 1800.0, "a collective slower than this ends the job"},
      {"parallel", "torch_threads", Type::kInt, 0, "0: the cores the rank is bound to, else cores per local rank; at most the host's cores"},
  });
}

// PEFT's LoraConfig names and defaults; LoRA is on where target_modules or adapter_name_or_path is set.
void add_lora_keys(std::vector<KeySpec>& keys) {
  keys.insert(keys.end(), {
      {"lora", "target_modules", Type::kNames, nullptr,
       "modules to adapt, as PEFT matches them (q_proj, v_proj, ...: a name or its last parts; one string: a regular "
       "expression over the whole name; all-linear: every linear layer but the output head); null: no LoRA"},
      {"lora", "r", Type::kInt, 8, "the rank of the update"},
      {"lora", "lora_alpha", Type::kFloat, 8.0, "the update is scaled by lora_alpha / r"},
      {"lora", "lora_dropout", Type::kFloat, 0.0, "dropout on the adapted layers' inputs, in training"},
      {"lora", "use_rslora", Type::kBool, false, "scale by lora_alpha / sqrt(r) (rank-stabilised LoRA)"},
      {"lora", "exclude_modules", Type::kNames, nullptr, "modules never adapted, matched as target_modules"},
      {"lora", "modules_to_save", Type::kNames, nullptr,
       "modules trained whole and saved in the adapter (a classifier's score or classifier head is added, as PEFT does)"},
      {"lora", "init_lora_weights", Type::kBool, true, "new adapters: A Kaiming-uniform, B zero (false: B random too)"},
      {"lora", "bias", Type::kString, "none", "none (PEFT's default; LoRA biases are not implemented)"},
      {"lora", "adapter_name_or_path", Type::kString, "",
       "continue training this PEFT adapter directory (its adapter_config.json sets the LoRA keys)"},
      {"lora", "merge_at_end", Type::kBool, false,
       "also write the merged model (W + scale B A) as an HF directory in output_dir/merged"},
  });
}

}  // namespace

const std::vector<KeySpec>& config_keys() {
  static const std::vector<KeySpec> keys = [] {
    std::vector<KeySpec> all;
    add_model_and_data_keys(all);
    add_training_keys(all);
    add_parallel_keys(all);
    add_lora_keys(all);
    return all;
  }();
  return keys;
}

}  // namespace mpitrain::train
