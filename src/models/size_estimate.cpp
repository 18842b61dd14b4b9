// What a model a config describes will take, computed from the config alone (before anything is allocated): parameters and activation bytes per token.
#include "src/models/size_estimate.h"

#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/bert.h"
#include "src/models/config_reader.h"
#include "src/models/gpt2.h"
#include "src/models/decoder_family.h"
#include "src/models/registry.h"

namespace mpitrain::models {

namespace {

double d(std::int64_t v) { return static_cast<double>(v); }

// Per token and layer, what autograd keeps for the backward pass at the least: about ten
// hidden-sized float32 tensors (norms, q/k/v, attention output, residuals), three
// intermediate-sized ones (the MLP's), and one row of attention probabilities per head. A lower
// bound on purpose: a refusal must never stop a run that would fit.
double layer_activation_bytes(double hidden, double intermediate, double heads, double seq) {
  return 4 * (10 * hidden + 3 * intermediate + heads * seq);
}
double logits_activation_bytes(double vocab) { return 4 * 3 * vocab; }  // logits, softmax, their gradient
// Without autograd a layer's tensors are freed as it ends: about six hidden-sized and two
// intermediate-sized at once, the scores of every head, and the logits (computed, then converted).
double inference_bytes(double hidden, double intermediate, double heads, double seq, double vocab) {
  return 4 * (6 * hidden + 2 * intermediate + heads * seq + 2 * vocab);
}

// What every architecture here shares, from its dimensions. `outputs`: logits per token
// (vocab_size) for a causal LM; a classifier's few labels per sequence cost nothing.
struct Dimensions {
  double hidden, intermediate, heads, layers, seq, outputs;
  bool per_token_logits;
};

SizeEstimate from_dimensions(const Dimensions& m, double parameters) {
  SizeEstimate e;
  e.parameters = parameters;
  e.activation_bytes_per_token = m.layers * layer_activation_bytes(m.hidden, m.intermediate, m.heads, m.seq) +
                                 (m.per_token_logits ? logits_activation_bytes(m.outputs) : 0);
  e.inference_bytes_per_token =
      inference_bytes(m.hidden, m.intermediate, m.heads, m.seq, m.per_token_logits ? m.outputs : 0);
  e.layers = static_cast<std::int64_t>(m.layers);
  e.hidden = m.hidden;
  e.intermediate = m.intermediate;
  e.heads = m.heads;
  e.logits_per_token = m.per_token_logits ? m.outputs : 0;
  return e;
}

// An attention block with biases and two layer norms, and a two-matrix MLP (GPT-2, BERT).
double post_ln_layer_parameters(double h, double i) { return 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h; }

SizeEstimate estimate_decoder(const DecoderFamily& family, const nlohmann::json& config, const std::string& source,
                              std::int64_t seq) {
  const auto c = family.read(config, source);
  const double h = d(c.hidden_size), i = d(c.intermediate_size), q = d(c.num_attention_heads * c.head_dim),
               kv = d(c.num_key_value_heads * c.head_dim);
  const double attention = h * q + 2 * h * kv + q * h + (c.qkv_bias ? q + 2 * kv : 0) + (c.o_bias ? h : 0);
  const double mlp = 3 * h * i + (c.mlp_bias ? 2 * i + h : 0);
  const double layer = attention + mlp + (c.sandwich_norms ? 4 : 2) * h;
  const double body = d(c.vocab_size) * h + d(c.num_hidden_layers) * layer + h;
  // The causal LM's head is the vocabulary (its own matrix unless tied); a classifier's the labels.
  const bool classifier = names_architecture(config, family.class_prefix + "ForSequenceClassification");
  const double outputs = classifier ? d(ConfigReader(config, source).num_labels()) : d(c.vocab_size);
  const double head = classifier ? h * outputs : c.tie_word_embeddings ? 0 : h * outputs;
  auto e = from_dimensions({h, i, d(c.num_attention_heads), d(c.num_hidden_layers), d(seq), outputs, !classifier},
                           body + head);
  e.fused_cpu_attention = !classifier && c.attn_logit_softcapping <= 0 &&
                          (c.sliding_window <= 0 || c.sliding_window >= seq) && !c.window_on_even_layers_only;
  e.sizing_keys = {{"hidden_size", c.hidden_size},
                   {"intermediate_size", c.intermediate_size},
                   {"num_hidden_layers", c.num_hidden_layers},
                   {"vocab_size", c.vocab_size}};
  return e;
}

SizeEstimate estimate_gpt2(const nlohmann::json& config, const std::string& source, std::int64_t seq) {
  const auto c = Gpt2Config::from_json(config, source);
  const double h = d(c.n_embd), i = d(c.n_inner);
  auto e = from_dimensions({h, i, d(c.n_head), d(c.n_layer), d(seq), d(c.vocab_size), true},
                           (d(c.vocab_size) + d(c.n_positions)) * h + d(c.n_layer) * post_ln_layer_parameters(h, i) + 2 * h);
  e.sizing_keys = {{"n_embd", c.n_embd}, {"n_inner", c.n_inner}, {"n_layer", c.n_layer}, {"n_positions", c.n_positions},
                   {"vocab_size", c.vocab_size}};
  return e;
}

SizeEstimate estimate_bert(const nlohmann::json& config, const std::string& source, std::int64_t seq) {
  const auto c = BertConfig::from_json(config, source);
  const double h = d(c.hidden_size), i = d(c.intermediate_size), labels = d(c.num_labels);
  const double embeddings = (d(c.vocab_size) + d(c.max_position_embeddings) + d(c.type_vocab_size)) * h + 2 * h;
  const double pooler_and_head = h * h + h + h * labels + labels;
  auto e = from_dimensions({h, i, d(c.num_attention_heads), d(c.num_hidden_layers), d(seq), labels, false},
                           embeddings + d(c.num_hidden_layers) * post_ln_layer_parameters(h, i) + pooler_and_head);
  e.sizing_keys = {{"hidden_size", c.hidden_size},
                   {"intermediate_size", c.intermediate_size},
                   {"num_hidden_layers", c.num_hidden_layers},
                   {"max_position_embeddings", c.max_position_embeddings},
                   {"vocab_size", c.vocab_size}};
  return e;
}

}  // namespace

SizeEstimate estimate_size(const nlohmann::json& config, const std::string& source, std::int64_t seq_len) {
  if (!config.is_object()) throw checkpoint::CheckpointError(source, "config is not a JSON object");
  const auto type = config.value("model_type", std::string());
  if (const auto* family = find_decoder_family(type)) return estimate_decoder(*family, config, source, seq_len);
  if (type == "gpt2") return estimate_gpt2(config, source, seq_len);
  if (type == "bert") return estimate_bert(config, source, seq_len);
  std::string known;
  for (const auto& name : supported_model_types()) known += (known.empty() ? "" : ", ") + name;
  throw checkpoint::CheckpointError(source, "unknown model_type '" + type + "' (supported: " + known + ")");
}

std::pair<std::string, std::int64_t> dominant_sizing_key(const nlohmann::json& config, const std::string& source,
                                                          std::int64_t seq_len) {
  const auto whole = estimate_size(config, source, seq_len);
  std::pair<std::string, std::int64_t> dominant = whole.sizing_keys.front();
  double smallest = whole.parameters;
  for (const auto& [key, value] : whole.sizing_keys) {
    auto shrunk = config;
    shrunk[key] = 1;
    try {
      const double parameters = estimate_size(shrunk, source, seq_len).parameters;
      if (parameters < smallest) smallest = parameters, dominant = {key, value};
    } catch (const std::exception&) {
      // Some keys cannot be 1 (heads must divide hidden_size): they are not the culprit here.
    }
  }
  return dominant;
}

}  // namespace mpitrain::models
