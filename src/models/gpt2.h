// GPT2LMHeadModel: Conv1D weights stored [in, out], learned positions, fused c_attn, tied lm_head.
#pragma once

#include <memory>

#include "src/models/layers.h"
#include "src/models/model.h"

namespace mpitrain::models {

struct Gpt2Config {
  std::int64_t vocab_size, n_embd, n_layer, n_head, n_positions, n_inner;
  double layer_norm_epsilon, attn_pdrop, resid_pdrop, embd_pdrop, initializer_range;
  bool scale_attn_weights, scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, tie_word_embeddings;
  std::string activation_function;

  static Gpt2Config from_json(const nlohmann::json& config, const std::string& source);
};

class Gpt2Attention : public torch::nn::Module {
 public:
  Gpt2Attention(const Gpt2Config& c, std::int64_t layer_idx, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  std::shared_ptr<Conv1D> c_attn, c_proj;

 private:
  Gpt2Config config_;
  std::int64_t layer_idx_;
  TensorParallelPtr tp_;
};

class Gpt2MLP : public torch::nn::Module {
 public:
  Gpt2MLP(const Gpt2Config& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x);
  std::shared_ptr<Conv1D> c_fc, c_proj;

 private:
  Gpt2Config config_;
  TensorParallelPtr tp_;
};

class Gpt2Block : public torch::nn::Module {
 public:
  Gpt2Block(const Gpt2Config& c, std::int64_t layer_idx, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  std::shared_ptr<LayerNorm> ln_1;
  std::shared_ptr<Gpt2Attention> attn;
  std::shared_ptr<LayerNorm> ln_2;
  std::shared_ptr<Gpt2MLP> mlp;

 private:
  double resid_pdrop_;
};

class Gpt2Model : public torch::nn::Module {
 public:
  Gpt2Model(const Gpt2Config& c, const TensorParallelPtr& tp, GroupRunnerPtr groups);
  torch::Tensor forward(const ModelInputs& inputs);
  std::shared_ptr<Embedding> wte, wpe;
  torch::nn::ModuleList h;
  std::shared_ptr<LayerNorm> ln_f;

 private:
  Gpt2Config config_;
  GroupRunnerPtr groups_;
};

class Gpt2LMHeadModel : public HfModel {
 public:
  Gpt2LMHeadModel(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp = nullptr);
  std::int64_t logits_vocab_start() const override { return transformer->wte->first_row(); }
  int parameter_group(const std::string& name) const override;
  torch::Tensor forward(const ModelInputs& inputs) override;
  std::string architecture() const override { return "GPT2LMHeadModel"; }
  bool is_causal_lm() const override { return true; }
  bool ties_word_embeddings() const override { return config_.tie_word_embeddings; }
  PositionLimit position_limit() const override { return {config_.n_positions, "n_positions", /*learned=*/true}; }
  bool is_ignorable_checkpoint_tensor(const std::string& name) const override;
  std::string base_model_prefix() const override { return "transformer."; }

  std::shared_ptr<Gpt2Model> transformer;
  std::shared_ptr<Linear> lm_head;  // null when tied to transformer.wte

 private:
  Gpt2Config config_;
};

}  // namespace mpitrain::models
