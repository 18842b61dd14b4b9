// The small files a saved model carries beside its weights: config and generation config, tokenizer files, training_args.json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "src/models/model.h"

namespace mpitrain::train {

// The tokenizer files a model directory may hold; they travel with the model it trains.
bool holds_tokenizer_files(const std::string& dir);

// Copies the tokenizer files `from` holds into `to`, byte for byte (nothing where they are the same files).
void copy_tokenizer_files(const std::string& from, const std::string& to);

// What saves a model's own files: one process, no collectives.
struct ModelFiles {
  at::ScalarType saved_dtype = at::kFloat;
  nlohmann::json generation_config;  // the source model's, or null
  std::string tokenizer_dir;         // where tokenizer files come from (empty: the built-in byte tokenizer)
  nlohmann::json run_config;         // the validated run config: training_args.json
  nlohmann::json adapter_config;     // LoRA: adapter_config.json instead of the model's config (null: none)

  // config.json and generation_config.json (causal LMs), or a LoRA adapter's adapter_config.json;
  // the tokenizer files and training_args.json; into `dir`.
  void write(const models::HfModel& model, const std::string& dir) const;
};

}  // namespace mpitrain::train
