// GPT2LMHeadModel: Conv1D weights stored [in, out], learned positions, fused c_attn, tied lm_head.
#include "src/models/gpt2.h"

#include <cmath>

#include "src/models/attention.h"
#include "src/models/config_reader.h"

namespace mpitrain::models {

Gpt2Config Gpt2Config::from_json(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  Gpt2Config c{};
  c.vocab_size = r.require_int("vocab_size");
  c.n_embd = r.require_int("n_embd");
  c.n_layer = r.require_int("n_layer");
  c.n_head = r.require_int("n_head");
  c.n_positions = r.require_int("n_positions");
  if (c.n_embd % c.n_head != 0)
    r.fail("n_embd " + std::to_string(c.n_embd) + " is not divisible by n_head " + std::to_string(c.n_head));
  c.n_inner = r.int_or("n_inner", 4 * c.n_embd);
  c.layer_norm_epsilon = r.positive_double_or("layer_norm_epsilon", 1e-5);
  c.attn_pdrop = r.probability_or("attn_pdrop", 0.1);
  c.resid_pdrop = r.probability_or("resid_pdrop", 0.1);
  c.embd_pdrop = r.probability_or("embd_pdrop", 0.1);
  c.initializer_range = r.double_or("initializer_range", 0.02);
  c.scale_attn_weights = r.bool_or("scale_attn_weights", true);
  c.scale_attn_by_inverse_layer_idx = r.bool_or("scale_attn_by_inverse_layer_idx", false);
  c.reorder_and_upcast_attn = r.bool_or("reorder_and_upcast_attn", false);
  c.tie_word_embeddings = r.bool_or("tie_word_embeddings", true);
  c.activation_function = r.activation_or("activation_function", "gelu_new");
  return c;
}

Gpt2Attention::Gpt2Attention(const Gpt2Config& c, std::int64_t layer_idx, const TensorParallelPtr& tp)
    : config_(c), layer_idx_(layer_idx), tp_(tp) {
  // c_attn's columns are q | k | v: under tp each rank takes its heads' columns of all three.
  TpSplit fused{TpSplit::kColumn};
  fused.parts = 3;
  c_attn = register_module("c_attn", std::make_shared<Conv1D>(c.n_embd, 3 * c.n_embd, c.initializer_range, tp, fused));
  // transformers scales c_proj's init by 1/sqrt(2 * n_layer) (GPT-2 paper).
  c_proj = register_module("c_proj", std::make_shared<Conv1D>(c.n_embd, c.n_embd,
                                                              c.initializer_range / std::sqrt(2.0 * c.n_layer), tp,
                                                              TpSplit{TpSplit::kRow}));
}

torch::Tensor Gpt2Attention::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const auto width = config_.n_embd / tp_->size(), heads = config_.n_head / tp_->size();
  auto qkv = c_attn->forward(tp_->copy_to_region(x)).split(width, 2);
  auto q = split_heads(qkv[0], heads), k = split_heads(qkv[1], heads), v = split_heads(qkv[2], heads);
  AttentionOptions options;
  options.scale = 1.0;
  if (config_.scale_attn_weights) options.scale /= std::sqrt(static_cast<double>(v.size(-1)));
  if (config_.scale_attn_by_inverse_layer_idx) options.scale /= static_cast<double>(layer_idx_ + 1);
  options.softmax_in_float32 = config_.reorder_and_upcast_attn;
  options.dropout = config_.attn_pdrop;
  options.training = is_training();
  options.causal = true;
  auto out = c_proj->forward(dot_product_attention(q, k, v, mask, options));
  return torch::dropout(out, config_.resid_pdrop, is_training());
}

Gpt2MLP::Gpt2MLP(const Gpt2Config& c, const TensorParallelPtr& tp) : config_(c), tp_(tp) {
  c_fc = register_module("c_fc", std::make_shared<Conv1D>(c.n_embd, c.n_inner, c.initializer_range, tp,
                                                          TpSplit{TpSplit::kColumn}));
  c_proj = register_module("c_proj", std::make_shared<Conv1D>(c.n_inner, c.n_embd,
                                                              c.initializer_range / std::sqrt(2.0 * c.n_layer), tp,
                                                              TpSplit{TpSplit::kRow}));
}

torch::Tensor Gpt2MLP::forward(const torch::Tensor& x) {
  auto h = c_proj->forward(activation(config_.activation_function, c_fc->forward(tp_->copy_to_region(x))));
  return torch::dropout(h, config_.resid_pdrop, is_training());
}

Gpt2Block::Gpt2Block(const Gpt2Config& c, std::int64_t layer_idx, const TensorParallelPtr& tp)
    : resid_pdrop_(c.resid_pdrop) {
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(c.n_embd, c.layer_norm_epsilon));
  attn = register_module("attn", std::make_shared<Gpt2Attention>(c, layer_idx, tp));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(c.n_embd, c.layer_norm_epsilon));
  mlp = register_module("mlp", std::make_shared<Gpt2MLP>(c, tp));
}

torch::Tensor Gpt2Block::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto h = x + attn->forward(ln_1->forward(x), mask);
  return h + mlp->forward(ln_2->forward(h));
}

Gpt2Model::Gpt2Model(const Gpt2Config& c, const TensorParallelPtr& tp, GroupRunnerPtr groups)
    : config_(c), groups_(std::move(groups)) {
  wte = register_module("wte", std::make_shared<Embedding>(c.vocab_size, c.n_embd, c.initializer_range, tp));
  wpe = register_module("wpe", std::make_shared<Embedding>(c.n_positions, c.n_embd, c.initializer_range));
  h = register_module("h", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.n_layer; ++i) h->push_back(std::make_shared<Gpt2Block>(c, i, tp));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(c.n_embd, c.layer_norm_epsilon));
}

torch::Tensor Gpt2Model::forward(const ModelInputs& inputs) {
  const auto seq = inputs.input_ids.size(1);
  if (seq > config_.n_positions)
    throw std::invalid_argument("sequence length " + std::to_string(seq) + " exceeds n_positions " +
                                std::to_string(config_.n_positions));
  auto positions = inputs.position_ids.defined()
                       ? inputs.position_ids
                       : torch::arange(seq, torch::TensorOptions().dtype(torch::kInt64).device(inputs.input_ids.device()));
  if (inputs.position_ids.defined() && positions.max().item<std::int64_t>() >= config_.n_positions)
    throw std::invalid_argument("a position id reaches n_positions " + std::to_string(config_.n_positions));
  auto x = groups_->run({0}, [&] { return wte->forward(inputs.input_ids) + wpe->forward(positions); });
  x = torch::dropout(x, config_.embd_pdrop, is_training());
  const auto mask = causal_decoder_mask(inputs.attention_mask, inputs.position_ids, 0, x);
  for (std::size_t i = 0; i < h->size(); ++i)
    x = groups_->run_layer(1 + static_cast<int>(i), x,
                           [block = h->ptr<Gpt2Block>(i), mask](const torch::Tensor& in) { return block->forward(in, mask); });
  return groups_->run({1 + static_cast<int>(h->size())}, [&] { return ln_f->forward(x); });
}

Gpt2LMHeadModel::Gpt2LMHeadModel(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp)
    : HfModel(config, std::move(tp)), config_(Gpt2Config::from_json(config, source)) {
  const auto& c = config_;
  require_divisible_by_tp(source, "n_head", c.n_head);
  require_divisible_by_tp(source, "n_inner", c.n_inner);
  require_divisible_by_tp(source, "vocab_size", c.vocab_size);
  complete_config({{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"},
                   {"activation_function", c.activation_function}, {"attn_pdrop", c.attn_pdrop},
                   {"bos_token_id", 50256}, {"embd_pdrop", c.embd_pdrop}, {"eos_token_id", 50256},
                   {"initializer_range", c.initializer_range}, {"layer_norm_epsilon", c.layer_norm_epsilon},
                   {"n_embd", c.n_embd}, {"n_head", c.n_head}, {"n_inner", nullptr}, {"n_layer", c.n_layer},
                   {"n_positions", c.n_positions}, {"reorder_and_upcast_attn", c.reorder_and_upcast_attn},
                   {"resid_pdrop", c.resid_pdrop}, {"scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx},
                   {"scale_attn_weights", c.scale_attn_weights}, {"summary_activation", nullptr},
                   {"summary_first_dropout", 0.1}, {"summary_proj_to_labels", true}, {"summary_type", "cls_index"},
                   {"summary_use_proj", true}, {"use_cache", true}, {"vocab_size", c.vocab_size}});
  transformer = register_module("transformer", std::make_shared<Gpt2Model>(config_, tensor_parallel_ptr(), group_runner()));
  if (!config_.tie_word_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(config_.n_embd, config_.vocab_size, false,
                                                                  config_.initializer_range, tensor_parallel_ptr(),
                                                                  TpSplit{TpSplit::kColumn}));
}

torch::Tensor Gpt2LMHeadModel::forward(const ModelInputs& inputs) {
  return causal_lm_logits(transformer->forward(inputs), lm_head, transformer->wte->weight,
                          static_cast<int>(config_.n_layer) + 2);
}

int Gpt2LMHeadModel::parameter_group(const std::string& name) const {
  return forward_group(name, config_.n_layer, {"transformer.wte.", "transformer.wpe."}, "transformer.ln_f.");
}

bool Gpt2LMHeadModel::is_ignorable_checkpoint_tensor(const std::string& name) const {
  // The causal-mask buffers older GPT-2 checkpoints carry, and a tied head.
  if (config_.tie_word_embeddings && name == "lm_head.weight") return true;
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias");
}

}  // namespace mpitrain::models
