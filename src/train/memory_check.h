// Before the model is built: what training it takes per rank (parameters, gradients, optimizer state, one micro-batch's activations) against the memory this host has, refused by name when it cannot fit.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/parallel/sharded_data_parallel.h"
#include "src/models/size_estimate.h"

namespace mpitrain::train {

// Bytes one rank holds while training, as a lower bound: float32 parameters, gradients and
// AdamW's two moments (split over tp, and over dp by the ZeRO stage), and the activations one
// micro-batch keeps for its backward pass.
struct TrainingMemory {
  double parameters = 0, gradients = 0, optimizer = 0, activations = 0;
  double total() const { return parameters + gradients + optimizer + activations; }
};

struct TrainingShape {
  int tp = 1, dp = 1;
  parallel::ShardingStage sharding = parallel::ShardingStage::kNone;
  std::int64_t micro_batch = 1, seq_len = 1;
  bool gradient_checkpointing = false;
};

TrainingMemory training_memory_per_rank(const models::SizeEstimate& model, const TrainingShape& shape);

// The bytes this host can give a process now: MemAvailable, or less where a cgroup limit or
// MPITRAIN_MEMORY_AVAILABLE (bytes) says so.
double host_memory_available();

// Throws std::runtime_error (one line: `source`, the figures, the config key that makes the
// model this large, what would help) where `need` exceeds `available` for `local_ranks` ranks.
void require_fits(const TrainingMemory& need, double available, int local_ranks, const TrainingShape& shape,
                  const nlohmann::json& config, const std::string& source);

// One forward without gradients (`mpitrain logits`) of `batch` rows of `seq` tokens: throws
// std::runtime_error naming `inputs` and the figures where this host's memory cannot hold it.
void require_inference_fits(const nlohmann::json& config, const std::string& config_source, std::int64_t batch,
                            std::int64_t seq, const std::string& inputs);

// "12.3 GB", "512.0 MB": sizes in messages.
std::string human_bytes(double bytes);

}  // namespace mpitrain::train
