// save_mode sharded: every rank's written blocks in a shard file of its own, and the index (sharded_index.json) that says where each block sits.
#include "runtime/checkpoint/sharded_format.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_schema.h"
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

}  // namespace mpitrain::checkpoint
