// The plan of an HF weights save: which file each tensor goes to and at which byte offset, before any byte moves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/safetensors_header.h"

namespace mpitrain::checkpoint {

struct PlannedFile {
  std::string name;      // model.safetensors or model-0000k-of-0000N.safetensors
  std::string preamble;  // length + header + padding
  std::uint64_t size = 0;
};

struct PlannedTensor {
  TensorSpec spec;
  std::size_t file = 0;         // index into SavePlan::files
  std::uint64_t offset = 0;     // absolute offset of the tensor's first byte in its file
};

// A pure function of the tensors (in state-dict order, which decides the sharding exactly as
// transformers does) and max_shard_size: every rank computes the same plan, so all of them
// can write into the same files at once, or stream to one writer, without talking about it.
struct SavePlan {
  std::vector<PlannedFile> files;
  std::vector<PlannedTensor> tensors;  // in state-dict order
  ShardIndex index;                    // meaningful when sharded
  bool sharded = false;
  std::uint64_t total_bytes = 0;

  const PlannedTensor& tensor(const std::string& name) const;
};

// `single_file`: the one file's name when the tensors fit in one (a PEFT adapter's is
// adapter_model.safetensors).
SavePlan plan_hf_save(const std::vector<TensorSpec>& tensors, std::uint64_t max_shard_size,
                      const std::string& single_file = kSingleWeightsFile);

}  // namespace mpitrain::checkpoint
