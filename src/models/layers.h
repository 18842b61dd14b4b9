// The building blocks of the architectures, with HF parameter names (weight, bias).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "runtime/parallel/tensor_parallel.h"

namespace mpitrain::models {

using TensorParallelPtr = std::shared_ptr<const parallel::TensorParallel>;

// Which slice of a global (HF) parameter this rank holds under tensor parallelism.
struct Shard {
  int dim = -1;                       // split dimension of the HF tensor; -1: the whole tensor
  std::int64_t parts = 1;             // equal fused parts along `dim` (GPT-2's q|k|v), each split alike
  std::int64_t index = 0, count = 1;  // this rank holds slice `index` of `count` within each part
  // Several ranks hold this slice and each computes only part of its gradient (a GQA kv head
  // read by query heads on several ranks): the gradient must be summed over them.
  bool partial_gradient = false;
};

// How a layer is split over the tensor-parallel group (Megatron's column / row parallelism).
struct TpSplit {
  enum Kind { kNone, kColumn, kRow } kind = kNone;
  std::int64_t parts = 1;               // fused outputs split part by part (column only)
  // Slice `index` of `count`; default: tp rank of tp size. GQA with fewer kv heads than ranks
  // sets them to the kv head this rank's query heads read, so several ranks share a slice.
  std::int64_t index = -1, count = -1;
};

// An update added to a layer's output, computed from the layer's input (a LoRA adapter). It
// is held beside the layer, not registered in it, so the model's named parameters stay the HF
// state dict.
class OutputDelta {
 public:
  virtual ~OutputDelta() = default;
  // `x` as this rank's weight sees it (its input columns when the layer is row-parallel); the
  // result is this rank's part of the output: its output columns, or for a row-parallel layer
  // a partial sum that the layer's one all-reduce adds up together with the weight's.
  virtual torch::Tensor forward(const torch::Tensor& x, bool training) const = 0;
};

// A module whose parameters may be slices of the HF tensors; `shards` says which (by local
// parameter name; absent: the whole tensor).
class ShardedLayer : public torch::nn::Module {
 public:
  const std::map<std::string, Shard>& shards() const { return shards_; }
  // Null removes it.
  void set_output_delta(std::shared_ptr<const OutputDelta> delta) { delta_ = std::move(delta); }
  bool has_output_delta() const { return delta_ != nullptr; }

 protected:
  // `y` plus the delta's update for input `x` (y itself without a delta).
  torch::Tensor with_delta(const torch::Tensor& y, const torch::Tensor& x) const {
    return delta_ ? y + delta_->forward(x, is_training()) : y;
  }
  // Registers this rank's slice of a tensor of `full_shape` made by `init` (initialised whole,
  // so every tp size starts from the weights one rank would); under SkipInitialisation only
  // the slice is allocated, uninitialised; under a DeferredInitialisation it is allocated and
  // made later.
  torch::Tensor register_sharded(const std::string& name, at::IntArrayRef full_shape,
                                 const std::function<torch::Tensor(at::IntArrayRef)>& init, const Shard& shard);
  std::map<std::string, Shard> shards_;

 private:
  std::shared_ptr<const OutputDelta> delta_;
};

// This rank's slice of `full` as `shard` describes it (contiguous).
torch::Tensor slice_for_shard(const torch::Tensor& full, const Shard& shard);

// While one exists on this thread, layers allocate their parameters without initialising them:
// for models whose every weight is about to be loaded (from_pretrained), which then never
// builds a whole tensor of a tp-split layer nor spends time on random numbers. `shapes_only`:
// the split parameters are meta tensors (shapes, no storage), for a model built only to count
// what each rank would hold (estimate-memory); such a model cannot run.
class SkipInitialisation {
 public:
  explicit SkipInitialisation(bool shapes_only = false);
  ~SkipInitialisation();
  SkipInitialisation(const SkipInitialisation&) = delete;
  SkipInitialisation& operator=(const SkipInitialisation&) = delete;
  static bool active();
  static bool shapes_only();

 private:
  bool previous_, previous_shapes_only_;
};

// y = x W^T + b, weight [out, in] as torch.nn.Linear stores it. Column-parallel: this rank's
// output rows (the caller puts the input into the region with copy_to_region, once for all
// layers sharing it); row-parallel: this rank's input columns, summed over the group, then + b.
class Linear : public ShardedLayer {
 public:
  Linear(std::int64_t in, std::int64_t out, bool bias, double init_std, TensorParallelPtr tp = nullptr,
         TpSplit split = {});
  torch::Tensor forward(const torch::Tensor& x);
  bool row_parallel() const { return row_parallel_; }
  torch::Tensor weight, bias;

 private:
  TensorParallelPtr tp_;
  bool row_parallel_ = false;
};

// GPT-2's Conv1D: y = x W + b with weight stored [in, out]; split like Linear.
class Conv1D : public ShardedLayer {
 public:
  Conv1D(std::int64_t in, std::int64_t out, double init_std, TensorParallelPtr tp = nullptr, TpSplit split = {});
  torch::Tensor forward(const torch::Tensor& x);
  bool row_parallel() const { return row_parallel_; }
  torch::Tensor weight, bias;

 private:
  TensorParallelPtr tp_;
  bool row_parallel_ = false;
};

class LayerNorm : public torch::nn::Module {
 public:
  LayerNorm(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;

 private:
  double eps_;
};

// Llama's RMSNorm: normalised in float32, cast back, then scaled (the order matters in bf16).
// `adds_one` (Gemma's): scaled by (1 + weight) in float32, then cast back; the weight starts at 0.
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(std::int64_t dim, double eps, bool adds_one = false);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
  bool adds_one_;
};

// An embedding table; vocab-parallel when given a tp group of more than one rank: each rank
// holds a row range, looks up the ids inside it and the group sums the rows.
class Embedding : public ShardedLayer {
 public:
  Embedding(std::int64_t count, std::int64_t dim, double init_std, TensorParallelPtr vocab_parallel = nullptr);
  torch::Tensor forward(const torch::Tensor& ids);
  std::int64_t first_row() const { return first_row_; }  // of this rank's slice
  torch::Tensor weight;

 private:
  TensorParallelPtr tp_;
  std::int64_t first_row_ = 0;
};

// Activations by their transformers names (ACT2FN): gelu, gelu_new, gelu_pytorch_tanh, relu, silu.
// Throws std::invalid_argument naming an unknown one.
torch::Tensor activation(const std::string& name, const torch::Tensor& x);
void check_activation_name(const std::string& name);  // throws for an unknown one

}  // namespace mpitrain::models
