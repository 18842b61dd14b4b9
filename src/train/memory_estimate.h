// What one rank will hold training a configured model, computed before any job is queued (estimate-memory): its parameters, gradients and optimizer state tensor by tensor as the runtime lays them out, its activations, and a save's extra.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/parallel/sharded_data_parallel.h"
#include "src/train/training_arguments.h"

namespace mpitrain::train {

// One parameter as a tp rank holds it: its elements, the rows ZeRO splits it along (the outer
// dim of its block, as ParallelModel gives ShardedDataParallel) and its forward group.
struct LocalParameter {
  std::string name;
  std::int64_t numel = 0, rows = 1, hf_numel = 0;  // hf_numel: the whole HF tensor's
  int group = 0;
  bool in_layer = false;  // of a repeated layer (a numbered module: "model.layers.3.")
  bool frozen = false;    // LoRA's base: held in float32, never stepped
};

// The parameters tp rank `tp_rank` of `tp_size` holds of the model `config` describes, from a
// model built with shapes only (no storage, no collectives). Throws what create_model throws
// (a size tp does not divide names its key).
// With `lora` on, the base's parameters are frozen and the adapters follow them.
std::vector<LocalParameter> tp_local_parameters(const nlohmann::json& config, const std::string& source, int tp_size,
                                                int tp_rank, const LoraArguments* lora = nullptr);

struct MemoryLayout {
  int dp = 1, tp = 1;
  parallel::ShardingStage sharding = parallel::ShardingStage::kNone;
  bool bf16 = false;
};

// Bytes held between steps by dp rank `dp_rank` (0 holds the most), by the kinds the trainer's
// memory_*_bytes report: the float32 master shards ZeRO steps count as optimizer state (as the
// ZeRO paper counts them). zero3_gathered: the most parameter bytes a zero3 forward or
// backward materialises at once (the largest layer with the largest other group, a tied
// embedding kept for the head).
struct StateBytes {
  double parameters = 0, gradients = 0, optimizer = 0, zero3_gathered = 0;
};
StateBytes state_bytes(const std::vector<LocalParameter>& parameters, const MemoryLayout& layout, int dp_rank = 0);

// What a save adds on a rank, at most: in gather mode rank 0's two receive windows; an async
// save's host snapshot of the rank's weights (in the saved dtype) and moments.
double save_extra_bytes(const std::vector<LocalParameter>& parameters, const MemoryLayout& layout,
                        const TrainingArguments& training);

// One row of estimate-memory's table: a layout's bytes per rank (dp rank 0, tp rank 0).
struct RankEstimate {
  MemoryLayout layout;
  StateBytes state;
  double activations = 0, activations_checkpointed = 0, save_extra = 0;
  double total(bool gradient_checkpointing) const {
    return state.parameters + state.gradients + state.optimizer + state.zero3_gathered +
           (gradient_checkpointing ? activations_checkpointed : activations) + save_extra;
  }
};

// `args`' model (model.config or model_name_or_path's config.json, no weights read) at
// `layout`, with its micro-batch, sequence length and save settings.
RankEstimate estimate_rank(const RunArguments& args, const MemoryLayout& layout);

}  // namespace mpitrain::train
