// LlamaForSequenceClassification: the Llama decoder with transformers' `score` head, read at each row's last non-pad token.
#pragma once

#include <memory>
#include <optional>

#include "src/models/llama.h"

namespace mpitrain::models {

// What AutoModelForSequenceClassification builds from a Llama config: `model.*` as in the causal
// LM, then `score.weight` [num_labels, hidden] (no bias, replicated under tp). A causal-LM or
// bare LlamaModel checkpoint starts it with a new score head; its lm_head is left unused.
class LlamaForSequenceClassification : public LlamaPreTrainedModel {
 public:
  LlamaForSequenceClassification(const nlohmann::json& config, const std::string& source,
                                 TensorParallelPtr tp = nullptr);
  // [batch, num_labels]: the score of each row's last token that is not pad_token_id (the
  // rightmost, so left and right padding both work). Without a pad_token_id only a batch of
  // one can be read, as in transformers; a larger one throws.
  torch::Tensor forward(const ModelInputs& inputs) override;
  std::string architecture() const override { return "LlamaForSequenceClassification"; }
  bool is_causal_lm() const override { return false; }
  bool ties_word_embeddings() const override { return false; }
  std::string base_model_prefix() const override { return "model."; }
  std::vector<std::string> task_head_parameters() const override { return {"score.weight"}; }
  void initialise_task_head() override;
  std::optional<std::int64_t> pooling_pad_token_id() const override { return pad_token_id_; }

  std::shared_ptr<Linear> score;

 private:
  std::int64_t num_labels_;
  std::optional<std::int64_t> pad_token_id_;
};

}  // namespace mpitrain::models
