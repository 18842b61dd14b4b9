// Hugging Face's legacy weights, pytorch_model.bin (one file, or shards and pytorch_model.bin.index.json): read by LibTorch's own restricted unpickler and served as in-memory safetensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/hf_weights.h"

namespace mpitrain::checkpoint {

// The weights of a model directory, as from_pretrained finds them: safetensors wherever there
// are any (as HfWeights::open, and as transformers prefers them), else pytorch_model.bin or the
// shards its index names (each inside the directory, each present), cross-checked against the
// index as safetensors shards are. Each .bin is read whole into memory on opening (a pickle has
// no table of where its tensors lie); `mpitrain convert` turns a directory into safetensors once.
HfWeights open_model_weights(const std::string& path);

// One torch.save file (zip format) holding a dict of name -> tensor, as safetensors bytes, and
// the bytes of its storages counted once (tied tensors share one, which transformers' index
// total_size counts once). LibTorch's unpickler knows only tensors and plain containers:
// anything else in the pickle (a class, a function), a value that is not a tensor, or a file it
// cannot read is a CheckpointError naming the file.
struct ConvertedBin {
  std::vector<std::uint8_t> safetensors;
  std::uint64_t storage_bytes = 0;
};
ConvertedBin torch_bin_as_safetensors(const std::string& path);

}  // namespace mpitrain::checkpoint
