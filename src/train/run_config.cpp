// The run configuration: model, data, training (HF TrainingArguments names) and parallel sections, with overrides.
#include "src/train/run_config.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "src/train/config_checks.h"
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
    case Type::kNames: return "a list of names, one string, or null";
  }
  return "";
}

bool is_name_list(const json& value) {
  if (value.is_null() || value.is_string()) return true;
  if (!value.is_array()) return false;
  for (const auto& item : value)
    if (!item.is_string()) return false;
  return true;
}

// Checks a JSON value against the key's type; numbers given as ints are fine for floats.
json typed(const KeySpec& key, const json& value, const std::string& where) {
  const bool ok = (key.type == Type::kInt && value.is_number_integer()) ||
                  (key.type == Type::kFloat && value.is_number() && std::isfinite(value.get<double>())) ||
                  (key.type == Type::kBool && (value.is_boolean() || (value.is_null() && key.default_value.is_null()))) ||
                  (key.type == Type::kString && value.is_string()) ||
                  (key.type == Type::kObject && (value.is_object() || value.is_null())) ||
                  (key.type == Type::kPathOrBool && (value.is_string() || value.is_boolean())) ||
                  (key.type == Type::kNames && is_name_list(value));
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
      case Type::kNames: {  // q_proj,v_proj; all-linear stays one string (a string is PEFT's regex)
        if (text == "all-linear") return text;
        json names = json::array();
        std::size_t start = 0;
        while (start <= text.size()) {
          const auto comma = std::min(text.find(',', start), text.size());
          if (comma > start) names.push_back(text.substr(start, comma - start));
          start = comma + 1;
        }
        return names;
      }
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception&) {
    return fail();
  }
  return fail();
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
      throw ConfigError(where + "unknown section '" + section.key() + "' (sections: model, data, training, parallel, lora" +
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
  validate_run_config(config, [&](const std::string& key) { return from_command_line.count(key) ? "command line: " : where; });
  return config;
}

}  // namespace mpitrain::train
