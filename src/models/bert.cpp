// BertForSequenceClassification: token types, absolute positions, post-LN encoder, pooler, classifier.
#include "src/models/bert.h"

#include <cmath>

#include "src/models/attention.h"
#include "src/models/config_reader.h"

namespace mpitrain::models {

BertConfig BertConfig::from_json(const nlohmann::json& config, const std::string& source) {
  ConfigReader r(config, source);
  BertConfig c{};
  c.vocab_size = r.require_int("vocab_size");
  c.hidden_size = r.require_int("hidden_size");
  c.num_hidden_layers = r.require_int("num_hidden_layers");
  c.num_attention_heads = r.require_int("num_attention_heads");
  c.intermediate_size = r.require_int("intermediate_size");
  c.max_position_embeddings = r.require_int("max_position_embeddings");
  if (c.hidden_size % c.num_attention_heads != 0)
    r.fail("hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
           std::to_string(c.num_attention_heads));
  c.type_vocab_size = r.int_or("type_vocab_size", 2);
  c.num_labels = r.num_labels();
  c.layer_norm_eps = r.positive_double_or("layer_norm_eps", 1e-12);
  c.hidden_dropout_prob = r.probability_or("hidden_dropout_prob", 0.1);
  c.attention_probs_dropout_prob = r.probability_or("attention_probs_dropout_prob", 0.1);
  c.classifier_dropout = r.probability_or("classifier_dropout", c.hidden_dropout_prob);
  c.initializer_range = r.double_or("initializer_range", 0.02);
  c.hidden_act = r.activation_or("hidden_act", "gelu");
  const auto position_type = r.string_or("position_embedding_type", "absolute");
  if (position_type != "absolute")
    r.fail("position_embedding_type '" + position_type + "' is not supported (absolute)");
  return c;
}

BertEmbeddings::BertEmbeddings(const BertConfig& c, const TensorParallelPtr& tp) : dropout_(c.hidden_dropout_prob) {
  const double s = c.initializer_range;
  word_embeddings = register_module("word_embeddings", std::make_shared<Embedding>(c.vocab_size, c.hidden_size, s, tp));
  position_embeddings =
      register_module("position_embeddings", std::make_shared<Embedding>(c.max_position_embeddings, c.hidden_size, s));
  token_type_embeddings =
      register_module("token_type_embeddings", std::make_shared<Embedding>(c.type_vocab_size, c.hidden_size, s));
  LayerNorm_ = register_module("LayerNorm", std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps));
}

torch::Tensor BertEmbeddings::forward(const ModelInputs& inputs) {
  const auto seq = inputs.input_ids.size(1);
  if (seq > position_embeddings->weight.size(0))
    throw std::invalid_argument("sequence length " + std::to_string(seq) + " exceeds max_position_embeddings " +
                                std::to_string(position_embeddings->weight.size(0)));
  auto types = inputs.token_type_ids.defined() ? inputs.token_type_ids : torch::zeros_like(inputs.input_ids);
  auto positions = torch::arange(seq, torch::TensorOptions().dtype(torch::kInt64).device(inputs.input_ids.device()));
  auto x = word_embeddings->forward(inputs.input_ids) + token_type_embeddings->forward(types);
  x = x + position_embeddings->forward(positions);
  return torch::dropout(LayerNorm_->forward(x), dropout_, is_training());
}

BertSelfAttention::BertSelfAttention(const BertConfig& c, const TensorParallelPtr& tp)
    : tp_(tp), heads_(c.num_attention_heads / tp->size()), dropout_(c.attention_probs_dropout_prob) {
  const double s = c.initializer_range;
  const TpSplit column{TpSplit::kColumn};
  query = register_module("query", std::make_shared<Linear>(c.hidden_size, c.hidden_size, true, s, tp, column));
  key = register_module("key", std::make_shared<Linear>(c.hidden_size, c.hidden_size, true, s, tp, column));
  value = register_module("value", std::make_shared<Linear>(c.hidden_size, c.hidden_size, true, s, tp, column));
}

torch::Tensor BertSelfAttention::forward(const torch::Tensor& input, const torch::Tensor& mask) {
  const auto x = tp_->copy_to_region(input);
  auto q = split_heads(query->forward(x), heads_), k = split_heads(key->forward(x), heads_),
       v = split_heads(value->forward(x), heads_);
  AttentionOptions options;
  options.scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  options.softmax_in_float32 = false;
  options.dropout = dropout_;
  options.training = is_training();
  return dot_product_attention(q, k, v, mask, options);
}

BertResidualOutput::BertResidualOutput(std::int64_t in, std::int64_t out, const BertConfig& c,
                                       const TensorParallelPtr& tp)
    : dropout_(c.hidden_dropout_prob) {
  dense = register_module("dense", std::make_shared<Linear>(in, out, true, c.initializer_range, tp, TpSplit{TpSplit::kRow}));
  LayerNorm_ = register_module("LayerNorm", std::make_shared<LayerNorm>(out, c.layer_norm_eps));
}

torch::Tensor BertResidualOutput::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return LayerNorm_->forward(torch::dropout(dense->forward(x), dropout_, is_training()) + residual);
}

BertAttention::BertAttention(const BertConfig& c, const TensorParallelPtr& tp) {
  self = register_module("self", std::make_shared<BertSelfAttention>(c, tp));
  output = register_module("output", std::make_shared<BertResidualOutput>(c.hidden_size, c.hidden_size, c, tp));
}

torch::Tensor BertAttention::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  return output->forward(self->forward(x, mask), x);
}

BertIntermediate::BertIntermediate(const BertConfig& c, const TensorParallelPtr& tp) : tp_(tp), act_(c.hidden_act) {
  dense = register_module("dense", std::make_shared<Linear>(c.hidden_size, c.intermediate_size, true, c.initializer_range,
                                                            tp, TpSplit{TpSplit::kColumn}));
}

torch::Tensor BertIntermediate::forward(const torch::Tensor& x) {
  return activation(act_, dense->forward(tp_->copy_to_region(x)));
}

BertLayer::BertLayer(const BertConfig& c, const TensorParallelPtr& tp) {
  attention = register_module("attention", std::make_shared<BertAttention>(c, tp));
  intermediate = register_module("intermediate", std::make_shared<BertIntermediate>(c, tp));
  output = register_module("output", std::make_shared<BertResidualOutput>(c.intermediate_size, c.hidden_size, c, tp));
}

torch::Tensor BertLayer::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto attended = attention->forward(x, mask);
  return output->forward(intermediate->forward(attended), attended);
}

namespace {

// A module that only gives its children a name prefix (BERT's "encoder" and "pooler").
class NamedContainer : public torch::nn::Module {};

}  // namespace

BertModel::BertModel(const BertConfig& c, const TensorParallelPtr& tp, GroupRunnerPtr groups) : groups_(std::move(groups)) {
  embeddings = register_module("embeddings", std::make_shared<BertEmbeddings>(c, tp));
  auto encoder = register_module("encoder", std::make_shared<NamedContainer>());
  encoder_layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) encoder_layers->push_back(std::make_shared<BertLayer>(c, tp));
  auto pooler = register_module("pooler", std::make_shared<NamedContainer>());
  pooler_dense = pooler->register_module(
      "dense", std::make_shared<Linear>(c.hidden_size, c.hidden_size, true, c.initializer_range));
}

torch::Tensor BertModel::forward(const ModelInputs& inputs) {
  auto x = groups_->run({0}, [&] { return embeddings->forward(inputs); });
  auto mask =
      additive_attention_mask(inputs.attention_mask, x.size(0), x.size(1), /*causal=*/false, x.scalar_type(), x.device());
  for (std::size_t i = 0; i < encoder_layers->size(); ++i)
    x = groups_->run_layer(1 + static_cast<int>(i), x,
                           [layer = encoder_layers->ptr<BertLayer>(i), mask](const torch::Tensor& in) {
                             return layer->forward(in, mask);
                           });
  const int pooler = 1 + static_cast<int>(encoder_layers->size());
  return groups_->run({pooler}, [&] { return torch::tanh(pooler_dense->forward(x.select(1, 0))); });
}

BertForSequenceClassification::BertForSequenceClassification(const nlohmann::json& config, const std::string& source,
                                                             TensorParallelPtr tp)
    : HfModel(config, std::move(tp)), config_(BertConfig::from_json(config, source)) {
  const auto& c = config_;
  require_divisible_by_tp(source, "num_attention_heads", c.num_attention_heads);
  require_divisible_by_tp(source, "intermediate_size", c.intermediate_size);
  require_divisible_by_tp(source, "vocab_size", c.vocab_size);
  complete_config({{"architectures", {"BertForSequenceClassification"}}, {"model_type", "bert"},
                   {"attention_probs_dropout_prob", c.attention_probs_dropout_prob}, {"classifier_dropout", nullptr},
                   {"hidden_act", c.hidden_act}, {"hidden_dropout_prob", c.hidden_dropout_prob},
                   {"hidden_size", c.hidden_size}, {"initializer_range", c.initializer_range},
                   {"intermediate_size", c.intermediate_size}, {"layer_norm_eps", c.layer_norm_eps},
                   {"max_position_embeddings", c.max_position_embeddings}, {"num_attention_heads", c.num_attention_heads},
                   {"num_hidden_layers", c.num_hidden_layers}, {"pad_token_id", 0},
                   {"position_embedding_type", "absolute"}, {"type_vocab_size", c.type_vocab_size},
                   {"use_cache", true}, {"vocab_size", c.vocab_size}});
  complete_label_maps(c.num_labels);
  // The encoder is split over the tp ranks; the pooler and classifier are small and replicated.
  bert = register_module("bert", std::make_shared<BertModel>(config_, tensor_parallel_ptr(), group_runner()));
  classifier = register_module(
      "classifier", std::make_shared<Linear>(config_.hidden_size, config_.num_labels, true, config_.initializer_range));
}

torch::Tensor BertForSequenceClassification::forward(const ModelInputs& inputs) {
  auto pooled = torch::dropout(bert->forward(inputs), config_.classifier_dropout, is_training());
  return run_groups({static_cast<int>(config_.num_hidden_layers) + 2}, [&] { return classifier->forward(pooled); });
}

int BertForSequenceClassification::parameter_group(const std::string& name) const {
  return forward_group(name, config_.num_hidden_layers, {"bert.embeddings."}, "bert.pooler.");
}

bool BertForSequenceClassification::is_ignorable_checkpoint_tensor(const std::string& name) const {
  return ends_with(name, "embeddings.position_ids");
}

void BertForSequenceClassification::initialise_task_head() {
  torch::NoGradGuard no_grad;
  classifier->weight.normal_(0.0, config_.initializer_range);
  if (classifier->bias.defined()) classifier->bias.zero_();
}

}  // namespace mpitrain::models
