// What one rank will hold training a configured model, computed before any job is queued (estimate-memory): its parameters, gradients and optimizer state tensor by tensor as the runtime lays them out, its activations, and a save's extra.
#include "src/train/memory_estimate.h"

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>
#include <tuple>

#include "runtime/parallel/tensor_parallel.h"
#include "src/models/layers.h"
#include "src/models/lora.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "src/models/size_estimate.h"

namespace mpitrain::train {

namespace {

// The rank and size of a tp group that is never used: building a model only asks them (a
// model built with shapes only cannot run, so no collective can be reached).
class ShapeOnlyCommunicator : public comm::Communicator {
 public:
  ShapeOnlyCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::unique_ptr<comm::Work> allreduce_async(torch::Tensor&, comm::ReduceOp) override { unreachable(); }
  void broadcast(torch::Tensor&, int) override { unreachable(); }
  torch::Tensor allgatherv(const torch::Tensor&) override { unreachable(); }
  std::unique_ptr<comm::Work> reduce_scatter_async(const torch::Tensor&, torch::Tensor&, comm::ReduceOp) override {
    unreachable();
  }
  std::unique_ptr<comm::Work> allgather_async(const torch::Tensor&, torch::Tensor&) override { unreachable(); }
  void send(const torch::Tensor&, int, int) override { unreachable(); }
  void recv(torch::Tensor&, int, int) override { unreachable(); }
  void barrier() override { unreachable(); }
  std::shared_ptr<comm::Communicator> split(int, int, const std::string&) override { unreachable(); }

 private:
  [[noreturn]] static void unreachable() { throw std::logic_error("a model built to count its shapes ran a collective"); }
  int rank_, size_;
  std::string name_ = "tp";
};

double element_bytes(at::ScalarType dtype) { return static_cast<double>(c10::elementSize(dtype)); }

// This rank's dim-0 share of a parameter (all of it without ZeRO).
double shard_numel(const LocalParameter& p, const MemoryLayout& layout, int dp_rank) {
  if (layout.sharding == parallel::ShardingStage::kNone) return static_cast<double>(p.numel);
  const auto s = parallel::dim0_shard(p.rows, p.numel, dp_rank, layout.dp);
  return static_cast<double>(s.count * s.row_numel);
}

// zero3's peak: the largest decoder layer's group with the largest of the others.
double largest_gathered_numel(const std::vector<LocalParameter>& parameters) {
  std::map<int, double> layers, others;
  for (const auto& p : parameters) (p.in_layer ? layers : others)[p.group] += static_cast<double>(p.numel);
  double layer = 0, other = 0;
  for (const auto& [group, numel] : layers) layer = std::max(layer, numel);
  for (const auto& [group, numel] : others) other = std::max(other, numel);
  return layer + other;
}

// The growth of a step's peak resident memory per token, fitted to what LibTorch's CPU float32
// path measured here (peak RSS at two batch sizes, three Llama shapes: within 8%). Without
// checkpointing every layer keeps about 24 hidden-sized and 4 intermediate-sized float32
// tensors and 1.6 rows of attention scores per head, beside 4 of the logits; with it, each
// layer keeps its input, and the one being recomputed holds 8 hidden, 3 intermediate and 12
// score rows at its backward's peak. Under tp the heads, the MLP and the vocabulary are split,
// the hidden-sized tensors are not (no sequence parallelism).
//
// With the fused CPU kernels (cpu_causal_attention keeps no scores; RMSNorm, RoPE and SwiGLU
// keep their inputs only) a layer keeps about 7.5 hidden-sized and 3 intermediate-sized
// tensors; the peak measured 1.46 times that on two Llama shapes (hidden 128 and 256): 11 and
// 4.4. With checkpointing, the recomputed layer's 1.45 times that again (-13% and -2%).
double activation_bytes_per_token(const models::SizeEstimate& m, double seq, double tp, bool checkpointed,
                                  bool fused_cpu) {
  const double heads = m.heads / tp, intermediate = m.intermediate / tp, layers = static_cast<double>(m.layers);
  const double logits = 4 * m.logits_per_token / tp;
  if (fused_cpu && checkpointed) return 4 * (layers * m.hidden + 16 * m.hidden + 6.4 * intermediate + logits);
  if (fused_cpu) return 4 * (layers * (11 * m.hidden + 4.4 * intermediate) + logits);
  if (checkpointed) return 4 * (layers * m.hidden + 8 * m.hidden + 3 * intermediate + 12 * heads * seq + logits);
  return 4 * (layers * (24 * m.hidden + 4 * intermediate + 1.6 * heads * seq) + logits);
}

}  // namespace

std::vector<LocalParameter> tp_local_parameters(const nlohmann::json& config, const std::string& source, int tp_size,
                                                int tp_rank, const LoraArguments* lora) {
  auto tp = std::make_shared<const parallel::TensorParallel>(
      tp_size > 1 ? std::make_shared<ShapeOnlyCommunicator>(tp_rank, tp_size) : nullptr);
  std::shared_ptr<models::HfModel> model;
  {
    models::SkipInitialisation shapes(/*shapes_only=*/true);
    model = models::create_model(config, source, tp);
  }
  const auto groups = model->parameter_groups();
  std::vector<LocalParameter> out;
  std::size_t i = 0;
  for (const auto& [name, placement] : model->placements()) {
    LocalParameter p;
    p.name = name;
    p.numel = 1;
    for (auto d : placement.block.sizes) p.numel *= d;
    p.hf_numel = 1;
    for (auto d : placement.shape) p.hf_numel *= d;
    p.rows = placement.rows();
    p.group = groups.at(i++);
    p.in_layer = std::regex_search(name, std::regex(R"((^|\.)[0-9]+\.)"));
    out.push_back(p);
  }
  if (!lora || !lora->enabled) return out;
  const auto settings = lora->adapter_name_or_path.empty() ? lora->settings
                                                           : models::read_adapter_config(lora->adapter_name_or_path);
  const models::LoraAdapters adapters(*model, settings, "lora");
  std::set<std::string> trained;
  for (const auto& t : adapters.tensors())
    if (!t.factor) trained.insert(t.base_parameter);  // modules_to_save: the model's own, trained
  std::map<std::string, std::pair<int, bool>> group_of;  // a base tensor's group and in_layer
  for (auto& p : out) {
    p.frozen = !trained.count(p.name);
    group_of[p.name] = {p.group, p.in_layer};
  }
  for (const auto& t : adapters.tensors()) {
    if (!t.factor) continue;  // listed already, as the model's own
    LocalParameter p;
    // Gathered with its base layer under zero3.
    std::tie(p.group, p.in_layer) = group_of.at(t.base_parameter);
    p.name = t.name;
    p.numel = t.tensor.numel();
    p.rows = t.placement.rows();
    p.hf_numel = 1;
    for (auto d : t.placement.shape) p.hf_numel *= d;
    out.push_back(p);
  }
  return out;
}

StateBytes state_bytes(const std::vector<LocalParameter>& parameters, const MemoryLayout& layout, int dp_rank) {
  using parallel::ShardingStage;
  const double compute = element_bytes(layout.sharding != ShardingStage::kNone && layout.bf16 ? at::kBFloat16 : at::kFloat);
  StateBytes b;
  for (const auto& p : parameters) {
    const double full = static_cast<double>(p.numel), shard = shard_numel(p, layout, dp_rank);
    if (p.frozen) {  // LoRA's base: float32, no gradient or state; whole on every rank but under zero3
      b.parameters += 4 * (layout.sharding == ShardingStage::kZero3 ? shard : full);
      continue;
    }
    if (layout.sharding == ShardingStage::kNone) {
      // float32 weights (bf16 is autocast), their gradients, AdamW's two moments.
      b.parameters += 4 * full;
      b.gradients += 4 * full;
      b.optimizer += 8 * full;
      continue;
    }
    // ZeRO: moments and float32 master shards; zero1 keeps whole gradients beside the shards'.
    b.optimizer += 12 * shard;
    b.gradients += 4 * shard + (layout.sharding == ShardingStage::kZero1 ? compute * full : 0);
    if (layout.sharding != ShardingStage::kZero3) b.parameters += compute * full;
  }
  if (layout.sharding == ShardingStage::kZero3) b.zero3_gathered = compute * largest_gathered_numel(parameters);
  return b;
}

double save_extra_bytes(const std::vector<LocalParameter>& parameters, const MemoryLayout& layout,
                        const TrainingArguments& training) {
  double extra = training.save_mode == checkpoint::SaveMode::kGather && layout.dp * layout.tp > 1
                     ? 2 * static_cast<double>(training.gather_window_bytes)
                     : 0;
  if (training.async_save) {
    const double saved = training.save_dtype.empty() ? 4 : element_bytes(models::parse_torch_dtype(training.save_dtype));
    double held = 0;
    for (const auto& p : parameters)
      if (!p.frozen) held += shard_numel(p, layout, 0);  // what a checkpoint holds
    extra += held * saved + (training.save_only_model ? 0 : held * 8);
  }
  return extra;
}

RankEstimate estimate_rank(const RunArguments& args, const MemoryLayout& layout) {
  std::string source;
  const auto config = args.model.built_config(&source);
  if (config.is_null()) throw std::runtime_error(args.model.model_name_or_path + "/config.json: not found");
  const auto parameters = tp_local_parameters(config, source, layout.tp, 0, &args.lora);
  const std::int64_t seq = args.data.task == "causal_lm" ? args.data.seq_len : args.data.max_length;
  const auto size = models::estimate_size(config, source, seq);
  RankEstimate e;
  e.layout = layout;
  e.state = state_bytes(parameters, layout);
  // bfloat16 autocast keeps about 0.8 of it (norms, softmax and the loss stay float32;
  // measured 0.78 and 0.81 on two shapes).
  const double tokens = static_cast<double>(args.training.per_device_train_batch_size * seq) * (layout.bf16 ? 0.8 : 1);
  const bool fused = size.fused_cpu_attention && args.training.device == "cpu" && args.training.cpu_fused_kernels;
  e.activations = tokens * activation_bytes_per_token(size, static_cast<double>(seq), layout.tp, false, fused);
  e.activations_checkpointed =
      tokens * activation_bytes_per_token(size, static_cast<double>(seq), layout.tp, true, fused);
  e.save_extra = save_extra_bytes(parameters, layout, args.training);
  return e;
}

}  // namespace mpitrain::train
