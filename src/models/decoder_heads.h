// The task heads on the rotary decoders: <Family>ForCausalLM (lm_head, tied or not, Gemma2's final soft-cap) and <Family>ForSequenceClassification (transformers' score head at each row's last non-pad token).
#pragma once

#include <memory>
#include <optional>

#include "src/models/decoder.h"
#include "src/models/decoder_family.h"
#include "src/models/model.h"

namespace mpitrain::models {

// What every head shares (transformers' <Family>PreTrainedModel): the config checked against
// tp, the keys transformers writes, the decoder stack under "model.", forward groups.
class DecoderPreTrainedModel : public HfModel {
 public:
  PositionLimit position_limit() const override {
    return {config_.max_position_embeddings, "max_position_embeddings", /*learned=*/false};
  }
  bool is_ignorable_checkpoint_tensor(const std::string& name) const override;
  int parameter_group(const std::string& name) const override;
  const DecoderConfig& decoder_config() const { return config_; }
  const DecoderFamily& family() const { return family_; }

  std::shared_ptr<DecoderModel> model;

 protected:
  // Registers `model`; the head is the subclass's to register after it (module order).
  DecoderPreTrainedModel(const DecoderFamily& family, const nlohmann::json& config, const std::string& source,
                         TensorParallelPtr tp, const std::string& architecture);
  int head_group() const { return static_cast<int>(config_.num_hidden_layers) + 2; }

 private:
  const DecoderFamily& family_;
  DecoderConfig config_;
};

class DecoderForCausalLM : public DecoderPreTrainedModel {
 public:
  DecoderForCausalLM(const DecoderFamily& family, const nlohmann::json& config, const std::string& source,
                     TensorParallelPtr tp = nullptr);
  torch::Tensor forward(const ModelInputs& inputs) override;
  std::string architecture() const override { return family().class_prefix + "ForCausalLM"; }
  bool is_causal_lm() const override { return true; }
  bool ties_word_embeddings() const override { return decoder_config().tie_word_embeddings; }
  bool is_ignorable_checkpoint_tensor(const std::string& name) const override;
  std::int64_t logits_vocab_start() const override { return model->embed_tokens->first_row(); }
  std::string sequence_classifier_architecture() const override {
    return family().class_prefix + "ForSequenceClassification";
  }

  std::shared_ptr<Linear> lm_head;  // null when tied to model.embed_tokens
};

// What AutoModelForSequenceClassification builds from a decoder config: `model.*` as in the
// causal LM, then `score.weight` [num_labels, hidden] (no bias, replicated under tp). A causal-LM
// or bare <Family>Model checkpoint starts it with a new score head; its lm_head is left unused.
class DecoderForSequenceClassification : public DecoderPreTrainedModel {
 public:
  DecoderForSequenceClassification(const DecoderFamily& family, const nlohmann::json& config,
                                   const std::string& source, TensorParallelPtr tp = nullptr);
  // [batch, num_labels]: the score of each row's last token that is not pad_token_id (the
  // rightmost, so left and right padding both work). Without a pad_token_id only a batch of
  // one can be read, as in transformers; a larger one throws.
  torch::Tensor forward(const ModelInputs& inputs) override;
  std::string architecture() const override { return family().class_prefix + "ForSequenceClassification"; }
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
