// Llama (LlamaForCausalLM, LlamaForSequenceClassification): the rotary decoder as transformers' LlamaConfig describes it, attention_bias on q, k, v and o alike.
#include "src/models/config_reader.h"
#include "src/models/decoder_family.h"

namespace mpitrain::models {
namespace {

DecoderConfig read_llama(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  auto c = read_decoder_config(r, config, DecoderDefaults{});
  c.qkv_bias = c.o_bias = r.bool_or("attention_bias", false);
  c.mlp_bias = r.bool_or("mlp_bias", false);
  return c;
}

nlohmann::json llama_keys(const DecoderConfig& c) {
  auto keys = shared_decoder_keys(c);
  keys.update({{"attention_bias", c.qkv_bias}, {"bos_token_id", 1}, {"eos_token_id", 2}, {"head_dim", c.head_dim}, {"hidden_act", c.hidden_act},
               {"mlp_bias", c.mlp_bias}, {"pretraining_tp", 1}, {"rope_scaling", c.rope_scaling}});
  return keys;
}

}  // namespace

const DecoderFamily& llama_family() {
  static const DecoderFamily family{"llama", "Llama", read_llama, llama_keys};
  return family;
}

}  // namespace mpitrain::models
