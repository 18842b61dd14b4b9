// What a local checkpoint holds (this rank's weight blocks and moments as held, its generator, the trainer state), the layout it restores into, and the room it needs per node.
#include <algorithm>
#include <map>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/memory_directory.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/checkpoint/xxhash64.h"
#include "runtime/comm/agreement.h"
#include "src/train/local_checkpointer.h"
#include "src/train/memory_check.h"

namespace mpitrain::train {

using nlohmann::json;

namespace {

constexpr const char* kWeightPrefix = "weight/";
constexpr const char* kMomentPrefix = "moment/";
constexpr const char* kGeneratorTensor = "generator";
constexpr std::uint64_t kHeaderAllowance = 4u << 20;  // the header and the trainer state's JSON

}  // namespace

std::string LocalCheckpointer::describe_layout() const {
  // The tensors as this rank holds them (names, block shapes, dtypes) stand for the model, the
  // sharding and LoRA alike; the world and its split name the rest.
  std::string tensors;
  for (const auto& t : model_.trained())
    tensors += t.name + checkpoint::shape_to_string(t.tensor.sizes().vec()) + c10::toString(t.tensor.scalar_type()) + ";";
  auto digest = torch::tensor({static_cast<std::int64_t>(checkpoint::xxh64(tensors.data(), tensors.size()))}, torch::kInt64);
  // Every rank's tensors enter the one signature all agree on.
  auto all = mesh_->world().cpu_communicator().allgather(digest);
  const auto hash =
      checkpoint::xxh64_hex(checkpoint::xxh64(all.data_ptr(), static_cast<std::size_t>(all.numel()) * sizeof(std::int64_t)));
  return "world " + std::to_string(mesh_->world().size()) + " (dp " + std::to_string(mesh_->dp_size()) + " x tp " +
         std::to_string(mesh_->tp_size()) + ", sharding " + args_.config["parallel"]["sharding"].get<std::string>() +
         "), tensors " + hash;
}

std::vector<checkpoint::NamedTensor> LocalCheckpointer::state_tensors() const {
  std::vector<checkpoint::NamedTensor> tensors;
  for (const auto& t : model_.trained()) tensors.push_back({kWeightPrefix + t.name, t.tensor});
  for (const auto& m : optimizer_.moments()) tensors.push_back({kMomentPrefix + m.name, m.tensor});
  auto generator = generator_;
  std::lock_guard<std::mutex> lock(generator.mutex());
  tensors.push_back({kGeneratorTensor, generator.get_state()});
  return tensors;
}

std::uint64_t LocalCheckpointer::state_bytes() const {
  std::uint64_t bytes = kHeaderAllowance;
  for (const auto& t : state_tensors()) bytes += t.tensor.numel() * t.tensor.element_size();
  return bytes;
}

void LocalCheckpointer::check_room(const std::string& dir) {
  auto& world = mesh_->world();
  auto mine = torch::tensor({static_cast<std::int64_t>(state_bytes())}, torch::kInt64);
  const auto all = world.cpu_communicator().allgather(mine);
  const auto& placement = tier_->placement();
  const auto& nodes = tier_->node_of_rank();
  const int me = world.rank();
  // What this rank's node holds: its ranks' states and the replicas they keep, twice (the
  // previous save stays until the next is complete everywhere).
  std::uint64_t node_bytes = 0;
  int node_ranks = 0;
  for (int r = 0; r < world.size(); ++r) {
    if (nodes[r] != nodes[me]) continue;
    ++node_ranks;
    node_bytes += static_cast<std::uint64_t>(all[r].item<std::int64_t>());
    for (const auto& source : placement.source) node_bytes += static_cast<std::uint64_t>(all[source[r]].item<std::int64_t>());
  }
  const auto need = 2 * node_bytes;
  const auto budget = args_.training.local_save_max_size;
  std::uint64_t free = 0;
  comm::run_agreed(world, [&] {
    // This job's states already there (an earlier run's) make room as they go.
    free = checkpoint::directory_room(dir).free_bytes + checkpoint::bytes_under(tier_->job_dir());
    const auto where = "training.local_save_dir " + dir + " on node " + nodes[me] + ": the local checkpoints need " +
                       human_bytes(static_cast<double>(need)) + " there (" + std::to_string(node_ranks) + " rank(s) x " +
                       std::to_string(placement.holder.size() + 1) +
                       " copies of their state, twice: the previous save stays until the next is complete)";
    if (budget > 0 && need > budget)
      throw std::invalid_argument(where + ", above local_save_max_size " + human_bytes(static_cast<double>(budget)));
    if (need > free) throw std::invalid_argument(where + ", but only " + human_bytes(static_cast<double>(free)) + " is free");
  });
  log_.info("local checkpoints every " + std::to_string(args_.training.local_save_steps) + " steps in " + tier_->job_dir() +
            ": " + placement.description + "; up to " + human_bytes(static_cast<double>(need)) + " on node " + nodes[me] +
            " (" + (budget > 0 ? "budget " + human_bytes(static_cast<double>(budget)) + ", " : std::string()) +
            human_bytes(static_cast<double>(free)) + " free)");
}

void LocalCheckpointer::load(const checkpoint::SafetensorsFile& file, TrainerState& state) {
  const auto entry_like = [&](const std::string& name, const torch::Tensor& like) -> const checkpoint::TensorEntry& {
    const auto& entry = file.entry(name);  // throws naming the file and tensor when absent
    if (entry.shape != like.sizes().vec() || checkpoint::from_scalar_type(like.scalar_type()) != entry.dtype)
      throw checkpoint::CheckpointError(file.path(), "tensor '" + name + "' is " + checkpoint::shape_to_string(entry.shape) +
                                                         ", this run holds " + checkpoint::shape_to_string(like.sizes().vec()));
    return entry;
  };
  // Every tensor checked first: a state that does not fit changes nothing.
  for (const auto& t : state_tensors())
    if (t.name != kGeneratorTensor) entry_like(t.name, t.tensor);
  const auto& metadata = file.header().metadata;
  const auto trainer_state = metadata.find("trainer_state");
  const auto optimizer_step = metadata.find("optimizer_step");
  if (trainer_state == metadata.end() || optimizer_step == metadata.end())
    throw checkpoint::CheckpointError(file.path(), "no trainer state in its metadata");
  auto restored = TrainerState::from_json(json::parse(trainer_state->second));
  const auto generator_state = checkpoint::read_tensor(file, file.entry(kGeneratorTensor));
  {
    const torch::NoGradGuard no_grad;
    for (const auto& t : model_.trained()) t.tensor.copy_(checkpoint::read_tensor(file, file.entry(kWeightPrefix + t.name)));
  }
  std::vector<std::pair<std::string, torch::Tensor>> moments;
  for (const auto& m : optimizer_.moments())
    moments.emplace_back(m.name, checkpoint::read_tensor(file, file.entry(kMomentPrefix + m.name)));
  optimizer_.load_state(moments, std::stoll(optimizer_step->second));
  {
    auto generator = generator_;
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(generator_state);
  }
  state = std::move(restored);
}

}  // namespace mpitrain::train
