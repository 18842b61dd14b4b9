// Reads model inputs from the fixtures' inputs.json: input_ids, optional attention_mask, token_type_ids and position_ids.
#include "src/models/inputs_json.h"

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/json_file.h"
#include "src/models/pretrained.h"

namespace mpitrain::models {
namespace {

using checkpoint::CheckpointError;

torch::Tensor matrix(const nlohmann::json& doc, const std::string& key, const std::string& path,
                     std::int64_t rows, std::int64_t cols) {
  const auto& value = doc.at(key);
  auto fail = [&](const std::string& problem) { throw CheckpointError(path, "'" + key + "' " + problem); };
  if (!value.is_array() || value.empty()) fail("must be a non-empty list of lists of integers");
  if (rows >= 0 && static_cast<std::int64_t>(value.size()) != rows) fail("has a different number of rows than input_ids");
  const auto width = value[0].is_array() ? static_cast<std::int64_t>(value[0].size()) : 0;
  if (width == 0) fail("must be a non-empty list of lists of integers");
  if (cols >= 0 && width != cols) fail("rows have a different length than input_ids");
  std::vector<std::int64_t> flat;
  for (const auto& row : value) {
    if (!row.is_array() || static_cast<std::int64_t>(row.size()) != width) fail("rows are not all the same length");
    for (const auto& x : row) {
      if (!x.is_number_integer() || x.get<std::int64_t>() < 0) fail("holds a value that is not a non-negative integer");
      flat.push_back(x.get<std::int64_t>());
    }
  }
  return torch::tensor(flat, torch::kInt64).view({static_cast<std::int64_t>(value.size()), width});
}

}  // namespace

ModelInputs read_inputs_json(const std::string& path, std::int64_t vocab_size) {
  const auto doc = checkpoint::read_json_file(path);
  if (!doc.is_object() || !doc.contains("input_ids")) throw CheckpointError(path, "missing required key 'input_ids'");
  ModelInputs inputs;
  inputs.input_ids = matrix(doc, "input_ids", path, -1, -1);
  const auto rows = inputs.input_ids.size(0), cols = inputs.input_ids.size(1);
  if (vocab_size > 0 && inputs.input_ids.max().item<std::int64_t>() >= vocab_size)
    throw CheckpointError(path, "'input_ids' holds an id >= vocab_size " + std::to_string(vocab_size));
  if (doc.contains("attention_mask")) inputs.attention_mask = matrix(doc, "attention_mask", path, rows, cols);
  if (doc.contains("token_type_ids")) inputs.token_type_ids = matrix(doc, "token_type_ids", path, rows, cols);
  if (doc.contains("position_ids")) inputs.position_ids = matrix(doc, "position_ids", path, rows, cols);
  return inputs;
}

}  // namespace mpitrain::models
