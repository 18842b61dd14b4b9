// The interface every Hugging Face architecture implements: forward pass, HF config, HF tensor names.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mpitrain::models {

inline bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct ModelInputs {
  torch::Tensor input_ids;       // [batch, seq] int64
  torch::Tensor attention_mask;  // [batch, seq], 1 = attend; undefined means all ones
  torch::Tensor token_type_ids;  // [batch, seq]; undefined means all zeros (BERT only)
};

// A model whose named_parameters() are exactly the tensors transformers saves, with the same
// names, in the same (state-dict) order. Tied weights appear once, under the name HF keeps.
class HfModel : public torch::nn::Module {
 public:
  explicit HfModel(nlohmann::json config) : config_(std::move(config)) {}

  // Logits in the compute dtype: [batch, seq, vocab] for causal LMs, [batch, labels] for classifiers.
  virtual torch::Tensor forward(const ModelInputs& inputs) = 0;

  virtual std::string architecture() const = 0;  // e.g. "LlamaForCausalLM"
  virtual bool is_causal_lm() const = 0;
  virtual bool ties_word_embeddings() const = 0;
  // Names a checkpoint may hold that this model recomputes or shares (buffers, tied heads),
  // so loading ignores them instead of reporting them unexpected.
  virtual bool is_ignorable_checkpoint_tensor(const std::string& name) const { return false; }
  // Prefix that checkpoints of the bare base model lack (GPT-2's "transformer.").
  virtual std::string base_model_prefix() const { return ""; }

  // config.json as loaded (every key kept, so it round-trips) with this model's facts applied.
  const nlohmann::json& config() const { return config_; }
  nlohmann::json& mutable_config() { return config_; }

 protected:
  // Writes every key transformers writes for the architecture, with the value this model
  // computes with, where the loaded config left it out: saved configs then carry the same
  // keys as transformers' own (an inline config in a run file may name only the sizes).
  void complete_config(const nlohmann::json& effective) {
    for (auto it = effective.begin(); it != effective.end(); ++it)
      if (!config_.contains(it.key())) config_[it.key()] = it.value();
  }

 private:
  nlohmann::json config_;
};

}  // namespace mpitrain::models
