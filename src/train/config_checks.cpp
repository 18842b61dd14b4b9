// The checks of a run config's values and combinations, each failure one line naming the key (and the file or "command line").
#include "src/train/config_checks.h"

#include <regex>
#include <set>

#include "runtime/checkpoint/hf_index.h"
#include "src/train/classification_metrics.h"
#include "src/train/run_config.h"

namespace mpitrain::train {

using nlohmann::json;

namespace {

// Checks of one validated config; `where(key)`: "command line: " for a key given as an option,
// else the config file's path.
struct KeyChecks {
  const json& c;
  const std::function<std::string(const std::string&)>& where;

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw ConfigError(where(key) + "key '" + key + "' " + problem);
  }
  void positive(const std::string& section, const std::string& name) const {
    if (c[section][name].get<double>() <= 0) fail(section + "." + name, "must be positive, got " + c[section][name].dump());
  }
  void non_negative(const std::string& section, const std::string& name) const {
    if (c[section][name].get<double>() < 0)
      fail(section + "." + name, "must not be negative, got " + c[section][name].dump());
  }
  void one_of(const std::string& section, const std::string& name, const std::set<std::string>& allowed) const {
    const auto value = c[section][name].get<std::string>();
    if (allowed.count(value)) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(section + "." + name, "must be one of " + list + ", got '" + value + "'");
  }
};

void check_training_values(const json& c, const KeyChecks& check) {
  for (const char* k : {"per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                        "logging_steps", "save_steps"})
    check.positive("training", k);
  for (const char* k : {"learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm", "warmup_steps",
                        "warmup_ratio", "save_total_limit", "eval_steps", "num_train_epochs"})
    check.non_negative("training", k);
  if (c["training"]["max_steps"].get<long long>() < -1) check.fail("training.max_steps", "must be -1 (use epochs) or >= 0");
  for (const char* k : {"adam_beta1", "adam_beta2"}) {
    const auto beta = c["training"][k].get<double>();
    if (beta < 0 || beta >= 1) check.fail(std::string("training.") + k, "must be in [0, 1), got " + c["training"][k].dump());
  }
  if (c["training"]["warmup_ratio"].get<double>() > 1)
    check.fail("training.warmup_ratio", "must be in [0, 1], got " + c["training"]["warmup_ratio"].dump());
  check.non_negative("training", "local_save_steps");
  check.non_negative("training", "profile_steps");
  check.positive("training", "local_replicas");
  if (const auto budget = c["training"]["local_save_max_size"].get<std::string>(); !budget.empty()) try {
      checkpoint::parse_shard_size(budget);
    } catch (const std::invalid_argument& e) {
      check.fail("training.local_save_max_size", std::string("is invalid: ") + e.what());
    }
  // Checked here, not at the first checkpoint or evaluation hours into the run.
  try {
    checkpoint::parse_shard_size(c["training"]["max_shard_size"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    check.fail("training.max_shard_size", std::string("is invalid: ") + e.what());
  }
}

void check_save_and_metric(const json& c, const KeyChecks& check) {
  if (!c["training"]["save_dtype"].get<std::string>().empty())  // empty: as trained
    check.one_of("training", "save_dtype", {"float32", "fp32", "bfloat16", "bf16", "float16", "fp16"});
  if (c["training"]["eval_strategy"] != "no" || c["training"]["save_strategy"] == "best") {  // where it is used
    auto metric = c["training"]["metric_for_best_model"].get<std::string>();
    if (metric.rfind("eval_", 0) == 0) metric = metric.substr(5);
    const bool classification = c["data"]["task"] == "classification";
    std::vector<std::string> known = {"loss"};
    if (classification)
      known.insert(known.end(), classification_metric_names().begin(), classification_metric_names().end());
    else
      known.push_back("perplexity");
    if (std::find(known.begin(), known.end(), metric) == known.end()) {
      std::string names;
      for (const auto& name : known) names += (names.empty() ? "" : ", ") + name;
      check.fail("training.metric_for_best_model", "'" + c["training"]["metric_for_best_model"].get<std::string>() +
                                                 "' is not an eval metric of this task (" + names + ")");
    }
  }
}

void check_choices(const json& c, const KeyChecks& check) {
  check.positive("data", "seq_len");
  check.positive("data", "max_length");
  check.positive("parallel", "tensor_parallel_size");
  check.positive("parallel", "bucket_size_mb");
  check.non_negative("parallel", "collective_timeout_s");
  check.non_negative("parallel", "torch_threads");
  check.non_negative("parallel", "zero3_prefetch");
  check.one_of("parallel", "sharding", {"none", "zero1", "zero2", "zero3"});
  check.one_of("data", "task", {"causal_lm", "classification", "sft"});
  check.one_of("training", "lr_scheduler_type", {"linear", "cosine", "constant", "constant_with_warmup"});
  check.one_of("training", "eval_strategy", {"no", "steps", "epoch"});
  check.one_of("training", "logging_strategy", {"no", "steps", "epoch"});
  check.one_of("training", "report_to", {"none", "tensorboard", "all"});
  if (c["training"]["include_num_input_tokens_seen"].is_string())
    check.one_of("training", "include_num_input_tokens_seen", {"no", "all", "non_padding"});
  check.one_of("training", "save_strategy", {"no", "steps", "epoch", "best"});
  check.one_of("training", "save_mode", {"gather", "parallel", "sharded"});
  check.one_of("training", "save_io", {"auto", "mpiio", "posix"});
  check.one_of("training", "device", {"cpu", "cuda"});
  {
    std::stringstream signals(c["training"]["save_on_signals"].get<std::string>());
    std::string name;
    while (std::getline(signals, name, ','))
      if (!name.empty() && !std::set<std::string>{"USR1", "USR2", "TERM", "INT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT"}.count(name))
        check.fail("training.save_on_signals", "names an unknown signal '" + name + "' (USR1, USR2, TERM, INT)");
  }
  check.positive("training", "gather_window_mb");
}

void check_combinations(const json& c, const KeyChecks& check) {
  if (c["training"]["output_dir"].get<std::string>().empty()) check.fail("training.output_dir", "is required");
  const bool has_model = !c["model"]["model_name_or_path"].get<std::string>().empty() || c["model"]["config"].is_object();
  if (!has_model) check.fail("model.config", "or model.model_name_or_path is required");
  if (c["data"]["packing"].get<bool>() && c["data"]["task"] != "sft")
    check.fail("data.packing", "packs prompt/completion examples: it needs data.task 'sft' (text is a stream already)");
  if (c["training"]["save_strategy"] == "best" && c["training"]["eval_strategy"] == "no")
    check.fail("training.save_strategy", "'best' needs an eval_strategy other than 'no'");
  if (c["training"]["load_best_model_at_end"].get<bool>()) {
    if (c["training"]["eval_strategy"] == "no")
      check.fail("training.load_best_model_at_end", "needs an eval_strategy other than 'no'");
    if (c["training"]["save_strategy"] != "best" && c["training"]["save_strategy"] != c["training"]["eval_strategy"])
      check.fail("training.load_best_model_at_end", "needs save_strategy equal to eval_strategy (or 'best'), as in transformers");
  }
}

// LoRA's keys where LoRA is on (the adapter's layers and files are checked when the model is built).
void check_lora(const json& c, const KeyChecks& check) {
  const auto& l = c["lora"];
  if (l["target_modules"].is_null() && l["adapter_name_or_path"].get<std::string>().empty()) {
    if (l["merge_at_end"].get<bool>()) check.fail("lora.merge_at_end", "needs LoRA: set lora.target_modules");
    return;
  }
  check.positive("lora", "r");
  const double dropout = l["lora_dropout"].get<double>();
  if (dropout < 0 || dropout >= 1) check.fail("lora.lora_dropout", "must be in [0, 1), got " + l["lora_dropout"].dump());
  check.one_of("lora", "bias", {"none"});
  if (l["target_modules"].is_string() && l["target_modules"] != "all-linear") {
    try {
      std::regex check(l["target_modules"].get<std::string>());
    } catch (const std::regex_error&) {
      check.fail("lora.target_modules", "'" + l["target_modules"].get<std::string>() + "' is not a regular expression");
    }
  }
  if (l["target_modules"].is_array() && l["target_modules"].empty())
    check.fail("lora.target_modules", "is empty: name the modules to adapt (q_proj, v_proj, ... or all-linear)");
  if (c["parallel"]["sharding"] == "zero3" && l["merge_at_end"].get<bool>())
    check.fail("lora.merge_at_end", "with parallel.sharding zero3 is not implemented yet (the base lives as shards "
                                    "there); merge the saved adapter with `mpitrain convert BASE OUT --adapter DIR`");
}

}  // namespace

void validate_run_config(const json& c, const std::function<std::string(const std::string&)>& where) {
  const KeyChecks checks{c, where};
  check_lora(c, checks);
  check_training_values(c, checks);
  check_save_and_metric(c, checks);
  check_choices(c, checks);
  check_combinations(c, checks);
}

}  // namespace mpitrain::train
