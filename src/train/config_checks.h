// The checks of a run config's values and combinations, each failure one line naming the key (and the file or "command line").
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::train {

// `c`: every key present and typed; `where(key)` prefixes a failure ("command line: " for a
// key given as an option, else the config file's path). Throws ConfigError.
void validate_run_config(const nlohmann::json& c, const std::function<std::string(const std::string&)>& where);

}  // namespace mpitrain::train
