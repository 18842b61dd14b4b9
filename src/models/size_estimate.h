// What a model a config describes will take, computed from the config alone (before anything is allocated): parameters and activation bytes per token.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace mpitrain::models {

// Doubles: a hostile config (intermediate_size 1e12) must give a large number, not an overflow.
struct SizeEstimate {
  double parameters = 0;
  // float32 activations one token keeps for the backward pass (every layer's, plus the logits
  // and their gradient); attention scores grow with the sequence, so `seq_len` is an input.
  double activation_bytes_per_token = 0;
  // Without gradients (logits, generate): one layer's working tensors at a time, and the logits.
  double inference_bytes_per_token = 0;
  std::int64_t layers = 1;  // gradient checkpointing keeps about one layer's activations of these
  // The dimensions activations scale with (estimate-memory's fitted model of a step's peak):
  // per layer and token, hidden- and intermediate-sized tensors and one row of attention
  // scores per head; per token, the logits (vocab_size for a causal LM, 0 for a classifier).
  double hidden = 0, intermediate = 0, heads = 0, logits_per_token = 0;
  // A rotary decoder whose causal LM attention cpu_causal_attention computes on the CPU (no soft
  // cap, no window shorter than the sequence): it keeps no attention scores.
  bool fused_cpu_attention = false;
  // The config keys that size the model, with their values (for a refusal to name).
  std::vector<std::pair<std::string, std::int64_t>> sizing_keys;
};

// Throws CheckpointError (naming `source`) for a config the architecture rejects, as create_model does.
SizeEstimate estimate_size(const nlohmann::json& config, const std::string& source, std::int64_t seq_len);

// The sizing key whose value makes the estimate largest: the one that, set to 1, shrinks the
// parameters most (intermediate_size 1e12 or num_hidden_layers 1e6 is named, not hidden_size).
std::pair<std::string, std::int64_t> dominant_sizing_key(const nlohmann::json& config, const std::string& source,
                                                          std::int64_t seq_len);

}  // namespace mpitrain::models
