// LlamaForCausalLM: GQA, RoPE (default, linear, llama3 scaling), RMSNorm, SwiGLU; tied or untied lm_head.
#include "src/models/llama.h"

#include <cmath>

#include "src/models/attention.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/config_reader.h"

namespace mpitrain::models {

LlamaConfig LlamaConfig::from_json(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  LlamaConfig c{};
  c.vocab_size = r.require_int("vocab_size");
  c.hidden_size = r.require_int("hidden_size");
  c.intermediate_size = r.require_int("intermediate_size");
  c.num_hidden_layers = r.require_int("num_hidden_layers");
  c.num_attention_heads = r.require_int("num_attention_heads");
  c.num_key_value_heads = r.int_or("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = r.int_or("max_position_embeddings", 2048);
  if (!r.has("head_dim") && c.hidden_size % c.num_attention_heads != 0)
    r.fail("hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
           std::to_string(c.num_attention_heads));
  c.head_dim = r.int_or("head_dim", c.hidden_size / c.num_attention_heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) r.fail("head_dim must be a positive even number for RoPE");
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    r.fail("num_attention_heads " + std::to_string(c.num_attention_heads) +
           " is not a multiple of num_key_value_heads " + std::to_string(c.num_key_value_heads));
  c.rms_norm_eps = r.positive_double_or("rms_norm_eps", 1e-6);
  c.rope_theta = r.positive_double_or("rope_theta", 10000.0);
  c.attention_dropout = r.probability_or("attention_dropout", 0.0);
  c.initializer_range = r.double_or("initializer_range", 0.02);
  c.attention_bias = r.bool_or("attention_bias", false);
  c.mlp_bias = r.bool_or("mlp_bias", false);
  c.tie_word_embeddings = r.bool_or("tie_word_embeddings", false);
  c.hidden_act = r.activation_or("hidden_act", "silu");
  auto scaling = config.find("rope_scaling");
  c.rope_scaling = scaling == config.end() ? nlohmann::json() : *scaling;
  if (!c.rope_scaling.is_null()) {
    if (!c.rope_scaling.is_object()) r.fail("rope_scaling must be null or an object");
    const auto type = c.rope_scaling.value("rope_type", c.rope_scaling.value("type", std::string("default")));
    if (type != "default" && type != "linear" && type != "llama3")
      r.fail("rope_scaling type '" + type + "' is not supported (default, linear, llama3)");
    if (type != "default" && !c.rope_scaling.contains("factor")) r.fail("rope_scaling needs a 'factor'");
  }
  return c;
}

torch::Tensor llama_inv_freq(const LlamaConfig& c) {
  auto exponents = torch::arange(0, c.head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(c.head_dim);
  auto inv_freq = 1.0 / torch::pow(c.rope_theta, exponents);
  if (c.rope_scaling.is_null()) return inv_freq;
  const auto type = c.rope_scaling.value("rope_type", c.rope_scaling.value("type", std::string("default")));
  if (type == "default") return inv_freq;
  const double factor = c.rope_scaling.at("factor").get<double>();
  if (type == "linear") return inv_freq / factor;
  // llama3: long wavelengths slowed by `factor`, short ones kept, a smooth blend in between.
  const double low = c.rope_scaling.value("low_freq_factor", 1.0);
  const double high = c.rope_scaling.value("high_freq_factor", 4.0);
  const double original = c.rope_scaling.value("original_max_position_embeddings", 8192.0);
  const double low_wavelen = original / low, high_wavelen = original / high;
  auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = torch::where(wavelen > low_wavelen, inv_freq / factor, inv_freq);
  auto smooth = (original / wavelen - low) / (high - low);
  auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
  auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

LlamaAttention::LlamaAttention(const LlamaConfig& c, const TensorParallelPtr& tp)
    : tp_(tp), heads_(c.num_attention_heads / tp->size()), head_dim_(c.head_dim), dropout_(c.attention_dropout) {
  const double s = c.initializer_range;
  const auto q_size = c.num_attention_heads * head_dim_, kv_size = c.num_key_value_heads * head_dim_;
  // Heads are split over the tp ranks; kv heads too when tp divides them, otherwise each rank
  // holds the one kv head its query heads read (the ranks reading it share that slice).
  TpSplit kv_split{TpSplit::kColumn};
  if (c.num_key_value_heads % tp->size() == 0) {
    kv_heads_ = c.num_key_value_heads / tp->size();
  } else {
    kv_heads_ = 1;
    kv_split.index = tp->rank() / (tp->size() / c.num_key_value_heads);
    kv_split.count = c.num_key_value_heads;
  }
  q_proj = register_module("q_proj", std::make_shared<Linear>(c.hidden_size, q_size, c.attention_bias, s, tp,
                                                              TpSplit{TpSplit::kColumn}));
  k_proj = register_module("k_proj", std::make_shared<Linear>(c.hidden_size, kv_size, c.attention_bias, s, tp, kv_split));
  v_proj = register_module("v_proj", std::make_shared<Linear>(c.hidden_size, kv_size, c.attention_bias, s, tp, kv_split));
  o_proj = register_module("o_proj", std::make_shared<Linear>(q_size, c.hidden_size, c.attention_bias, s, tp,
                                                              TpSplit{TpSplit::kRow}));
}

torch::Tensor LlamaAttention::forward(const torch::Tensor& input, const torch::Tensor& cos, const torch::Tensor& sin,
                                      const torch::Tensor& mask) {
  const auto x = tp_->copy_to_region(input);  // one f for q, k and v: one gradient all-reduce
  auto q = split_heads(q_proj->forward(x), heads_);
  auto k = split_heads(k_proj->forward(x), kv_heads_);
  auto v = split_heads(v_proj->forward(x), kv_heads_);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (kv_heads_ != heads_) {  // GQA: query head h reads kv head h / (heads / kv_heads)
    k = k.repeat_interleave(heads_ / kv_heads_, 1);
    v = v.repeat_interleave(heads_ / kv_heads_, 1);
  }
  AttentionOptions options;
  options.scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  options.softmax_in_float32 = true;
  options.dropout = dropout_;
  options.training = is_training();
  options.causal = true;
  return o_proj->forward(dot_product_attention(q, k, v, mask, options));
}

LlamaMLP::LlamaMLP(const LlamaConfig& c, const TensorParallelPtr& tp) : tp_(tp), act_(c.hidden_act) {
  const double s = c.initializer_range;
  const TpSplit column{TpSplit::kColumn}, row{TpSplit::kRow};
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(c.hidden_size, c.intermediate_size, c.mlp_bias, s, tp, column));
  up_proj = register_module("up_proj", std::make_shared<Linear>(c.hidden_size, c.intermediate_size, c.mlp_bias, s, tp, column));
  down_proj = register_module("down_proj", std::make_shared<Linear>(c.intermediate_size, c.hidden_size, c.mlp_bias, s, tp, row));
}

torch::Tensor LlamaMLP::forward(const torch::Tensor& input) {
  const auto x = tp_->copy_to_region(input);
  return down_proj->forward(activation(act_, gate_proj->forward(x)) * up_proj->forward(x));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& c, const TensorParallelPtr& tp) {
  // Registration order is transformers' module order: it decides the state-dict order and so the sharding.
  self_attn = register_module("self_attn", std::make_shared<LlamaAttention>(c, tp));
  mlp = register_module("mlp", std::make_shared<LlamaMLP>(c, tp));
  input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaDecoderLayer::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                         const torch::Tensor& mask) {
  auto h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, mask);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

LlamaModel::LlamaModel(const LlamaConfig& c, const TensorParallelPtr& tp, GroupRunnerPtr groups)
    : config_(c), groups_(std::move(groups)) {
  embed_tokens = register_module("embed_tokens",
                                 std::make_shared<Embedding>(c.vocab_size, c.hidden_size, c.initializer_range, tp));
  layers = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(std::make_shared<LlamaDecoderLayer>(c, tp));
  norm = register_module("norm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps));
  inv_freq_ = llama_inv_freq(c);
}

torch::Tensor LlamaModel::forward(const ModelInputs& inputs) {
  const auto seq = inputs.input_ids.size(1);
  auto h = groups_->run({0}, [&] { return embed_tokens->forward(inputs.input_ids); });
  const auto dtype = h.scalar_type();
  // RoPE angles in float32 whatever the compute dtype, then cast, as transformers does:
  // [1 or batch, 1, seq, head_dim], broadcast over the heads.
  auto positions = inputs.position_ids.defined()
                       ? inputs.position_ids.to(h.device(), torch::kFloat32)
                       : torch::arange(seq, torch::TensorOptions().dtype(torch::kFloat32).device(h.device())).unsqueeze(0);
  auto freqs = positions.unsqueeze(-1) * inv_freq_.to(h.device());
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);
  auto cos = emb.cos().to(dtype), sin = emb.sin().to(dtype);
  const auto mask = causal_decoder_mask(inputs.attention_mask, inputs.position_ids, 0, h);
  for (std::size_t i = 0; i < layers->size(); ++i)
    h = groups_->run_layer(1 + static_cast<int>(i), h,
                           [layer = layers->ptr<LlamaDecoderLayer>(i), cos, sin, mask](const torch::Tensor& x) {
                             return layer->forward(x, cos, sin, mask);
                           });
  return groups_->run({1 + static_cast<int>(layers->size())}, [&] { return norm->forward(h); });
}

LlamaPreTrainedModel::LlamaPreTrainedModel(const nlohmann::json& config, const std::string& source,
                                           TensorParallelPtr tp, const std::string& architecture)
    : HfModel(config, std::move(tp)), config_(LlamaConfig::from_json(config, source)) {
  const auto& c = config_;
  const auto tp_size = tensor_parallel().size();
  require_divisible_by_tp(source, "num_attention_heads", c.num_attention_heads);
  require_divisible_by_tp(source, "intermediate_size", c.intermediate_size);
  require_divisible_by_tp(source, "vocab_size", c.vocab_size);
  if (c.num_key_value_heads % tp_size != 0 && tp_size % c.num_key_value_heads != 0)
    throw checkpoint::CheckpointError(source, "num_key_value_heads " + std::to_string(c.num_key_value_heads) +
                                                  " neither divides nor is divisible by tensor_parallel_size " +
                                                  std::to_string(tp_size));
  complete_config({{"architectures", {architecture}}, {"model_type", "llama"}, {"attention_bias", c.attention_bias},
                   {"attention_dropout", c.attention_dropout}, {"bos_token_id", 1}, {"eos_token_id", 2},
                   {"head_dim", c.head_dim}, {"hidden_act", c.hidden_act}, {"hidden_size", c.hidden_size},
                   {"initializer_range", c.initializer_range}, {"intermediate_size", c.intermediate_size},
                   {"max_position_embeddings", c.max_position_embeddings}, {"mlp_bias", c.mlp_bias},
                   {"num_attention_heads", c.num_attention_heads}, {"num_hidden_layers", c.num_hidden_layers},
                   {"num_key_value_heads", c.num_key_value_heads}, {"pretraining_tp", 1},
                   {"rms_norm_eps", c.rms_norm_eps}, {"rope_scaling", c.rope_scaling}, {"rope_theta", c.rope_theta},
                   {"tie_word_embeddings", c.tie_word_embeddings}, {"use_cache", true}, {"vocab_size", c.vocab_size}});
  model = register_module("model", std::make_shared<LlamaModel>(config_, tensor_parallel_ptr(), group_runner()));
}

int LlamaPreTrainedModel::parameter_group(const std::string& name) const {
  return forward_group(name, config_.num_hidden_layers, {"model.embed_tokens."}, "model.norm.");
}

bool LlamaPreTrainedModel::is_ignorable_checkpoint_tensor(const std::string& name) const {
  return ends_with(name, "rotary_emb.inv_freq");
}

LlamaForCausalLM::LlamaForCausalLM(const nlohmann::json& config, const std::string& source, TensorParallelPtr tp)
    : LlamaPreTrainedModel(config, source, std::move(tp), "LlamaForCausalLM") {
  const auto& c = llama_config();
  // The head is split over the vocabulary like the embedding (vocab-parallel logits).
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(c.hidden_size, c.vocab_size, false, c.initializer_range,
                                                                  tensor_parallel_ptr(), TpSplit{TpSplit::kColumn}));
}

torch::Tensor LlamaForCausalLM::forward(const ModelInputs& inputs) {
  return causal_lm_logits(model->forward(inputs), lm_head, model->embed_tokens->weight, head_group());
}

bool LlamaForCausalLM::is_ignorable_checkpoint_tensor(const std::string& name) const {
  if (llama_config().tie_word_embeddings && name == "lm_head.weight") return true;
  return LlamaPreTrainedModel::is_ignorable_checkpoint_tensor(name);
}

}  // namespace mpitrain::models
