// Builds the model a config.json describes, chosen by its model_type.
#include "src/models/registry.h"

#include <algorithm>

#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/bert.h"
#include "src/models/gpt2.h"
#include "src/models/config_reader.h"
#include "src/models/decoder_heads.h"

namespace mpitrain::models {

std::vector<std::string> supported_model_types() {
  std::vector<std::string> types{"bert", "gpt2"};
  for (const auto& type : decoder_model_types()) types.push_back(type);
  std::sort(types.begin(), types.end());
  return types;
}

std::shared_ptr<HfModel> create_model(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp) {
  if (!config.is_object()) throw checkpoint::CheckpointError(source, "config is not a JSON object");
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string())
    throw checkpoint::CheckpointError(source, "missing required key 'model_type'");
  const auto type = it->get<std::string>();
  if (const auto* family = find_decoder_family(type)) {
    // The head follows "architectures", as AutoModelFor... picks it in transformers.
    if (names_architecture(config, family->class_prefix + "ForSequenceClassification"))
      return std::make_shared<DecoderForSequenceClassification>(*family, config, source, tp);
    return std::make_shared<DecoderForCausalLM>(*family, config, source, tp);
  }
  if (type == "gpt2") return std::make_shared<Gpt2LMHeadModel>(config, source, tp);
  if (type == "bert") return std::make_shared<BertForSequenceClassification>(config, source, tp);
  std::string known;
  for (const auto& name : supported_model_types()) known += (known.empty() ? "" : ", ") + name;
  throw checkpoint::CheckpointError(source, "unknown model_type '" + type + "' (supported: " + known + ")");
}

}  // namespace mpitrain::models
