// The rotary decoder families by model_type (llama, qwen2, mistral, gemma, gemma2, phi3): how each reads its config.json and the keys its config class writes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/models/decoder_config.h"

namespace mpitrain::models {

struct DecoderFamily {
  std::string model_type;    // "qwen2"
  std::string class_prefix;  // "Qwen2": Qwen2ForCausalLM, Qwen2ForSequenceClassification
  // The config as this family reads it; throws CheckpointError naming `source` and the key.
  DecoderConfig (*read)(const nlohmann::json& config, const std::string& source);
  // Every key transformers' config class writes, with the values `c` computes with: a saved
  // config.json then carries the keys a transformers-written one does.
  nlohmann::json (*written_keys)(const DecoderConfig& c);
};

// nullptr where `model_type` is no decoder family.
const DecoderFamily* find_decoder_family(const std::string& model_type);
std::vector<std::string> decoder_model_types();

// Each family's entry, defined in its own file.
const DecoderFamily& llama_family();
const DecoderFamily& qwen2_family();
const DecoderFamily& mistral_family();
const DecoderFamily& gemma_family();
const DecoderFamily& gemma2_family();
const DecoderFamily& phi3_family();

}  // namespace mpitrain::models
