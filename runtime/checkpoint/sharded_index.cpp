// The index of a sharded save (sharded_index.json): where each block of each tensor sits, read and checked without torch (inspect reads it too).
#include "runtime/checkpoint/sharded_index.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

ShardedTensor tensor_of(const json& t, const std::string& path) {
  ShardedTensor st;
  st.spec.name = t.at("name").get<std::string>();
  const auto dtype = dtype_from_name(t.at("dtype").get<std::string>());
  if (!dtype) throw CheckpointError(path, "tensor '" + st.spec.name + "' has an unknown dtype");
  st.spec.dtype = *dtype;
  st.spec.shape = t.at("shape").get<std::vector<std::int64_t>>();
  st.view = t.contains("view") ? t.at("view").get<std::vector<std::int64_t>>() : st.spec.shape;
  std::int64_t covered = 0, numel = 1, view_numel = 1;
  for (auto d : st.spec.shape) numel *= d;
  for (auto d : st.view) view_numel *= d;
  if (view_numel != numel) throw CheckpointError(path, "tensor '" + st.spec.name + "' has a view of another size");
  for (const auto& b : t.at("blocks")) {
    SavedBlock sb{b.at("file").get<std::string>(),
                  {b.at("offsets").get<std::vector<std::int64_t>>(), b.at("sizes").get<std::vector<std::int64_t>>()}};
    if (!is_safe_relative_name(sb.file))
      throw CheckpointError(path, "tensor '" + st.spec.name + "' names a file outside the directory: '" + sb.file + "'");
    if (sb.block.offsets.size() != st.view.size() || sb.block.sizes.size() != st.view.size())
      throw CheckpointError(path, "tensor '" + st.spec.name + "' has a block of the wrong rank");
    for (std::size_t d = 0; d < st.view.size(); ++d)
      if (sb.block.offsets[d] < 0 || sb.block.sizes[d] < 0 || sb.block.offsets[d] + sb.block.sizes[d] > st.view[d])
        throw CheckpointError(path, "tensor '" + st.spec.name + "' has a block outside its shape");
    covered += sb.block.numel();
    st.blocks.push_back(std::move(sb));
  }
  for (std::size_t a = 0; a < st.blocks.size(); ++a)
    for (std::size_t b = a + 1; b < st.blocks.size(); ++b)
      if (!st.blocks[a].block.intersect(st.blocks[b].block).empty())
        throw CheckpointError(path, "tensor '" + st.spec.name + "' has overlapping blocks");
  if (covered != numel) throw CheckpointError(path, "the blocks of tensor '" + st.spec.name + "' do not cover it");
  return st;
}

}  // namespace

std::vector<ShardedTensor> read_sharded_index(const std::string& dir) {
  const auto path = (fs::path(dir) / kShardedIndexFile).string();
  if (!fs::exists(path)) throw CheckpointError(dir, "is not a sharded checkpoint (no " + std::string(kShardedIndexFile) + ")");
  const auto index = parse_json(read_regular_file(path), path);
  if (index.value("format", std::string()) != kShardedIndexFormat || !index.contains("tensors"))
    throw CheckpointError(path, "not an mpitrain sharded index");
  std::vector<ShardedTensor> out;
  try {
    for (const auto& t : index["tensors"]) out.push_back(tensor_of(t, path));
  } catch (const json::exception& e) {
    throw CheckpointError(path, std::string("malformed index (") + e.what() + ")");
  }
  return out;
}

}  // namespace mpitrain::checkpoint
