// The validated run config as typed structs, built once at the start: the Trainer's components read fields, not JSON keys.
#include "src/train/training_arguments.h"

#include <filesystem>

#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/json_file.h"

namespace mpitrain::train {

namespace {

IntervalStrategy interval_strategy(const std::string& name) {
  if (name == "steps") return IntervalStrategy::kSteps;
  if (name == "epoch") return IntervalStrategy::kEpoch;
  if (name == "best") return IntervalStrategy::kBest;
  return IntervalStrategy::kNo;  // load_run_config accepted only these
}

ResumeFrom resume_from(const nlohmann::json& value) {
  if (value.is_boolean()) return {value.get<bool>() ? ResumeFrom::Kind::kLatest : ResumeFrom::Kind::kNone, ""};
  const auto path = value.get<std::string>();
  if (path.empty()) return {};
  if (path == "auto") return {ResumeFrom::Kind::kLatestIfAny, ""};
  return {ResumeFrom::Kind::kPath, path};
}

ModelArguments model_arguments(const nlohmann::json& m) {
  const auto& overrides = m["config_overrides"];
  return {m["model_name_or_path"].get<std::string>(), m["config"], m["init_seed"].get<std::uint64_t>(),
          overrides.is_object() ? overrides : nlohmann::json::object()};
}

DataArguments data_arguments(const nlohmann::json& d) {
  DataArguments a;
  a.train_file = d["train_file"].get<std::string>();
  a.source = d["source"].get<std::string>();
  a.tokenizer_name_or_path = d["tokenizer_name_or_path"].get<std::string>();
  a.task = d["task"].get<std::string>();
  a.classification = a.task == "classification";
  a.completion_only_loss = d["completion_only_loss"].get<bool>();
  a.packing = d["packing"].get<bool>();
  a.seq_len = d["seq_len"].get<std::int64_t>();
  a.max_length = d["max_length"].get<std::int64_t>();
  a.eval_every = d["eval_every"].get<int>();
  a.shuffle = d["shuffle"].get<bool>();
  a.pad_to_max_length = d["pad_to_max_length"].get<bool>();
  return a;
}

TrainingArguments training_arguments(const nlohmann::json& t) {
  TrainingArguments a;
  a.output_dir = t["output_dir"].get<std::string>();
  a.num_train_epochs = t["num_train_epochs"].get<double>();
  a.max_steps = t["max_steps"].get<std::int64_t>();
  a.per_device_train_batch_size = t["per_device_train_batch_size"].get<std::int64_t>();
  a.per_device_eval_batch_size = t["per_device_eval_batch_size"].get<std::int64_t>();
  a.gradient_accumulation_steps = t["gradient_accumulation_steps"].get<std::int64_t>();
  a.learning_rate = t["learning_rate"].get<double>();
  a.weight_decay = t["weight_decay"].get<double>();
  a.adam_beta1 = t["adam_beta1"].get<double>();
  a.adam_beta2 = t["adam_beta2"].get<double>();
  a.adam_epsilon = t["adam_epsilon"].get<double>();
  a.max_grad_norm = t["max_grad_norm"].get<double>();
  a.lr_scheduler_type = t["lr_scheduler_type"].get<std::string>();
  a.warmup_steps = t["warmup_steps"].get<std::int64_t>();
  a.warmup_ratio = t["warmup_ratio"].get<double>();
  a.logging_steps = t["logging_steps"].get<std::int64_t>();
  a.logging_strategy = interval_strategy(t["logging_strategy"].get<std::string>());
  a.logging_first_step = t["logging_first_step"].get<bool>();
  a.eval_on_start = t["eval_on_start"].get<bool>();
  a.report_to_tensorboard = t["report_to"] != "none";
  a.logging_dir = t["logging_dir"].get<std::string>();
  const auto& tokens = t["include_num_input_tokens_seen"];
  using TokenCount = TrainingArguments::TokenCount;
  a.num_input_tokens_seen = tokens.is_boolean() ? (tokens.get<bool>() ? TokenCount::kAll : TokenCount::kNo)
                            : tokens == "all"   ? TokenCount::kAll
                            : tokens == "non_padding" ? TokenCount::kNonPadding
                                                      : TokenCount::kNo;
  a.eval_strategy = interval_strategy(t["eval_strategy"].get<std::string>());
  a.eval_steps = t["eval_steps"].get<std::int64_t>();
  a.save_strategy = interval_strategy(t["save_strategy"].get<std::string>());
  a.save_steps = t["save_steps"].get<std::int64_t>();
  a.save_total_limit = t["save_total_limit"].get<std::int64_t>();
  a.overwrite_output_dir = t["overwrite_output_dir"].get<bool>();
  a.load_best_model_at_end = t["load_best_model_at_end"].get<bool>();
  a.metric_for_best_model = t["metric_for_best_model"].get<std::string>();
  const auto& metric = a.metric_for_best_model;
  // transformers' rule (greater unless the name ends in loss), and perplexity, lower as a loss is.
  const bool loss = (metric.size() >= 4 && metric.compare(metric.size() - 4, 4, "loss") == 0) ||
                    metric == "perplexity" || metric == "eval_perplexity";
  a.greater_is_better = t["greater_is_better"].is_null() ? !loss : t["greater_is_better"].get<bool>();
  a.save_only_model = t["save_only_model"].get<bool>();
  a.seed = t["seed"].get<std::uint64_t>();
  a.device = t["device"].get<std::string>();
  a.bf16 = t["bf16"].get<bool>();
  a.cpu_fused_kernels = t["cpu_fused_kernels"].get<bool>();
  a.gradient_checkpointing = t["gradient_checkpointing"].get<bool>();
  a.resume_from_checkpoint = resume_from(t["resume_from_checkpoint"]);
  a.max_shard_size = checkpoint::parse_shard_size(t["max_shard_size"].get<std::string>());
  a.save_dtype = t["save_dtype"].get<std::string>();
  a.local_save_steps = t["local_save_steps"].get<std::int64_t>();
  a.profile_steps = t["profile_steps"].get<std::int64_t>();
  a.local_save_dir = t["local_save_dir"].get<std::string>();
  a.local_replicas = t["local_replicas"].get<int>();
  const auto budget = t["local_save_max_size"].get<std::string>();
  a.local_save_max_size = budget.empty() ? 0 : checkpoint::parse_shard_size(budget);
  a.save_mode = checkpoint::parse_save_mode(t["save_mode"].get<std::string>());
  a.save_io = checkpoint::parse_save_io(t["save_io"].get<std::string>());
  a.async_save = t["async_save"].get<bool>();
  a.async_save_low_priority = t["async_save_low_priority"].get<bool>();
  a.read_once = t["read_once"].get<std::string>();
  if (a.read_once != "auto" && a.read_once != "true" && a.read_once != "false")
    throw std::invalid_argument("read_once must be auto, true or false, not '" + a.read_once + "'");
  a.gather_window_bytes = static_cast<std::uint64_t>(t["gather_window_mb"].get<double>() * (1 << 20));
  a.progress_bar = t["progress_bar"].get<bool>();
  a.save_on_signals = t["save_on_signals"].get<std::string>();
  a.verify_checksums = t["verify_checksums"].get<bool>();
  a.post_save_command = t["post_save_command"].get<std::string>();
  return a;
}

ParallelArguments parallel_arguments(const nlohmann::json& p) {
  ParallelArguments a;
  a.tensor_parallel_size = p["tensor_parallel_size"].get<int>();
  a.bucket_bytes = static_cast<std::size_t>(p["bucket_size_mb"].get<double>() * (1 << 20));
  a.sharding = parallel::parse_sharding_stage(p["sharding"].get<std::string>());
  a.zero3_prefetch = p["zero3_prefetch"].get<int>();
  return a;
}

// A names key: a list, or one string as a list of one (target_modules reads its string itself).
std::vector<std::string> names(const nlohmann::json& value) {
  if (value.is_string()) return {value.get<std::string>()};
  std::vector<std::string> out;
  if (value.is_array())
    for (const auto& v : value) out.push_back(v.get<std::string>());
  return out;
}

LoraArguments lora_arguments(const nlohmann::json& l, const DataArguments& data) {
  LoraArguments a;
  a.adapter_name_or_path = l["adapter_name_or_path"].get<std::string>();
  a.merge_at_end = l["merge_at_end"].get<bool>();
  a.enabled = !l["target_modules"].is_null() || !a.adapter_name_or_path.empty();
  auto& s = a.settings;
  s.r = l["r"].get<std::int64_t>();
  s.lora_alpha = l["lora_alpha"].get<double>();
  s.lora_dropout = l["lora_dropout"].get<double>();
  s.use_rslora = l["use_rslora"].get<bool>();
  s.init_lora_weights = l["init_lora_weights"].get<bool>();
  const auto& targets = l["target_modules"];
  if (targets.is_string()) {  // PEFT: one string is all-linear or a regular expression
    s.all_linear = targets == "all-linear";
    if (!s.all_linear) s.target_regex = targets.get<std::string>();
  } else {
    s.target_modules = names(targets);
  }
  s.exclude_modules = names(l["exclude_modules"]);
  s.modules_to_save = names(l["modules_to_save"]);
  s.task_type = data.classification ? "SEQ_CLS" : "CAUSAL_LM";
  if (data.classification)
    for (const char* head : {"classifier", "score"}) s.modules_to_save.push_back(head);
  return a;  // checked by the run config's checks, and again as the adapters are made (agreed)
}

}  // namespace

std::string TrainingArguments::metric_key() const {
  return metric_for_best_model.rfind("eval_", 0) == 0 ? metric_for_best_model : "eval_" + metric_for_best_model;
}

nlohmann::json ModelArguments::built_config(std::string* source) const {
  if (model_name_or_path.empty()) {
    if (source) *source = "model.config";
    return config;
  }
  const auto path = (std::filesystem::path(model_name_or_path) / "config.json").string();
  if (source) *source = path;
  if (!std::filesystem::is_regular_file(path)) return nullptr;
  auto merged = checkpoint::read_json_file(path);
  if (merged.is_object() && config_overrides.is_object()) merged.update(config_overrides);
  return merged;
}

RunArguments RunArguments::from_config(const nlohmann::json& config) {
  RunArguments a;
  a.model = model_arguments(config["model"]);
  a.data = data_arguments(config["data"]);
  a.training = training_arguments(config["training"]);
  a.parallel = parallel_arguments(config["parallel"]);
  a.lora = lora_arguments(config["lora"], a.data);
  a.config = config;
  return a;
}

}  // namespace mpitrain::train
