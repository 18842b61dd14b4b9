// The configuration of the rotary decoders (Llama, Qwen2, Mistral, Gemma, Gemma2, Phi-3): their shared sizes, and each feature in which the families differ.
#include "src/models/decoder_config.h"

#include <cmath>

#include "src/models/config_reader.h"
#include "src/models/rope.h"

namespace mpitrain::models {

std::int64_t DecoderConfig::window_of_layer(std::int64_t layer) const {
  if (sliding_window <= 0) return 0;
  if (window_on_even_layers_only && layer % 2 != 0) return 0;
  return sliding_window;
}

double DecoderConfig::attention_scaling() const {
  // As transformers computes them in Python: x ** -0.5 and 1 / math.sqrt(head_dim).
  return query_pre_attn_scalar > 0 ? std::pow(query_pre_attn_scalar, -0.5) : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

nlohmann::json sliding_window_key(const DecoderConfig& c) {
  return c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json();
}

std::int64_t read_sliding_window(const ConfigReader& r, const nlohmann::json& config, const std::string& key,
                                 std::int64_t fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (it->is_null()) return 0;
  const auto window = r.int_or(key, 0);  // fails naming the key for anything but an integer
  if (window <= 0) r.fail(key + " must be a positive number of tokens or null");
  return window;
}

DecoderConfig read_decoder_config(const ConfigReader& r, const nlohmann::json& config, const DecoderDefaults& defaults) {
  DecoderConfig c;
  c.vocab_size = r.require_int("vocab_size");
  c.hidden_size = r.require_int("hidden_size");
  c.intermediate_size = r.require_int("intermediate_size");
  c.num_hidden_layers = r.require_int("num_hidden_layers");
  c.num_attention_heads = r.require_int("num_attention_heads");
  c.num_key_value_heads = r.int_or("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = r.int_or("max_position_embeddings", defaults.max_position_embeddings);
  const bool given = defaults.head_dim_from_config && r.has("head_dim");
  const bool derived_head_dim = !given && defaults.head_dim == 0;
  if (derived_head_dim && c.hidden_size % c.num_attention_heads != 0)
    r.fail("hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
           std::to_string(c.num_attention_heads));
  c.head_dim = given ? r.int_or("head_dim", 0) : derived_head_dim ? c.hidden_size / c.num_attention_heads : defaults.head_dim;
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) r.fail("head_dim must be a positive even number for RoPE");
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    r.fail("num_attention_heads " + std::to_string(c.num_attention_heads) +
           " is not a multiple of num_key_value_heads " + std::to_string(c.num_key_value_heads));
  c.rms_norm_eps = r.positive_double_or("rms_norm_eps", defaults.rms_norm_eps);
  c.rope_theta = r.positive_double_or("rope_theta", 10000.0);
  c.attention_dropout = r.probability_or("attention_dropout", 0.0);
  c.initializer_range = r.double_or("initializer_range", 0.02);
  c.tie_word_embeddings = r.bool_or("tie_word_embeddings", defaults.tie_word_embeddings);
  c.hidden_act = r.activation_or(defaults.activation_key, defaults.activation);
  c.rope_scaling = read_rope_scaling(r, config);
  return c;
}

nlohmann::json shared_decoder_keys(const DecoderConfig& c) {
  return {{"attention_dropout", c.attention_dropout},
          {"hidden_size", c.hidden_size},
          {"initializer_range", c.initializer_range},
          {"intermediate_size", c.intermediate_size},
          {"max_position_embeddings", c.max_position_embeddings},
          {"num_attention_heads", c.num_attention_heads},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_key_value_heads", c.num_key_value_heads},
          {"rms_norm_eps", c.rms_norm_eps},
          {"rope_theta", c.rope_theta},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"use_cache", true},
          {"vocab_size", c.vocab_size}};
}

}  // namespace mpitrain::models
