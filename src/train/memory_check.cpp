// Before the model is built: what training it takes per rank (parameters, gradients, optimizer state, one micro-batch's activations) against the memory this host has, refused by name when it cannot fit.
#include "src/train/memory_check.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace mpitrain::train {

namespace {

// A number from a cgroup v2 file ("max" or a missing file: no limit).
double cgroup_value(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return std::numeric_limits<double>::infinity();
  try {
    return std::stod(text);
  } catch (const std::exception&) {
    return std::numeric_limits<double>::infinity();
  }
}

}  // namespace

TrainingMemory training_memory_per_rank(const models::SizeEstimate& model, const TrainingShape& shape) {
  using parallel::ShardingStage;
  const double per_tp = model.parameters / std::max(1, shape.tp);
  const double dp = std::max(1, shape.dp);
  TrainingMemory m;
  m.parameters = 4 * per_tp / (shape.sharding == ShardingStage::kZero3 ? dp : 1);
  m.gradients = 4 * per_tp / (shape.sharding >= ShardingStage::kZero2 ? dp : 1);
  m.optimizer = 8 * per_tp / (shape.sharding >= ShardingStage::kZero1 ? dp : 1);
  const double per_token =
      model.activation_bytes_per_token / (shape.gradient_checkpointing ? static_cast<double>(model.layers) : 1.0);
  m.activations = per_token * static_cast<double>(shape.micro_batch * shape.seq_len) / std::max(1, shape.tp);
  return m;
}

double host_memory_available() {
  double available = std::numeric_limits<double>::infinity();
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kilobytes = 0;
  std::string unit;
  while (meminfo >> key >> kilobytes >> unit)
    if (key == "MemAvailable:") available = kilobytes * 1024;
  // A container's or Slurm job's cgroup may allow less than the host has free.
  const double limit = cgroup_value("/sys/fs/cgroup/memory.max"), used = cgroup_value("/sys/fs/cgroup/memory.current");
  if (limit < std::numeric_limits<double>::infinity() && used < limit) available = std::min(available, limit - used);
  // A share the user sets aside for this job (other work on the node, a margin), in bytes.
  if (const char* cap = std::getenv("MPITRAIN_MEMORY_AVAILABLE")) {
    char* end = nullptr;
    const double bytes = std::strtod(cap, &end);
    if (end == cap || *end != '\0' || !(bytes > 0))
      throw std::runtime_error(std::string("MPITRAIN_MEMORY_AVAILABLE '") + cap + "' is not a number of bytes");
    available = std::min(available, bytes);
  }
  return available;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
  int unit = 0;
  while (bytes >= 1000 && unit < 6) bytes /= 1000, ++unit;
  char text[48];
  std::snprintf(text, sizeof text, "%.1f %s", bytes, units[unit]);
  return text;
}

void require_fits(const TrainingMemory& need, double available, int local_ranks, const TrainingShape& shape,
                  const nlohmann::json& config, const std::string& source) {
  const double share = available / std::max(1, local_ranks);
  if (need.total() <= share) return;
  std::ostringstream cause;
  // The weights and their state alone too large: the model is; else the micro-batch is.
  if (need.total() - need.activations <= share) {
    cause << "the micro-batch makes it this large (training.per_device_train_batch_size " << shape.micro_batch
          << " x " << shape.seq_len << " tokens; training.gradient_checkpointing keeps less)";
  } else {
    const auto [key, value] = models::dominant_sizing_key(config, source, shape.seq_len);
    cause << key << " " << value
          << " makes it this large (or spread it: parallel.tensor_parallel_size, parallel.sharding, more ranks)";
  }
  std::ostringstream line;
  line << source << ": training this model takes about " << human_bytes(need.total()) << " per rank (parameters "
       << human_bytes(need.parameters) << ", gradients " << human_bytes(need.gradients) << ", optimizer state "
       << human_bytes(need.optimizer) << ", activations " << human_bytes(need.activations) << " for a micro-batch of "
       << shape.micro_batch << " x " << shape.seq_len << " tokens) but this host has " << human_bytes(available)
       << " available for its " << local_ranks << " rank(s); " << cause.str();
  throw std::runtime_error(line.str());
}

void require_inference_fits(const nlohmann::json& config, const std::string& config_source, std::int64_t batch,
                            std::int64_t seq, const std::string& inputs) {
  const auto model = models::estimate_size(config, config_source, seq);
  const double need = model.inference_bytes_per_token * static_cast<double>(batch) * static_cast<double>(seq);
  const double available = host_memory_available();
  if (need <= available) return;
  throw std::runtime_error(inputs + ": " + std::to_string(batch) + " rows of " + std::to_string(seq) +
                           " tokens take about " + human_bytes(need) + " to run through this model but this host has " +
                           human_bytes(available) + " available; give fewer or shorter rows at a time");
}

}  // namespace mpitrain::train
