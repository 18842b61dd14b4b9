// BertForSequenceClassification: token types, absolute positions, post-LN encoder, pooler, classifier.
#pragma once

#include <memory>

#include "src/models/layers.h"
#include "src/models/model.h"

namespace mpitrain::models {

struct BertConfig {
  std::int64_t vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
      max_position_embeddings, type_vocab_size, num_labels;
  double layer_norm_eps, hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout, initializer_range;
  std::string hidden_act;

  static BertConfig from_json(const nlohmann::json& config, const std::string& source);
};

class BertEmbeddings : public torch::nn::Module {
 public:
  BertEmbeddings(const BertConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const ModelInputs& inputs);
  std::shared_ptr<Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<LayerNorm> LayerNorm_;

 private:
  double dropout_;
};

class BertSelfAttention : public torch::nn::Module {
 public:
  BertSelfAttention(const BertConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  std::shared_ptr<Linear> query, key, value;

 private:
  TensorParallelPtr tp_;
  std::int64_t heads_;  // on this rank
  double dropout_;
};

// dense -> dropout -> LayerNorm(x + residual): BertSelfOutput and BertOutput alike.
class BertResidualOutput : public torch::nn::Module {
 public:
  BertResidualOutput(std::int64_t in, std::int64_t out, const BertConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  std::shared_ptr<Linear> dense;
  std::shared_ptr<LayerNorm> LayerNorm_;

 private:
  double dropout_;
};

class BertAttention : public torch::nn::Module {
 public:
  BertAttention(const BertConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  std::shared_ptr<BertSelfAttention> self;
  std::shared_ptr<BertResidualOutput> output;
};

class BertIntermediate : public torch::nn::Module {
 public:
  BertIntermediate(const BertConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x);
  std::shared_ptr<Linear> dense;

 private:
  TensorParallelPtr tp_;
  std::string act_;
};

class BertLayer : public torch::nn::Module {
 public:
  BertLayer(const BertConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  std::shared_ptr<BertAttention> attention;
  std::shared_ptr<BertIntermediate> intermediate;
  std::shared_ptr<BertResidualOutput> output;
};

class BertModel : public torch::nn::Module {
 public:
  BertModel(const BertConfig& c, const TensorParallelPtr& tp, GroupRunnerPtr groups);
  torch::Tensor forward(const ModelInputs& inputs);  // pooled output [batch, hidden]
  std::shared_ptr<BertEmbeddings> embeddings;
  torch::nn::ModuleList encoder_layers;  // registered as encoder.layer.N
  std::shared_ptr<Linear> pooler_dense;  // registered as pooler.dense

 private:
  GroupRunnerPtr groups_;
};

class BertForSequenceClassification : public HfModel {
 public:
  BertForSequenceClassification(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp = nullptr);
  torch::Tensor forward(const ModelInputs& inputs) override;
  std::string architecture() const override { return "BertForSequenceClassification"; }
  bool is_causal_lm() const override { return false; }
  bool ties_word_embeddings() const override { return false; }
  PositionLimit position_limit() const override {
    return {config_.max_position_embeddings, "max_position_embeddings", /*learned=*/true};
  }
  bool is_ignorable_checkpoint_tensor(const std::string& name) const override;
  int parameter_group(const std::string& name) const override;
  // A BertModel checkpoint names its tensors without the "bert." of this class's.
  std::string base_model_prefix() const override { return "bert."; }
  std::vector<std::string> task_head_parameters() const override { return {"classifier.weight", "classifier.bias"}; }
  void initialise_task_head() override;  // weight ~ N(0, initializer_range), bias 0

  std::shared_ptr<BertModel> bert;
  std::shared_ptr<Linear> classifier;

 private:
  BertConfig config_;
};

}  // namespace mpitrain::models
