// Reads model inputs from the fixtures' inputs.json: input_ids, optional attention_mask, token_type_ids and position_ids.
#pragma once

#include <string>

#include "src/models/model.h"

namespace mpitrain::models {

// Rows must be equally long, ids non-negative and below `vocab_size` when it is given (> 0).
// Throws CheckpointError naming the file and the key.
ModelInputs read_inputs_json(const std::string& path, std::int64_t vocab_size = 0);

}  // namespace mpitrain::models
