// The configuration of the rotary decoders (Llama, Qwen2, Mistral, Gemma, Gemma2, Phi-3): their shared sizes, and each feature in which the families differ.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::models {

class ConfigReader;

struct DecoderConfig {
  std::int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0,
               num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0, attention_dropout = 0.0, initializer_range = 0.02;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";
  nlohmann::json rope_scaling;  // null or transformers' rope_scaling object

  // What the families change; Llama's values by default.
  bool qkv_bias = false, o_bias = false, mlp_bias = false;  // Llama: attention_bias on all four; Qwen2: q, k, v
  bool fused_projections = false;  // Phi-3: qkv_proj [q | k | v] and gate_up_proj [gate | up]
  bool norm_adds_one = false;      // Gemma: RMSNorm scales by (1 + weight), in float32
  bool sandwich_norms = false;     // Gemma2: norms after attention and the MLP too, four per layer
  bool scale_embeddings = false;   // Gemma: embeddings times sqrt(hidden_size)
  double query_pre_attn_scalar = 0.0;  // Gemma2: attention scaled by its ** -0.5; 0: by head_dim ** -0.5
  double attn_logit_softcapping = 0.0, final_logit_softcapping = 0.0;  // Gemma2: cap * tanh(x / cap); 0: none
  std::int64_t sliding_window = 0;  // > 0: a token attends to itself and the window - 1 tokens before it
  bool window_on_even_layers_only = false;            // Gemma2: layers 0, 2, 4, ... slide, the others are global
  double residual_dropout = 0.0;   // Phi-3: resid_pdrop, after attention and after the MLP

  // The window layer `layer` attends within (0: the whole causal prefix).
  std::int64_t window_of_layer(std::int64_t layer) const;
  double attention_scaling() const;
};

// The keys every family reads alike: sizes (vocab_size, hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads required), num_key_value_heads, head_dim (where the
// config has none: `default_head_dim`, or hidden / heads when that is 0), epsilons, RoPE and its
// scaling, dropout, initializer_range, tie_word_embeddings and the activation under
// `activation_key`. Fails through `r`, naming the key.
struct DecoderDefaults {
  std::int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  bool head_dim_from_config = true;  // false: the family ignores a head_dim key (Qwen2, Phi-3)
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::string activation_key = "hidden_act", activation = "silu";
  std::int64_t max_position_embeddings = 2048;
};
DecoderConfig read_decoder_config(const ConfigReader& r, const nlohmann::json& config, const DecoderDefaults& defaults);

// The keys every family's config class writes alike, with the values `c` computes with.
nlohmann::json shared_decoder_keys(const DecoderConfig& c);

// sliding_window as a config class writes it: the window, or null for none.
nlohmann::json sliding_window_key(const DecoderConfig& c);

// A window key: absent means `fallback` (the config class's default), null none (0); otherwise a
// positive integer.
std::int64_t read_sliding_window(const ConfigReader& r, const nlohmann::json& config, const std::string& key,
                                 std::int64_t fallback);

}  // namespace mpitrain::models
