// Phi-3 (Phi3ForCausalLM, Phi3ForSequenceClassification): the rotary decoder with fused qkv_proj and gate_up_proj, residual dropout, and a sliding window where the config sets one.
#include "src/models/config_reader.h"
#include "src/models/decoder_family.h"

namespace mpitrain::models {
namespace {

DecoderConfig read_phi3(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  // Phi3Config accepts only LongRoPE scaling ("su" and "yarn" are its old names), not implemented here.
  const auto scaling = config.find("rope_scaling");
  if (scaling != config.end() && !scaling->is_null()) {
    const auto type = scaling->is_object() ? scaling->value("type", scaling->value("rope_type", std::string("?")))
                                           : std::string("?");
    r.fail("rope_scaling type '" + type + "' is not implemented for phi3 (LongRoPE); only rope_scaling null is");
  }
  DecoderDefaults defaults;
  defaults.head_dim_from_config = false;  // Phi3Attention: hidden_size / num_attention_heads
  defaults.rms_norm_eps = 1e-5;
  defaults.max_position_embeddings = 4096;
  auto c = read_decoder_config(r, config, defaults);
  c.fused_projections = true;
  c.residual_dropout = r.probability_or("resid_pdrop", 0.0);
  c.sliding_window = read_sliding_window(r, config, "sliding_window", 0);
  return c;
}

nlohmann::json phi3_keys(const DecoderConfig& c) {
  auto keys = shared_decoder_keys(c);
  keys.update({{"bos_token_id", 1}, {"eos_token_id", 32000}, {"pad_token_id", 32000}, {"embd_pdrop", 0.0},
               {"hidden_act", c.hidden_act}, {"original_max_position_embeddings", c.max_position_embeddings},
               {"resid_pdrop", c.residual_dropout}, {"rope_scaling", nullptr},
               {"sliding_window", sliding_window_key(c)}});
  return keys;
}

}  // namespace

const DecoderFamily& phi3_family() {
  static const DecoderFamily family{"phi3", "Phi3", read_phi3, phi3_keys};
  return family;
}

}  // namespace mpitrain::models
