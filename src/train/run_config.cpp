// The run configuration: model, data, training (HF TrainingArguments names) and parallel sections, with overrides.
#include "src/train/run_config.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "src/train/classification_metrics.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::train {

using nlohmann::json;
using Type = KeySpec::Type;

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

const KeySpec* find_key(const std::string& section, const std::string& name) {
  for (const auto& k : config_keys())
    if (k.name == name && (section.empty() || k.section == section)) return &k;
  return nullptr;
}

[[noreturn]] void unknown(const std::string& key, const std::string& where) {
  throw ConfigError(where + "unknown key '" + key + "' (did you mean '" + closest_key(key) + "'?)");
}

std::string type_name(Type t) {
  switch (t) {
    case Type::kInt: return "an integer";
    case Type::kFloat: return "a finite number";
    case Type::kBool: return "true or false";
    case Type::kString: return "a string";
    case Type::kObject: return "a JSON object";
    case Type::kPathOrBool: return "a path or true/false";
  }
  return "";
}

// Checks a JSON value against the key's type; numbers given as ints are fine for floats.
json typed(const KeySpec& key, const json& value, const std::string& where) {
  const bool ok = (key.type == Type::kInt && value.is_number_integer()) ||
                  (key.type == Type::kFloat && value.is_number() && std::isfinite(value.get<double>())) ||
                  (key.type == Type::kBool && (value.is_boolean() || (value.is_null() && key.default_value.is_null()))) ||
                  (key.type == Type::kString && value.is_string()) ||
                  (key.type == Type::kObject && (value.is_object() || value.is_null())) ||
                  (key.type == Type::kPathOrBool && (value.is_string() || value.is_boolean()));
  if (!ok) throw ConfigError(where + "key '" + key.dotted() + "' must be " + type_name(key.type) + ", got " + value.dump());
  return key.type == Type::kFloat ? json(value.get<double>()) : value;
}

// A command-line string converted to the key's type.
json from_text(const KeySpec& key, const std::string& text) {
  const std::string where = "command line: ";
  auto fail = [&]() -> json {
    throw ConfigError(where + "key '" + key.dotted() + "' must be " + type_name(key.type) + ", got '" + text + "'");
  };
  try {
    switch (key.type) {
      case Type::kInt: {
        std::size_t used = 0;
        const long long v = std::stoll(text, &used);
        return used == text.size() ? json(v) : fail();
      }
      case Type::kFloat: {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        return used == text.size() && std::isfinite(v) ? json(v) : fail();  // "nan" and "inf" parse
      }
      case Type::kBool:
        if (text == "true" || text == "1") return true;
        if (text == "false" || text == "0") return false;
        return fail();
      case Type::kString: return text;
      case Type::kObject: return checkpoint::parse_json(text, "command line");
      case Type::kPathOrBool:
        if (text == "true") return true;
        if (text == "false" || text.empty()) return false;
        return text;
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception&) {
    return fail();
  }
  return fail();
}

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

void validate(const json& c, const std::function<std::string(const std::string&)>& where) {
  const KeyChecks checks{c, where};
  check_training_values(c, checks);
  check_save_and_metric(c, checks);
  check_choices(c, checks);
  check_combinations(c, checks);
}

}  // namespace

std::string closest_key(const std::string& name) {
  const auto plain = name.substr(name.find('.') == std::string::npos ? 0 : name.find('.') + 1);
  std::string best;
  std::size_t best_distance = SIZE_MAX;
  for (const auto& k : config_keys()) {
    const auto d = std::min(edit_distance(plain, k.name), edit_distance(name, k.dotted()));
    if (d < best_distance) {
      best_distance = d;
      best = k.name;
    }
  }
  return best;
}

namespace {

json read_config_file(const std::string& path) {
  std::string text;
  try {
    text = checkpoint::read_regular_file(path);  // a FIFO in its place is an error, not a hang
  } catch (const std::exception& e) {
    throw ConfigError(path + ": cannot read config file (" + std::string(e.what()).substr(path.size() + 2) + ")");
  }
  json file;
  try {
    file = checkpoint::parse_json(text, path);
  } catch (const std::exception& e) {
    throw ConfigError(e.what());
  }
  if (!file.is_object()) throw ConfigError(path + ": the config must be a JSON object");
  return file;
}

// The file's sections over the defaults in `config`; `where` prefixes its errors.
void apply_file(json& config, const json& file, const std::string& where) {
  for (auto section = file.begin(); section != file.end(); ++section) {
    if (!config.contains(section.key())) {
      // A training key written at top level is a common slip: name it.
      throw ConfigError(where + "unknown section '" + section.key() + "' (sections: model, data, training, parallel" +
                        (find_key("", section.key()) ? "; '" + section.key() + "' belongs in '" +
                                                           find_key("", section.key())->section + "'"
                                                     : "") +
                        ")");
    }
    if (!section->is_object()) throw ConfigError(where + "section '" + section.key() + "' must be a JSON object");
    for (auto item = section->begin(); item != section->end(); ++item) {
      const auto* key = find_key(section.key(), item.key());
      if (!key) unknown(section.key() + "." + item.key(), where);
      config[key->section][key->name] = typed(*key, item.value(), where);
    }
  }
}

// Overrides through Boost.Program_options: each key under its plain and its dotted name.
// Returns the dotted names of the keys the command line set.
std::set<std::string> apply_overrides(json& config, const std::vector<std::string>& overrides) {
  namespace po = boost::program_options;
  po::options_description options;
  for (const auto& k : config_keys()) {
    options.add_options()(k.name.c_str(), po::value<std::string>(), k.help.c_str());
    options.add_options()(k.dotted().c_str(), po::value<std::string>(), k.help.c_str());
  }
  po::variables_map values;
  try {
    // No guessing: '--learning=0.1' must not quietly set learning_rate, nor '--lr' lr_scheduler_type.
    auto parsed = po::command_line_parser(overrides)
                      .options(options)
                      .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                      .allow_unregistered()
                      .run();
    for (const auto& unrecognized : po::collect_unrecognized(parsed.options, po::include_positional)) {
      auto name = unrecognized;
      name.erase(0, name.find_first_not_of('-'));
      name = name.substr(0, name.find('='));
      if (name.empty() || unrecognized.rfind("-", 0) != 0) throw ConfigError("command line: unexpected argument '" + unrecognized + "'");
      unknown(name, "command line: ");
    }
    po::store(parsed, values);
  } catch (const po::error& e) {
    throw ConfigError(std::string("command line: ") + e.what());
  }
  std::set<std::string> from_command_line;
  for (const auto& k : config_keys()) {
    for (const auto& name : {k.name, k.dotted()})
      if (values.count(name)) {
        config[k.section][k.name] = from_text(k, values[name].as<std::string>());
        from_command_line.insert(k.dotted());
      }
  }
  return from_command_line;
}

}  // namespace

json load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  const auto file = read_config_file(path);
  const std::string where = path + ": ";
  json config = json::object();
  for (const auto& k : config_keys()) config[k.section][k.name] = k.default_value;
  apply_file(config, file, where);
  const auto from_command_line = apply_overrides(config, overrides);
  validate(config, [&](const std::string& key) { return from_command_line.count(key) ? "command line: " : where; });
  return config;
}

}  // namespace mpitrain::train
