// save_mode sharded: every rank's written blocks in a shard file of its own, and the index (sharded_index.json) that says where each block sits.
#include "runtime/checkpoint/sharded_format.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/input_file.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

std::string shard_file(int rank) {
  char name[64];
  std::snprintf(name, sizeof name, "shard-%05d.safetensors", rank);
  return name;
}

namespace {

json index_of(const SaveBlocks& blocks) {
  json index = {{"format", kShardedIndexFormat}, {"version", 1}, {"tensors", json::array()}};
  std::uint64_t total = 0;
  const auto& tensors = blocks.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& l = tensors[i].layout;
    json saved = json::array();
    for (const auto& rb : blocks.of(i))
      if (rb.writer && !rb.block.empty())
        saved.push_back({{"file", shard_file(rb.rank)}, {"offsets", rb.block.offsets}, {"sizes", rb.block.sizes}});
    json entry = {{"name", l.name}, {"dtype", std::string(dtype_name(l.dtype))}, {"shape", l.shape}, {"blocks", saved}};
    if (!l.view.empty() && l.view != l.shape) entry["view"] = l.view;  // the blocks' coordinates
    index["tensors"].push_back(std::move(entry));
    total += spec_nbytes({l.name, l.dtype, l.shape});
  }
  index["total_size"] = total;
  return index;
}

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

void save_sharded(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged) {
  comm::run_agreed(comm, [&] { fs::create_directories(dir); });
  comm::run_agreed(comm, [&] {
    // Streamed in the file's order, which is the staging order: each block is staged just
    // before its bytes are written and freed after.
    const auto mine = blocks.written();
    write_safetensors_streamed(
        (fs::path(dir) / shard_file(comm.rank())).string(), blocks.written_specs(mine),
        [&](std::size_t k) { return staged_block(blocks, staged, mine[k]).data_ptr(); },
        [&](std::size_t k) { staged.release(mine[k]); });
  });
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    write_file_atomically((fs::path(dir) / kShardedIndexFile).string(), index_of(blocks).dump(1) + "\n");
    fsync_directory(dir);
  });
}

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
