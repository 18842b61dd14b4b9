// LlamaForCausalLM: GQA, RoPE (default, linear, llama3 scaling), RMSNorm, SwiGLU; tied or untied lm_head.
#pragma once

#include <memory>
#include <vector>

#include "src/models/layers.h"
#include "src/models/model.h"

namespace mpitrain::models {

struct LlamaConfig {
  std::int64_t vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
      num_key_value_heads, head_dim, max_position_embeddings;
  double rms_norm_eps, rope_theta, attention_dropout, initializer_range;
  bool attention_bias, mlp_bias, tie_word_embeddings;
  std::string hidden_act;
  nlohmann::json rope_scaling;  // null or transformers' rope_scaling dict

  static LlamaConfig from_json(const nlohmann::json& config, const std::string& source);
};

class LlamaAttention : public torch::nn::Module {
 public:
  LlamaAttention(const LlamaConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj;

 private:
  TensorParallelPtr tp_;
  std::int64_t heads_, kv_heads_, head_dim_;  // this rank's query and kv heads
  double dropout_;
};

class LlamaMLP : public torch::nn::Module {
 public:
  LlamaMLP(const LlamaConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x);
  std::shared_ptr<Linear> gate_proj, up_proj, down_proj;

 private:
  TensorParallelPtr tp_;
  std::string act_;
};

class LlamaDecoderLayer : public torch::nn::Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);
  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<LlamaMLP> mlp;
  std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm;
};

class LlamaModel : public torch::nn::Module {
 public:
  LlamaModel(const LlamaConfig& c, const TensorParallelPtr& tp, GroupRunnerPtr groups);
  torch::Tensor forward(const ModelInputs& inputs);  // final hidden states
  std::shared_ptr<Embedding> embed_tokens;
  torch::nn::ModuleList layers;
  std::shared_ptr<RMSNorm> norm;

 private:
  LlamaConfig config_;
  GroupRunnerPtr groups_;
  torch::Tensor inv_freq_;  // float32, recomputed from the config (never saved)
};

// What every Llama head shares (transformers' LlamaPreTrainedModel): the config checked
// against tp, the keys transformers writes, the decoder stack under "model.", forward groups.
class LlamaPreTrainedModel : public HfModel {
 public:
  PositionLimit position_limit() const override {
    return {config_.max_position_embeddings, "max_position_embeddings", /*learned=*/false};
  }
  bool is_ignorable_checkpoint_tensor(const std::string& name) const override;
  int parameter_group(const std::string& name) const override;
  const LlamaConfig& llama_config() const { return config_; }

  std::shared_ptr<LlamaModel> model;

 protected:
  // Registers `model`; the head is the subclass's to register after it (module order).
  LlamaPreTrainedModel(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp,
                       const std::string& architecture);
  int head_group() const { return static_cast<int>(config_.num_hidden_layers) + 2; }

 private:
  LlamaConfig config_;
};

class LlamaForCausalLM : public LlamaPreTrainedModel {
 public:
  LlamaForCausalLM(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp = nullptr);
  torch::Tensor forward(const ModelInputs& inputs) override;
  std::string architecture() const override { return "LlamaForCausalLM"; }
  bool is_causal_lm() const override { return true; }
  bool ties_word_embeddings() const override { return llama_config().tie_word_embeddings; }
  bool is_ignorable_checkpoint_tensor(const std::string& name) const override;
  std::int64_t logits_vocab_start() const override { return model->embed_tokens->first_row(); }
  std::string sequence_classifier_architecture() const override { return "LlamaForSequenceClassification"; }

  std::shared_ptr<Linear> lm_head;  // null when tied to model.embed_tokens
};

// Inverse RoPE frequencies for the config, with transformers' rope_scaling rules applied.
torch::Tensor llama_inv_freq(const LlamaConfig& c);

}  // namespace mpitrain::models
