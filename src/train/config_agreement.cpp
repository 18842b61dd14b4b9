// Every rank of a run must train with the same settings: a config or option given to some ranks only is one error at the start.
#include "src/train/config_agreement.h"

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>

#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"

namespace mpitrain::train {

namespace {

using nlohmann::json;

// "section.key" -> the value's JSON text (nested objects, e.g. model.config, to their leaves).
void flatten(const json& value, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (value.is_object() && !value.empty()) {
    for (auto it = value.begin(); it != value.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    return;
  }
  out[prefix] = value.dump();
}

}  // namespace

void require_same_config_on_every_rank(comm::Communicator& world, const json& config) {
  auto compared = config;
  compared["training"].erase("output_dir");
  // Per process, not per run: each may have its own.
  compared["training"].erase("progress_bar");
  compared["parallel"].erase("torch_threads");
  const auto mine = compared.dump();
  const auto rank0 = comm::broadcast_string(world, mine);
  comm::run_agreed(world, [&] {
    if (mine == rank0) return;
    std::map<std::string, std::string> ours, theirs;
    flatten(compared, "", ours);
    flatten(json::parse(rank0), "", theirs);
    // The first key (in order) whose value differs, or that one side lacks.
    const auto value_in = [](const std::map<std::string, std::string>& values, const std::string& key) {
      const auto it = values.find(key);
      return it == values.end() ? std::string("(unset)") : it->second;
    };
    std::set<std::string> keys;
    for (const auto* values : {&ours, &theirs})
      for (const auto& entry : *values) keys.insert(entry.first);
    std::string key = "?", our_value = "(unset)", their_value = "(unset)";
    for (const auto& name : keys) {
      if (value_in(ours, name) == value_in(theirs, name)) continue;
      key = name;
      our_value = value_in(ours, name);
      their_value = value_in(theirs, name);
      break;
    }
    throw std::runtime_error("the run config differs between ranks: rank " + std::to_string(world.rank()) + " has " +
                             key + " = " + our_value + " where rank 0 has " + their_value +
                             " (every rank must be given the same config file and options)");
  });
}

}  // namespace mpitrain::train
