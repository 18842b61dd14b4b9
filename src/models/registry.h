// Builds the model a config.json describes, chosen by its model_type.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/models/model.h"

namespace mpitrain::models {

// `source` names the config file in errors; `tp` splits the model over a tensor-parallel group
// (null: one rank). Throws CheckpointError for an unknown
// model_type or a config that the architecture rejects.
std::shared_ptr<HfModel> create_model(const nlohmann::json& config, const std::string& source,
                                      TensorParallelPtr tp = nullptr);

std::vector<std::string> supported_model_types();

}  // namespace mpitrain::models
