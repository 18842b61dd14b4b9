// Mistral (MistralForCausalLM, MistralForSequenceClassification): the rotary decoder with head_dim from its config and a sliding window on every layer (4096 unless the config says otherwise or null).
#include "src/models/config_reader.h"
#include "src/models/decoder_family.h"

namespace mpitrain::models {
namespace {

DecoderConfig read_mistral(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  DecoderDefaults defaults;
  defaults.max_position_embeddings = 131072;
  auto c = read_decoder_config(r, config, defaults);
  c.rope_scaling = nullptr;  // MistralRotaryEmbedding (transformers 4.47) reads no rope_scaling
  c.sliding_window = read_sliding_window(r, config, "sliding_window", 4096);
  return c;
}

nlohmann::json mistral_keys(const DecoderConfig& c) {
  auto keys = shared_decoder_keys(c);
  keys.update({{"bos_token_id", 1}, {"eos_token_id", 2}, {"head_dim", c.head_dim}, {"hidden_act", c.hidden_act},
               {"sliding_window", sliding_window_key(c)}});
  return keys;
}

}  // namespace

const DecoderFamily& mistral_family() {
  static const DecoderFamily family{"mistral", "Mistral", read_mistral, mistral_keys};
  return family;
}

}  // namespace mpitrain::models
