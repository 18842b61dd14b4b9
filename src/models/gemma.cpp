// Gemma and Gemma2 (GemmaForCausalLM, Gemma2ForCausalLM and their sequence classifiers): RMSNorm by (1 + w) in float32, embeddings times sqrt(hidden_size), GeGLU; Gemma2 adds sandwich norms, query_pre_attn_scalar, soft-caps and sliding windows on even layers.
#include "src/models/config_reader.h"
#include "src/models/decoder_family.h"

namespace mpitrain::models {
namespace {

// What both generations share: head_dim 256 by default, tied embeddings, attention_bias on all
// four projections, the (1 + w) norm and the scaled embeddings.
DecoderConfig read_gemma_common(const ConfigReader& r, const nlohmann::json& config) {
  DecoderDefaults defaults;
  defaults.head_dim = 256;
  defaults.tie_word_embeddings = true;
  defaults.max_position_embeddings = 8192;
  // GemmaMLP reads hidden_activation (gelu_pytorch_tanh where it is null), never hidden_act.
  defaults.activation_key = "hidden_activation";
  defaults.activation = "gelu_pytorch_tanh";
  auto c = read_decoder_config(r, config, defaults);
  c.qkv_bias = c.o_bias = r.bool_or("attention_bias", false);
  c.norm_adds_one = true;
  c.scale_embeddings = true;
  return c;
}

nlohmann::json gemma_common_keys(const DecoderConfig& c) {
  auto keys = shared_decoder_keys(c);
  keys.update({{"attention_bias", c.qkv_bias}, {"bos_token_id", 2}, {"eos_token_id", 1}, {"pad_token_id", 0},
               {"head_dim", c.head_dim}, {"hidden_activation", c.hidden_act}});
  return keys;
}

DecoderConfig read_gemma(const nlohmann::json& config, const std::string& source) {
  return read_gemma_common(ConfigReader(config, source), config);
}

nlohmann::json gemma_keys(const DecoderConfig& c) {
  auto keys = gemma_common_keys(c);
  keys["hidden_act"] = "gelu_pytorch_tanh";  // GemmaConfig's default, which its MLP does not read
  return keys;
}

// A soft-cap: absent is the config class's default, null none, else a positive number.
double read_softcap(const ConfigReader& r, const nlohmann::json& config, const std::string& key, double fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (it->is_null()) return 0.0;
  return r.positive_double_or(key, fallback);
}

DecoderConfig read_gemma2(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  auto c = read_gemma_common(r, config);
  c.sandwich_norms = true;
  c.query_pre_attn_scalar = r.positive_double_or("query_pre_attn_scalar", 256.0);
  c.attn_logit_softcapping = read_softcap(r, config, "attn_logit_softcapping", 50.0);
  c.final_logit_softcapping = read_softcap(r, config, "final_logit_softcapping", 30.0);
  c.sliding_window = read_sliding_window(r, config, "sliding_window", 4096);
  c.window_on_even_layers_only = true;
  return c;
}

nlohmann::json gemma2_keys(const DecoderConfig& c) {
  const auto cap = [](double value) { return value > 0 ? nlohmann::json(value) : nlohmann::json(); };
  auto keys = gemma_common_keys(c);
  keys.update({{"attn_logit_softcapping", cap(c.attn_logit_softcapping)},
               {"cache_implementation", "hybrid"},
               {"final_logit_softcapping", cap(c.final_logit_softcapping)},
               {"query_pre_attn_scalar", c.query_pre_attn_scalar},
               {"sliding_window", sliding_window_key(c)}});
  return keys;
}

}  // namespace

const DecoderFamily& gemma_family() {
  static const DecoderFamily family{"gemma", "Gemma", read_gemma, gemma_keys};
  return family;
}

const DecoderFamily& gemma2_family() {
  static const DecoderFamily family{"gemma2", "Gemma2", read_gemma2, gemma2_keys};
  return family;
}

}  // namespace mpitrain::models
