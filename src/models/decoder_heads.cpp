// The task heads on the rotary decoders: <Family>ForCausalLM (lm_head, tied or not, Gemma2's final soft-cap) and <Family>ForSequenceClassification (transformers' score head at each row's last non-pad token).
#include "src/models/decoder_heads.h"

#include "runtime/checkpoint/checkpoint_error.h"
#include "src/models/config_reader.h"

namespace mpitrain::models {

DecoderPreTrainedModel::DecoderPreTrainedModel(const DecoderFamily& family, const nlohmann::json& config,
                                               const std::string& source, TensorParallelPtr tp,
                                               const std::string& architecture)
    : HfModel(config, std::move(tp)), family_(family), config_(family.read(config, source)) {
  const auto& c = config_;
  const auto tp_size = tensor_parallel().size();
  require_divisible_by_tp(source, "num_attention_heads", c.num_attention_heads);
  require_divisible_by_tp(source, "intermediate_size", c.intermediate_size);
  require_divisible_by_tp(source, "vocab_size", c.vocab_size);
  if (c.num_key_value_heads % tp_size != 0 && tp_size % c.num_key_value_heads != 0)
    throw checkpoint::CheckpointError(source, "num_key_value_heads " + std::to_string(c.num_key_value_heads) +
                                                  " neither divides nor is divisible by tensor_parallel_size " +
                                                  std::to_string(tp_size));
  auto keys = family.written_keys(c);
  keys["architectures"] = {architecture};
  keys["model_type"] = family.model_type;
  complete_config(keys);
  model = register_module("model", std::make_shared<DecoderModel>(config_, tensor_parallel_ptr(), group_runner()));
}

int DecoderPreTrainedModel::parameter_group(const std::string& name) const {
  return forward_group(name, config_.num_hidden_layers, {"model.embed_tokens."}, "model.norm.");
}

bool DecoderPreTrainedModel::is_ignorable_checkpoint_tensor(const std::string& name) const {
  return ends_with(name, "rotary_emb.inv_freq");
}

DecoderForCausalLM::DecoderForCausalLM(const DecoderFamily& family, const nlohmann::json& config,
                                       const std::string& source, TensorParallelPtr tp)
    : DecoderPreTrainedModel(family, config, source, std::move(tp), family.class_prefix + "ForCausalLM") {
  const auto& c = decoder_config();
  // The head is split over the vocabulary like the embedding (vocab-parallel logits).
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(c.hidden_size, c.vocab_size, false, c.initializer_range,
                                                                  tensor_parallel_ptr(), TpSplit{TpSplit::kColumn}));
}

torch::Tensor DecoderForCausalLM::forward(const ModelInputs& inputs) {
  auto logits = causal_lm_logits(model->forward(inputs), lm_head, model->embed_tokens->weight, head_group());
  // Elementwise, so each rank caps its own vocabulary columns alike.
  const auto cap = decoder_config().final_logit_softcapping;
  return cap > 0 ? torch::tanh(logits / cap) * cap : logits;
}

bool DecoderForCausalLM::is_ignorable_checkpoint_tensor(const std::string& name) const {
  if (decoder_config().tie_word_embeddings && name == "lm_head.weight") return true;
  return DecoderPreTrainedModel::is_ignorable_checkpoint_tensor(name);
}

DecoderForSequenceClassification::DecoderForSequenceClassification(const DecoderFamily& family,
                                                                   const nlohmann::json& config,
                                                                   const std::string& source, TensorParallelPtr tp)
    : DecoderPreTrainedModel(family, config, source, std::move(tp), family.class_prefix + "ForSequenceClassification") {
  ConfigReader r(config, source);
  num_labels_ = r.num_labels();
  if (r.has("pad_token_id")) {
    const auto pad = r.int_or("pad_token_id", 0);
    if (pad < 0 || pad >= decoder_config().vocab_size)
      r.fail("pad_token_id " + std::to_string(pad) + " is outside the vocabulary (vocab_size " +
             std::to_string(decoder_config().vocab_size) + ")");
    pad_token_id_ = pad;
  }
  complete_label_maps(num_labels_);
  score = register_module("score", std::make_shared<Linear>(decoder_config().hidden_size, num_labels_, false,
                                                            decoder_config().initializer_range));
}

torch::Tensor DecoderForSequenceClassification::forward(const ModelInputs& inputs) {
  const auto& ids = inputs.input_ids;
  const auto batch = ids.size(0), seq = ids.size(1);
  if (!pad_token_id_ && batch > 1)
    throw std::invalid_argument(architecture() + " cannot read a batch of " + std::to_string(batch) +
                                " rows without a pad_token_id in its config (set it to the tokenizer's pad id)");
  auto hidden = model->forward(inputs);
  auto positions = torch::arange(seq, ids.options());
  // The rightmost position holding a real token; argmax of position * is-real finds it.
  auto last = pad_token_id_ ? (positions * ids.ne(*pad_token_id_)).argmax(-1) : torch::full({batch}, seq - 1, ids.options());
  auto pooled = hidden.index({torch::arange(batch, ids.options()), last});
  return run_groups({head_group()}, [&] { return score->forward(pooled); });
}

void DecoderForSequenceClassification::initialise_task_head() {
  torch::NoGradGuard no_grad;
  score->weight.normal_(0.0, decoder_config().initializer_range);
}

}  // namespace mpitrain::models
