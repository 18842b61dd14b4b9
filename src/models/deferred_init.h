// Parameters registered empty and initialised later one at a time, with the random numbers construction would have drawn: a rank that shards a model as it is made never holds it whole.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <functional>
#include <unordered_map>
#include <vector>

#include "src/models/layers.h"

namespace mpitrain::models {

// While one records (from construction to stop_recording(), on this thread), layers register
// their randomly initialised (tp-sliced) parameters empty — allocated, never touched, so no
// memory is committed — and record how to make each. materialise() then makes them one at a
// time, in construction order, from the random generator's state when recording began: the
// values construction would have given, whatever was drawn in between. A caller that takes
// each parameter's slice and frees the rest (ZeRO-3's set-up) holds one whole tensor at most.
class DeferredInitialisation {
 public:
  DeferredInitialisation();  // snapshots the default CPU generator and starts recording
  ~DeferredInitialisation();
  DeferredInitialisation(const DeferredInitialisation&) = delete;
  DeferredInitialisation& operator=(const DeferredInitialisation&) = delete;

  void stop_recording();
  // The recorder of this thread, or null (for the layers).
  static DeferredInitialisation* recording();
  // Called by a layer: `parameter` (registered empty) is made later as slice_for_shard(init(full_shape), shard).
  void record(const torch::Tensor& parameter, std::vector<std::int64_t> full_shape,
              std::function<torch::Tensor(at::IntArrayRef)> init, const Shard& shard);

  // Gives `parameter` its initial values, and first every parameter recorded before it that
  // has none yet (taking them out of order costs memory, never values). A parameter not
  // recorded, or already made, is left as it is.
  void materialise(const torch::Tensor& parameter);
  std::size_t recorded() const { return entries_.size(); }
  std::size_t materialised() const { return next_; }

 private:
  struct Entry {
    torch::Tensor parameter;
    std::vector<std::int64_t> full_shape;
    std::function<torch::Tensor(at::IntArrayRef)> init;
    Shard shard;
  };
  std::vector<Entry> entries_;
  std::unordered_map<const void*, std::size_t> index_;  // by TensorImpl
  std::size_t next_ = 0;                                 // entries_[0, next_) are made
  torch::Tensor generator_state_;
};

}  // namespace mpitrain::models
