// The interface every Hugging Face architecture implements: forward pass, HF config, HF tensor names.
#pragma once

#include <torch/torch.h>

#include <initializer_list>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/parallel/parameter_groups.h"
#include "src/models/layer_runner.h"
#include "src/models/layers.h"

namespace mpitrain::models {

inline bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct ModelInputs {
  torch::Tensor input_ids;       // [batch, seq] int64
  torch::Tensor attention_mask;  // [batch, seq], 1 = attend; undefined means all ones
  torch::Tensor token_type_ids;  // [batch, seq]; undefined means all zeros (BERT only)
  // [batch, seq] int64, causal LMs: each token's position. Undefined means 0..seq-1 in every
  // row; a row of packed examples numbers each from 0, and each then attends only to itself.
  torch::Tensor position_ids;
};

// Where a parameter sits in its HF tensor: the layout the checkpoint coordinator saves and loads.
struct ParameterPlacement {
  std::vector<std::int64_t> shape;  // the HF tensor's global shape
  std::vector<std::int64_t> view;   // coordinates of `block`: `shape`, or a fused dim viewed as [parts, length]
  checkpoint::Block block;          // this rank's slice, in `view` coordinates
  int replicas = 1;                 // tp ranks holding this same slice (the tp size for unsplit tensors)
  bool partial_gradient = false;    // those ranks each compute part of its gradient (sum them)
  // The rows ZeRO splits this rank's tensor along: the outer dim of its block (dim 0, or the
  // parts of a fused view), so a shard is again one rectangular block of the HF tensor.
  std::int64_t rows() const { return block.sizes.empty() ? 1 : block.sizes[0]; }
};

// The runner a model's parts call around their forward (a sharded runtime's hooks, layers'
// activation checkpointing).
using GroupRunnerPtr = std::shared_ptr<const LayerRunner>;

// Forward groups (FSDP units) are numbered in forward order: 0 the input embeddings, 1 + i
// decoder layer i, layers + 1 the final norm (BERT: pooler), layers + 2 the head. A name's
// layer is its first numeric component ("model.layers.3.mlp..." -> group 4); other names are
// inputs (a prefix in `inputs`), the final norm (`final_prefix`) or the head.
int forward_group(const std::string& name, std::int64_t layers, std::initializer_list<const char*> inputs,
                  const char* final_prefix);

// The placement of a local tensor of `local_shape` that is `shard` of its HF tensor.
ParameterPlacement place(const std::vector<std::int64_t>& local_shape, const Shard& shard, int tp_size);

// A model whose named_parameters() are exactly the tensors transformers saves, with the same
// names, in the same (state-dict) order. Tied weights appear once, under the name HF keeps.
class HfModel : public torch::nn::Module {
 public:
  // `tp` null: one rank. Under tp > 1 each parameter is this rank's slice (see placements()).
  HfModel(nlohmann::json config, TensorParallelPtr tp);

  // Logits in the compute dtype: [batch, seq, vocab] for causal LMs, [batch, labels] for classifiers.
  virtual torch::Tensor forward(const ModelInputs& inputs) = 0;

  virtual std::string architecture() const = 0;  // e.g. "LlamaForCausalLM"
  virtual bool is_causal_lm() const = 0;
  virtual bool ties_word_embeddings() const = 0;
  // Names a checkpoint may hold that this model recomputes or shares (buffers, tied heads),
  // so loading ignores them instead of reporting them unexpected.
  virtual bool is_ignorable_checkpoint_tensor(const std::string& name) const { return false; }
  // Prefix that checkpoints of the bare base model lack (GPT-2's "transformer.").
  virtual std::string base_model_prefix() const { return ""; }
  // The task head a base checkpoint (BertModel, BertForMaskedLM) lacks, and its initialisation
  // as transformers' _init_weights gives it, for a fine-tuning run that starts a new head.
  virtual std::vector<std::string> task_head_parameters() const { return {}; }
  virtual void initialise_task_head() {}
  // The id whose positions a classifier never reads (Llama's score head reads each row's last
  // token that is not it), or none: rows padded with another id would be read at the padding.
  virtual std::optional<std::int64_t> pooling_pad_token_id() const { return std::nullopt; }
  // For a causal LM, the `architectures` entry that builds its family's sequence classifier
  // (what a run given classification rows should ask for); empty where none is implemented.
  virtual std::string sequence_classifier_architecture() const { return ""; }
  // How far the position embeddings reach: `length` positions, from config key `key`. Learned
  // ones (a table of that many rows) cannot run longer sequences; rotary ones run them,
  // extrapolating to positions never trained.
  struct PositionLimit {
    std::int64_t length;
    std::string key;
    bool learned;
  };
  virtual PositionLimit position_limit() const = 0;

  const parallel::TensorParallel& tensor_parallel() const { return *tp_; }
  const TensorParallelPtr& tensor_parallel_ptr() const { return tp_; }
  // Every named parameter's place in its HF tensor, in named_parameters() order.
  std::vector<std::pair<std::string, ParameterPlacement>> placements() const;
  // Causal LMs under tp > 1 return only this rank's vocabulary columns of the logits; this is
  // the first one (0 otherwise). Loss and sampling then go through the tp operators.
  bool logits_split_over_vocab() const { return is_causal_lm() && tp_->size() > 1; }
  virtual std::int64_t logits_vocab_start() const { return 0; }

  // The forward group of each named parameter (named_parameters() order), and where a
  // sharded runtime installs the hooks the forward pass calls around each group.
  std::vector<int> parameter_groups() const;
  void install_parameter_group_hooks(std::shared_ptr<parallel::ParameterGroupHooks> hooks) {
    group_runner_->install(std::move(hooks));
  }
  // HF's gradient_checkpointing_enable(): each repeated layer's activations are recomputed in
  // backward instead of kept (gradients and random numbers as without).
  void set_gradient_checkpointing(bool on) { group_runner_->set_checkpoint_layers(on); }
  bool gradient_checkpointing() const { return group_runner_->checkpoint_layers(); }

  // config.json as loaded (every key kept, so it round-trips) with this model's facts applied.
  const nlohmann::json& config() const { return config_; }
  nlohmann::json& mutable_config() { return config_; }

 protected:
  // Writes every key transformers writes for the architecture, with the value this model
  // computes with, where the loaded config left it out: saved configs then carry the same
  // keys as transformers' own (an inline config in a run file may name only the sizes).
  void complete_config(const nlohmann::json& effective) {
    for (auto it = effective.begin(); it != effective.end(); ++it)
      if (!config_.contains(it.key())) config_[it.key()] = it.value();
  }
  // transformers records a label count other than 2 through id2label / label2id (LABEL_i):
  // written where the config has no id2label of its own.
  void complete_label_maps(std::int64_t num_labels);
  // Throws CheckpointError naming `key` of config `source` when tp does not divide `value`.
  void require_divisible_by_tp(const std::string& source, const std::string& key, std::int64_t value) const;
  virtual int parameter_group(const std::string& name) const = 0;
  // A causal LM's head over the last hidden states: through `head` (its own weight, forward
  // group `head_group`), or where it is null through the tied input embedding (group 0); under
  // tp the logits are this rank's vocabulary columns.
  torch::Tensor causal_lm_logits(const torch::Tensor& hidden, const std::shared_ptr<Linear>& head,
                                 const torch::Tensor& tied_embedding, int head_group) const;
  GroupRunnerPtr group_runner() const { return group_runner_; }
  // Runs one part of the forward pass that uses `groups`' parameters.
  template <class Body>
  torch::Tensor run_groups(const std::vector<int>& groups, Body&& body) const {
    return group_runner_->run(groups, std::forward<Body>(body));
  }

 private:
  std::shared_ptr<LayerRunner> group_runner_ = std::make_shared<LayerRunner>();
  nlohmann::json config_;
  TensorParallelPtr tp_;
};

}  // namespace mpitrain::models
