// The rotary decoder stack shared by Llama, Qwen2, Mistral, Gemma, Gemma2 and Phi-3: attention (GQA, RoPE, windows, soft-caps), gated MLP, norms, under transformers' module names.
#include "src/models/decoder.h"

#include <cmath>
#include <map>

#include "src/models/attention.h"
#include "src/models/fused/fused_ops.h"
#include "src/models/rope.h"

namespace mpitrain::models {

DecoderAttention::DecoderAttention(const DecoderConfig& c, const TensorParallelPtr& tp)
    : tp_(tp),
      heads_(c.num_attention_heads / tp->size()),
      head_dim_(c.head_dim),
      dropout_(c.attention_dropout),
      scale_(c.attention_scaling()),
      softcap_(c.attn_logit_softcapping) {
  const double s = c.initializer_range;
  const auto q_size = c.num_attention_heads * head_dim_, kv_size = c.num_key_value_heads * head_dim_;
  // Heads are split over the tp ranks; kv heads too when tp divides them, otherwise each rank
  // holds the one kv head its query heads read (the ranks reading it share that slice).
  TpSplit kv_split{TpSplit::kColumn};
  std::int64_t first_kv_head = 0;
  if (c.num_key_value_heads % tp->size() == 0) {
    kv_heads_ = c.num_key_value_heads / tp->size();
    first_kv_head = tp->rank() * kv_heads_;
  } else {
    kv_heads_ = 1;
    kv_split.index = first_kv_head = tp->rank() / (tp->size() / c.num_key_value_heads);
    kv_split.count = c.num_key_value_heads;
  }
  const TpSplit row{TpSplit::kRow};
  if (!c.fused_projections) {
    q_proj = register_module("q_proj", std::make_shared<Linear>(c.hidden_size, q_size, c.qkv_bias, s, tp,
                                                                TpSplit{TpSplit::kColumn}));
    k_proj = register_module("k_proj", std::make_shared<Linear>(c.hidden_size, kv_size, c.qkv_bias, s, tp, kv_split));
    v_proj = register_module("v_proj", std::make_shared<Linear>(c.hidden_size, kv_size, c.qkv_bias, s, tp, kv_split));
    o_proj = register_module("o_proj", std::make_shared<Linear>(q_size, c.hidden_size, c.o_bias, s, tp, row));
    return;
  }
  o_proj = register_module("o_proj", std::make_shared<Linear>(q_size, c.hidden_size, c.o_bias, s, tp, row));
  // [q | k | v] rows. Equal parts (as many kv heads as query heads): each rank holds its rows
  // of every part, one block of the [3, rows] view, as GPT-2's c_attn. Unequal parts are no
  // such block: the tensor is held whole and each rank multiplies by its own rows only, so
  // its gradient is its rows' part and the group sums it.
  TpSplit fused{TpSplit::kColumn};
  if (c.num_key_value_heads == c.num_attention_heads) {
    fused.parts = 3;
  } else {
    fused.index = 0, fused.count = 1;
    whole_qkv_ = tp->size() > 1;  // one rank holds all of it: its rows are [q | k | v] already
    q_rows_total_ = q_size, kv_rows_total_ = kv_size;
    q_row_ = tp->rank() * heads_ * head_dim_;
    kv_row_ = first_kv_head * head_dim_;
  }
  qkv_proj = register_module("qkv_proj",
                             std::make_shared<Linear>(c.hidden_size, q_size + 2 * kv_size, c.qkv_bias, s, tp, fused));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> DecoderAttention::project(const torch::Tensor& x) {
  if (q_proj) return {split_heads(q_proj->forward(x), heads_), split_heads(k_proj->forward(x), kv_heads_),
                      split_heads(v_proj->forward(x), kv_heads_)};
  const auto q_rows = heads_ * head_dim_, kv_rows = kv_heads_ * head_dim_;
  if (!whole_qkv_) {  // this rank's [q | k | v] rows
    auto qkv = qkv_proj->forward(x).split({q_rows, kv_rows, kv_rows}, -1);
    return {split_heads(qkv[0], heads_), split_heads(qkv[1], kv_heads_), split_heads(qkv[2], kv_heads_)};
  }
  // This path multiplies by rows of the weight itself, past Linear::forward and its delta.
  if (qkv_proj->has_output_delta())
    throw std::runtime_error("qkv_proj: LoRA on a fused qkv_proj held whole under tensor parallelism (fewer kv heads "
                             "than heads) is not implemented; target other modules or use tensor_parallel_size 1");
  const auto rows = [&](std::int64_t start, std::int64_t count) {
    const auto& b = qkv_proj->bias;
    return torch::linear(x, qkv_proj->weight.narrow(0, start, count), b.defined() ? b.narrow(0, start, count) : b);
  };
  return {split_heads(rows(q_row_, q_rows), heads_), split_heads(rows(q_rows_total_ + kv_row_, kv_rows), kv_heads_),
          split_heads(rows(q_rows_total_ + kv_rows_total_ + kv_row_, kv_rows), kv_heads_)};
}

torch::Tensor DecoderAttention::forward(const torch::Tensor& input, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& mask) {
  const auto x = tp_->copy_to_region(input);  // one f for q, k and v: one gradient all-reduce
  auto [q, k, v] = project(x);
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  AttentionOptions options;
  options.scale = scale_;
  options.softmax_in_float32 = true;
  options.dropout = dropout_;
  options.training = is_training();
  options.causal = true;
  options.logit_softcap = softcap_;
  return o_proj->forward(dot_product_attention(q, k, v, mask, options));
}

DecoderMLP::DecoderMLP(const DecoderConfig& c, const TensorParallelPtr& tp) : tp_(tp), act_(c.hidden_act) {
  const double s = c.initializer_range;
  const TpSplit column{TpSplit::kColumn}, row{TpSplit::kRow};
  if (c.fused_projections) {
    TpSplit halves{TpSplit::kColumn};
    halves.parts = 2;  // each rank holds its gate rows and the matching up rows
    gate_up_proj = register_module(
        "gate_up_proj", std::make_shared<Linear>(c.hidden_size, 2 * c.intermediate_size, c.mlp_bias, s, tp, halves));
  } else {
    gate_proj = register_module("gate_proj",
                                std::make_shared<Linear>(c.hidden_size, c.intermediate_size, c.mlp_bias, s, tp, column));
    up_proj = register_module("up_proj",
                              std::make_shared<Linear>(c.hidden_size, c.intermediate_size, c.mlp_bias, s, tp, column));
  }
  down_proj = register_module("down_proj",
                              std::make_shared<Linear>(c.intermediate_size, c.hidden_size, c.mlp_bias, s, tp, row));
}

torch::Tensor DecoderMLP::forward(const torch::Tensor& input) {
  const auto x = tp_->copy_to_region(input);
  const bool silu = act_ == "silu" || act_ == "swish";
  const auto gated = [&](const torch::Tensor& gate, const torch::Tensor& up) {
    return silu && fused::swiglu_fusable(gate, up) ? fused::swiglu(gate, up) : activation(act_, gate) * up;
  };
  if (gate_up_proj) {
    const auto halves = gate_up_proj->forward(x).chunk(2, -1);
    return down_proj->forward(gated(halves[0], halves[1]));
  }
  return down_proj->forward(gated(gate_proj->forward(x), up_proj->forward(x)));
}

DecoderLayer::DecoderLayer(const DecoderConfig& c, const TensorParallelPtr& tp)
    : sandwich_(c.sandwich_norms), residual_dropout_(c.residual_dropout) {
  // Registration order is transformers' module order: it decides the state-dict order and so the sharding.
  self_attn = register_module("self_attn", std::make_shared<DecoderAttention>(c, tp));
  mlp = register_module("mlp", std::make_shared<DecoderMLP>(c, tp));
  const auto norm = [&] { return std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps, c.norm_adds_one); };
  input_layernorm = register_module("input_layernorm", norm());
  post_attention_layernorm = register_module("post_attention_layernorm", norm());
  if (sandwich_) {
    pre_feedforward_layernorm = register_module("pre_feedforward_layernorm", norm());
    post_feedforward_layernorm = register_module("post_feedforward_layernorm", norm());
  }
}

torch::Tensor DecoderLayer::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                    const torch::Tensor& mask) {
  const auto dropped = [&](const torch::Tensor& t) {
    return residual_dropout_ > 0 ? torch::dropout(t, residual_dropout_, is_training()) : t;
  };
  if (sandwich_) {
    auto h = x + post_attention_layernorm->forward(self_attn->forward(input_layernorm->forward(x), cos, sin, mask));
    return h + post_feedforward_layernorm->forward(mlp->forward(pre_feedforward_layernorm->forward(h)));
  }
  auto h = x + dropped(self_attn->forward(input_layernorm->forward(x), cos, sin, mask));
  return h + dropped(mlp->forward(post_attention_layernorm->forward(h)));
}

DecoderModel::DecoderModel(const DecoderConfig& c, const TensorParallelPtr& tp, GroupRunnerPtr groups)
    : config_(c), groups_(std::move(groups)) {
  embed_tokens = register_module("embed_tokens",
                                 std::make_shared<Embedding>(c.vocab_size, c.hidden_size, c.initializer_range, tp));
  layers = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(std::make_shared<DecoderLayer>(c, tp));
  norm = register_module("norm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps, c.norm_adds_one));
  inv_freq_ = rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling);
}

torch::Tensor DecoderModel::forward(const ModelInputs& inputs) {
  const auto seq = inputs.input_ids.size(1);
  auto h = groups_->run({0}, [&] { return embed_tokens->forward(inputs.input_ids); });
  // Gemma's normaliser is sqrt(hidden_size) cast to the compute dtype first, as transformers casts it.
  if (config_.scale_embeddings)
    h = h * torch::scalar_tensor(std::sqrt(static_cast<double>(config_.hidden_size)), h.options());
  torch::Tensor cos, sin;
  std::tie(cos, sin) = rope_angles(inv_freq_, inputs.position_ids, seq, h.scalar_type(), h.device());
  // One mask for the global layers and one for the sliding ones, each made once per forward.
  std::map<std::int64_t, torch::Tensor> masks;
  for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const auto window = config_.window_of_layer(i);
    if (!masks.count(window)) masks[window] = causal_decoder_mask(inputs.attention_mask, inputs.position_ids, window, h);
  }
  for (std::size_t i = 0; i < layers->size(); ++i)
    h = groups_->run_layer(1 + static_cast<int>(i), h,
                           [layer = layers->ptr<DecoderLayer>(i), cos, sin,
                            mask = masks.at(config_.window_of_layer(static_cast<std::int64_t>(i)))](const torch::Tensor& x) {
                             return layer->forward(x, cos, sin, mask);
                           });
  return groups_->run({1 + static_cast<int>(layers->size())}, [&] { return norm->forward(h); });
}

}  // namespace mpitrain::models
