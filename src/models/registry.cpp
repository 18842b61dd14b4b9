// Builds the model a config.json describes, chosen by its model_type.
#include "src/models/registry.h"

#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/bert.h"
#include "src/models/gpt2.h"
#include "src/models/config_reader.h"
#include "src/models/llama.h"
#include "src/models/llama_classification.h"

namespace mpitrain::models {

std::vector<std::string> supported_model_types() { return {"bert", "gpt2", "llama"}; }

std::shared_ptr<HfModel> create_model(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp) {
  if (!config.is_object()) throw checkpoint::CheckpointError(source, "config is not a JSON object");
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string())
    throw checkpoint::CheckpointError(source, "missing required key 'model_type'");
  const auto type = it->get<std::string>();
  if (type == "llama") {
    // The head follows "architectures", as AutoModelFor... picks it in transformers.
    if (names_architecture(config, "LlamaForSequenceClassification"))
      return std::make_shared<LlamaForSequenceClassification>(config, source, tp);
    return std::make_shared<LlamaForCausalLM>(config, source, tp);
  }
  if (type == "gpt2") return std::make_shared<Gpt2LMHeadModel>(config, source, tp);
  if (type == "bert") return std::make_shared<BertForSequenceClassification>(config, source, tp);
  throw checkpoint::CheckpointError(source, "unknown model_type '" + type + "' (supported: bert, gpt2, llama)");
}

}  // namespace mpitrain::models
