// The rotary decoder stack shared by Llama, Qwen2, Mistral, Gemma, Gemma2 and Phi-3: attention (GQA, RoPE, windows, soft-caps), gated MLP, norms, under transformers' module names.
#pragma once

#include <memory>

#include "src/models/decoder_config.h"
#include "src/models/layers.h"
#include "src/models/model.h"

namespace mpitrain::models {

// self_attn: q_proj, k_proj, v_proj, o_proj, or (fused_projections) o_proj then qkv_proj, in
// transformers' registration order. Under tp each rank computes its query heads and the kv
// heads they read: separate projections are column-split (kv ones shared where tp exceeds the
// kv heads); a fused qkv_proj is split into each rank's q, k and v rows where every part
// divides alike (as many kv heads as query heads), and otherwise held whole, each rank
// computing with its own rows and the group summing the gradient.
class DecoderAttention : public torch::nn::Module {
 public:
  DecoderAttention(const DecoderConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj, qkv_proj;

 private:
  // q, k, v [batch, heads, seq, head_dim] of this rank's heads.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> project(const torch::Tensor& x);
  TensorParallelPtr tp_;
  std::int64_t heads_, kv_heads_, head_dim_;  // this rank's query and kv heads
  std::int64_t q_row_, kv_row_;               // a whole qkv_proj: this rank's first q row, first k (and v) row
  std::int64_t q_rows_total_ = 0, kv_rows_total_ = 0;
  bool whole_qkv_ = false;
  double dropout_, scale_, softcap_;
};

// mlp: gate_proj, up_proj, down_proj (or gate_up_proj [gate | up], down_proj):
// down(act(gate(x)) * up(x)); column-split gate and up, row-split down.
class DecoderMLP : public torch::nn::Module {
 public:
  DecoderMLP(const DecoderConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x);
  std::shared_ptr<Linear> gate_proj, up_proj, gate_up_proj, down_proj;

 private:
  TensorParallelPtr tp_;
  std::string act_;
};

// Pre-norm residual blocks; Gemma2's sandwich adds post_attention, pre_feedforward and
// post_feedforward norms (its post_attention_layernorm follows attention, not precedes the MLP).
class DecoderLayer : public torch::nn::Module {
 public:
  DecoderLayer(const DecoderConfig& c, const TensorParallelPtr& tp);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);
  std::shared_ptr<DecoderAttention> self_attn;
  std::shared_ptr<DecoderMLP> mlp;
  std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
      post_feedforward_layernorm;

 private:
  bool sandwich_;
  double residual_dropout_;
};

// embed_tokens, layers, norm (transformers' <Family>Model, under "model.").
class DecoderModel : public torch::nn::Module {
 public:
  DecoderModel(const DecoderConfig& c, const TensorParallelPtr& tp, GroupRunnerPtr groups);
  torch::Tensor forward(const ModelInputs& inputs);  // final hidden states
  std::shared_ptr<Embedding> embed_tokens;
  torch::nn::ModuleList layers;
  std::shared_ptr<RMSNorm> norm;

 private:
  DecoderConfig config_;
  GroupRunnerPtr groups_;
  torch::Tensor inv_freq_;  // float32, recomputed from the config (never saved)
};

}  // namespace mpitrain::models
