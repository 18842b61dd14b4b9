// The rotary decoder families by model_type (llama, qwen2, mistral, gemma, gemma2, phi3): how each reads its config.json and the keys its config class writes.
#include "src/models/decoder_family.h"

namespace mpitrain::models {
namespace {

std::vector<const DecoderFamily*> families() {
  return {&llama_family(), &qwen2_family(), &mistral_family(), &gemma_family(), &gemma2_family(), &phi3_family()};
}

}  // namespace

const DecoderFamily* find_decoder_family(const std::string& model_type) {
  for (const auto* family : families())
    if (family->model_type == model_type) return family;
  return nullptr;
}

std::vector<std::string> decoder_model_types() {
  std::vector<std::string> types;
  for (const auto* family : families()) types.push_back(family->model_type);
  return types;
}

}  // namespace mpitrain::models
