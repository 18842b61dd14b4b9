// LlamaForSequenceClassification: the Llama decoder with transformers' `score` head, read at each row's last non-pad token.
#include "src/models/llama_classification.h"

#include "src/models/config_reader.h"

namespace mpitrain::models {

LlamaForSequenceClassification::LlamaForSequenceClassification(const nlohmann::json& config, const std::string& source,
                                                               TensorParallelPtr tp)
    : LlamaPreTrainedModel(config, source, std::move(tp), "LlamaForSequenceClassification") {
  ConfigReader r(config, source);
  num_labels_ = r.num_labels();
  if (r.has("pad_token_id")) {
    const auto pad = r.int_or("pad_token_id", 0);
    if (pad < 0 || pad >= llama_config().vocab_size)
      r.fail("pad_token_id " + std::to_string(pad) + " is outside the vocabulary (vocab_size " +
             std::to_string(llama_config().vocab_size) + ")");
    pad_token_id_ = pad;
  }
  complete_label_maps(num_labels_);
  score = register_module("score", std::make_shared<Linear>(llama_config().hidden_size, num_labels_, false,
                                                            llama_config().initializer_range));
}

torch::Tensor LlamaForSequenceClassification::forward(const ModelInputs& inputs) {
  const auto& ids = inputs.input_ids;
  const auto batch = ids.size(0), seq = ids.size(1);
  if (!pad_token_id_ && batch > 1)
    throw std::invalid_argument("LlamaForSequenceClassification cannot read a batch of " + std::to_string(batch) +
                                " rows without a pad_token_id in its config (set it to the tokenizer's pad id)");
  auto hidden = model->forward(inputs);
  auto positions = torch::arange(seq, ids.options());
  // The rightmost position holding a real token; argmax of position * is-real finds it.
  auto last = pad_token_id_ ? (positions * ids.ne(*pad_token_id_)).argmax(-1) : torch::full({batch}, seq - 1, ids.options());
  auto pooled = hidden.index({torch::arange(batch, ids.options()), last});
  return run_groups({head_group()}, [&] { return score->forward(pooled); });
}

void LlamaForSequenceClassification::initialise_task_head() {
  torch::NoGradGuard no_grad;
  score->weight.normal_(0.0, llama_config().initializer_range);
}

}  // namespace mpitrain::models
