// What a model a config describes will take, computed from the config alone (before anything is allocated): parameters and activation bytes per token.
#include "src/models/size_estimate.h"

#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/bert.h"
#include "src/models/gpt2.h"
#include "src/models/llama.h"

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

SizeEstimate estimate_llama(const nlohmann::json& config, const std::string& source, std::int64_t seq) {
  const auto c = LlamaConfig::from_json(config, source);
  const double h = d(c.hidden_size), i = d(c.intermediate_size), q = d(c.num_attention_heads * c.head_dim),
               kv = d(c.num_key_value_heads * c.head_dim);
  const double layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
  SizeEstimate e;
  e.parameters = d(c.vocab_size) * h * (c.tie_word_embeddings ? 1 : 2) + d(c.num_hidden_layers) * layer + h;
  e.activation_bytes_per_token = d(c.num_hidden_layers) * layer_activation_bytes(h, i, d(c.num_attention_heads), d(seq)) +
                                 logits_activation_bytes(d(c.vocab_size));
  e.inference_bytes_per_token = inference_bytes(h, i, d(c.num_attention_heads), d(seq), d(c.vocab_size));
  e.layers = c.num_hidden_layers;
  e.sizing_keys = {{"hidden_size", c.hidden_size},
                   {"intermediate_size", c.intermediate_size},
                   {"num_hidden_layers", c.num_hidden_layers},
                   {"vocab_size", c.vocab_size}};
  return e;
}

SizeEstimate estimate_gpt2(const nlohmann::json& config, const std::string& source, std::int64_t seq) {
  const auto c = Gpt2Config::from_json(config, source);
  const double h = d(c.n_embd), i = d(c.n_inner);
  const double layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h;
  SizeEstimate e;
  e.parameters = d(c.vocab_size) * h + d(c.n_positions) * h + d(c.n_layer) * layer + 2 * h;
  e.activation_bytes_per_token =
      d(c.n_layer) * layer_activation_bytes(h, i, d(c.n_head), d(seq)) + logits_activation_bytes(d(c.vocab_size));
  e.inference_bytes_per_token = inference_bytes(h, i, d(c.n_head), d(seq), d(c.vocab_size));
  e.layers = c.n_layer;
  e.sizing_keys = {{"n_embd", c.n_embd}, {"n_inner", c.n_inner}, {"n_layer", c.n_layer}, {"n_positions", c.n_positions},
                   {"vocab_size", c.vocab_size}};
  return e;
}

SizeEstimate estimate_bert(const nlohmann::json& config, const std::string& source, std::int64_t seq) {
  const auto c = BertConfig::from_json(config, source);
  const double h = d(c.hidden_size), i = d(c.intermediate_size);
  const double layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h;
  SizeEstimate e;
  e.parameters = (d(c.vocab_size) + d(c.max_position_embeddings) + d(c.type_vocab_size)) * h + 2 * h +
                 d(c.num_hidden_layers) * layer + h * h + h + h * d(c.num_labels) + d(c.num_labels);
  e.activation_bytes_per_token =
      d(c.num_hidden_layers) * layer_activation_bytes(h, i, d(c.num_attention_heads), d(seq));
  e.inference_bytes_per_token = inference_bytes(h, i, d(c.num_attention_heads), d(seq), d(c.num_labels));
  e.layers = c.num_hidden_layers;
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
  if (type == "llama") return estimate_llama(config, source, seq_len);
  if (type == "gpt2") return estimate_gpt2(config, source, seq_len);
  if (type == "bert") return estimate_bert(config, source, seq_len);
  throw checkpoint::CheckpointError(source, "unknown model_type '" + type + "' (supported: bert, gpt2, llama)");
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
