// Qwen2 (Qwen2ForCausalLM, Qwen2ForSequenceClassification): the rotary decoder with biases on q, k and v (not o_proj), and a sliding window only where use_sliding_window says so.
#include "src/models/config_reader.h"
#include "src/models/decoder_family.h"

namespace mpitrain::models {
namespace {

DecoderConfig read_qwen2(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  DecoderDefaults defaults;
  defaults.head_dim_from_config = false;  // Qwen2Attention: hidden_size / num_attention_heads
  defaults.max_position_embeddings = 32768;
  auto c = read_decoder_config(r, config, defaults);
  c.qkv_bias = true;
  // Qwen2Config keeps sliding_window only under use_sliding_window; transformers' eager and sdpa
  // masks then slide on every layer (max_window_layers is read by flash-attention 2 alone).
  const bool sliding = r.bool_or("use_sliding_window", false);
  c.sliding_window = sliding ? read_sliding_window(r, config, "sliding_window", 4096) : 0;
  return c;
}

nlohmann::json qwen2_keys(const DecoderConfig& c) {
  auto keys = shared_decoder_keys(c);
  keys.update({{"hidden_act", c.hidden_act}, {"max_window_layers", 28}, {"rope_scaling", c.rope_scaling},
               {"sliding_window", sliding_window_key(c)},
               {"use_sliding_window", c.sliding_window > 0}});
  return keys;
}

}  // namespace

const DecoderFamily& qwen2_family() {
  static const DecoderFamily family{"qwen2", "Qwen2", read_qwen2, qwen2_keys};
  return family;
}

}  // namespace mpitrain::models
