// The bridge between safetensors bytes and LibTorch tensors (dtype mapping, reads, views for writing).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/checkpoint/safetensors_writer.h"

namespace mpitrain::checkpoint {

// Throws CheckpointError naming `where` for a dtype this LibTorch has no type for.
at::ScalarType to_scalar_type(DType dtype, const std::string& where);
DType from_scalar_type(at::ScalarType type);

// A new CPU tensor holding the whole tensor, in its stored dtype.
torch::Tensor read_tensor(const SafetensorsFile& file, const TensorEntry& entry);
// A new CPU tensor holding the block [offsets, offsets + sizes); reads only that block.
torch::Tensor read_tensor_slice(const SafetensorsFile& file, const TensorEntry& entry,
                                const std::vector<std::int64_t>& offsets, const std::vector<std::int64_t>& sizes);

// Describes a contiguous CPU tensor for the writer; the tensor must outlive the write.
TensorBytes tensor_bytes(const std::string& name, const torch::Tensor& contiguous_cpu);

}  // namespace mpitrain::checkpoint
