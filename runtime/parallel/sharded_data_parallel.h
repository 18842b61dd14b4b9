// Sharded data parallelism (ZeRO-1/2/3): per-parameter dim-0 shards of optimizer state, gradients and parameters over the dp group.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/parallel/data_parallel_gradients.h"
#include "runtime/parallel/parameter_groups.h"

namespace mpitrain::parallel {

enum class ShardingStage { kNone, kZero1, kZero2, kZero3 };
// "none" | "zero1" | "zero2" | "zero3"; throws std::invalid_argument naming the value.
ShardingStage parse_sharding_stage(const std::string& text);

// Rank `rank`'s dim-0 slice of a tensor of `rows` rows split over `ranks`: every rank owns
// rows_per_rank = ceil(rows / ranks) rows of a padded tensor, so the last ranks' slices may be
// short or empty; the padding exists only inside collective buffers.
struct Dim0Shard {
  std::int64_t rows = 0, rows_per_rank = 0, start = 0, count = 0, row_numel = 0;
};
Dim0Shard dim0_shard(std::int64_t rows, std::int64_t numel, int rank, int ranks);

struct ShardingOptions {
  ShardingStage stage = ShardingStage::kZero1;
  std::size_t bucket_bytes = 4u << 20;  // zero1/2: parameters per collective
  int prefetch = 1;                     // zero3: parameter groups all-gathered ahead of the compute
  // Mixed precision: the dtype parameters are materialised, computed and their gradients
  // reduced in (bfloat16), while the shards (master weights) stay float32.
  at::ScalarType compute_dtype = at::kFloat;
  // Where the parameters and shards live: buffers are made there. The parameters handed in
  // may still be elsewhere (a model built on the CPU): each is moved, or for zero3 freed, as
  // its shard is taken, so the whole model never lands on the device at once.
  at::Device device = at::kCPU;
  // Called with each parameter just before its shard is taken (a deferred initialisation
  // gives it its values there, so the whole model never exists at once).
  std::function<void(const torch::Tensor&)> before_sharding;
  // Parameters never trained (a LoRA run's base), by index; empty: none. They are sharded and,
  // under zero3, gathered like the others, but have no gradient: never reduced, never stepped.
  std::vector<bool> frozen;
};

// Bytes this rank holds now, by kind (the ZeRO paper's accounting; optimizer moments are the
// optimizer's and not counted here).
struct ShardedMemory {
  std::uint64_t parameters = 0;        // the model's (full or freed) parameters
  std::uint64_t gradients = 0;         // their .grad plus the gradient shards
  std::uint64_t master_shards = 0;     // float32 shards the optimizer updates
  std::uint64_t frozen_shards = 0;     // shards of frozen parameters (held, never updated)
  std::uint64_t peak_gathered = 0;     // zero3: most parameter bytes materialised at once
};

// Bytes handed to each collective since construction (whole buffers, padding included).
struct ShardedTraffic {
  std::uint64_t allgather_bytes = 0, reduce_scatter_bytes = 0;
};

// The runtime side of ZeRO over one dp group. Each parameter is split along its first dim
// (`rows`, normally size(0); the outer dim of a fused view otherwise) into equal padded
// slices, one per dp rank; the optimizer updates only this rank's float32 shards().
//  - zero1: full gradients accumulate on every rank; at the sync micro-step each bucket is
//    reduce-scattered (launched from autograd hooks, overlapping backward).
//  - zero2: every micro-step reduce-scatters each bucket as soon as it is complete and frees
//    the full gradients; shards accumulate.
//  - zero3: as zero2 over parameter groups, and parameters live only as shards: a group is
//    all-gathered before its forward (the next `prefetch` groups in flight) and before its
//    backward, and freed after each; the forward's last part stays for the backward, which
//    starts with it, and a group used twice in one forward (a tied embedding) stays between.
// zero1/2 all-gather the updated shards back into the parameters after each optimizer step.
// Collectives are launched in one fixed order on every rank.
class ShardedDataParallel : public DataParallelGradients, public ParameterGroupHooks {
 public:
  // `rows[i]`: the rows parameter i is sharded along; `groups[i]`: its forward group (zero3).
  // Collective: a failure taking any rank's shards (before_sharding, the device's memory)
  // throws comm::AgreedError on every rank, the parameters then in no usable state.
  ShardedDataParallel(std::shared_ptr<comm::Communicator> dp, std::vector<torch::Tensor> parameters,
                      std::vector<std::int64_t> rows, std::vector<int> groups, ShardingOptions options);
  ~ShardedDataParallel() override;
  ShardedDataParallel(const ShardedDataParallel&) = delete;
  ShardedDataParallel& operator=(const ShardedDataParallel&) = delete;

  ShardingStage stage() const { return options_.stage; }
  // This rank's float32 shard of each parameter (leaves; .grad set by finalize()).
  const std::vector<torch::Tensor>& shards() const { return shards_; }
  const std::vector<Dim0Shard>& layout() const { return layout_; }

  void prepare_for_backward(bool sync) override;
  // After the sync micro-step's backward: every reduce-scatter done; each shard's .grad holds
  // the dp-summed gradient (callers scale the loss by loss_scale() to make it the mean).
  void finalize() override;
  void zero_grad();
  double loss_scale() const override { return 1.0 / dp_->size(); }
  void step_done() override {
    shards_updated();
    zero_grad();
  }
  // After the optimizer changed the shards: zero1/2 all-gather them into the parameters.
  void shards_updated();

  ShardedMemory memory() const;
  const ShardedTraffic& traffic() const { return traffic_; }

  void before_forward(const std::vector<int>& groups) override;
  torch::Tensor after_forward(const std::vector<int>& groups, const torch::Tensor& output) override;

 private:
  // Parameters that move together: a bucket (zero1/2) or a forward group (zero3).
  struct Unit {
    std::vector<std::size_t> parameters;
    std::vector<std::int64_t> offsets;  // of each parameter inside one rank's chunk
    std::int64_t chunk = 0;             // elements per rank, padding included
    // The gradient reduction covers the trained parameters only: their offsets in its chunk
    // (-1 for a frozen one), its elements per rank, and how many gradients it waits for.
    std::vector<std::int64_t> reduce_offsets;
    std::int64_t reduce_chunk = 0;
    std::size_t trained = 0;
    bool has_frozen = false;            // zero3: released after its backward by the part before
    std::size_t pending = 0;            // gradients not yet accumulated in this backward
    torch::Tensor reduce_input, reduce_output;
    std::unique_ptr<comm::Work> reduce;
    torch::Tensor gathered;  // zero3: the all-gather in flight or done
    std::unique_ptr<comm::Work> gather;
    bool resident = true;  // zero3: the parameters are materialised
  };
  // Calls before_sharding, takes this rank's float32 shard of each parameter to the device and
  // moves (zero1/2) or frees (zero3) the parameter itself; no collectives.
  void take_shards(const std::vector<std::int64_t>& rows);
  void on_gradient_ready(std::size_t parameter);
  void launch_ready_reductions();
  void launch_reduction(Unit& unit);
  void accumulate_reduction(Unit& unit);
  torch::Tensor pack_shards(const Unit& unit) const;  // this rank's chunk of the master shards
  void start_gather(Unit& unit);
  void unpack_gather(Unit& unit);  // waits, then copies the gathered rows into the parameters
  Unit* unit_of_group(int group);  // zero3; null for a group without parameters
  void materialise(int group);
  void release(int group);
  void release_unit(Unit& unit);  // drops its parameters' storage (keeps their autograd identity)
  void prefetch(const std::vector<int>& groups);  // starts their all-gathers (zero3)
  std::size_t training_trace_end() const;  // last_calls_[0, this) ran with gradients
  bool used_again_later(int group, std::size_t call) const;  // in this forward, by the last one's trace
  bool used_before(int group, std::size_t call) const;  // by this forward's calls before `call`
  bool frozen(std::size_t parameter) const { return !options_.frozen.empty() && options_.frozen[parameter]; }
  std::uint64_t resident_bytes() const;

  std::shared_ptr<comm::Communicator> dp_;
  std::vector<torch::Tensor> parameters_;
  std::vector<Dim0Shard> layout_;
  std::vector<torch::Tensor> shards_;
  std::vector<std::vector<std::int64_t>> full_shapes_;
  ShardingOptions options_;
  std::vector<Unit> units_;                 // in launch order (reverse forward order)
  std::vector<std::size_t> unit_of_;        // parameter -> unit
  std::vector<int> group_unit_;             // zero3: group -> unit (-1: no parameters)
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::size_t next_to_launch_ = 0;
  bool active_ = false, sync_ = false;
  // zero3: the group lists the forward ran, in order (this step's and the previous one's),
  // to prefetch the next in forward and the previous in backward.
  std::vector<std::vector<int>> calls_, last_calls_;
  std::size_t grad_calls_ = 0, last_grad_calls_ = 0;  // of those, the calls made with gradients (first)
  std::vector<int> release_pending_;  // zero3: the groups of the part that ran last, freed when the next starts
  ShardedTraffic traffic_;
  std::uint64_t peak_gathered_ = 0;
};

}  // namespace mpitrain::parallel
