// The layout abstraction: which rectangular block of each global tensor a rank holds.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/checkpoint/dtype.h"

namespace mpitrain::checkpoint {

struct Block {
  std::vector<std::int64_t> offsets, sizes;  // per dimension, within the global tensor

  std::int64_t numel() const;
  bool empty() const { return numel() == 0; }
  // The intersection with another block of the same tensor (sizes 0 when disjoint).
  Block intersect(const Block& other) const;
  static Block whole(const std::vector<std::int64_t>& shape);
};

// One saved tensor as one rank sees it. DP replica: the whole tensor on every rank.
// TP column-parallel: a dim-0 block; row-parallel: a dim-1 block; sharded: a dim-0 block of
// the TP-local block. Ranks holding equal blocks of a tensor hold copies of the same values
// (its replica group: DP replicas, tp ranks sharing a kv slice); one of them writes it, as
// assign_writers decides from every rank's layout. Save, load, reshard and consolidate are one
// algorithm over these: intersect blocks, move bytes.
struct TensorLayout {
  std::string name;                  // HF name
  std::vector<std::int64_t> shape;   // global shape
  // The coordinates of `block` when not `shape`: the same row-major bytes with a dim seen as
  // several (GPT-2's fused q|k|v columns as [3, n]), so a slice of every part is one block.
  std::vector<std::int64_t> view;
  DType dtype = DType::F32;          // as saved
  Block block;                       // what this rank holds, in coords()

  const std::vector<std::int64_t>& coords() const { return view.empty() ? shape : view; }
};

// Visits the contiguous byte runs that a block occupies inside its row-major tensor:
// fn(offset_in_tensor_bytes, offset_in_packed_block_bytes, length). Runs come in packed
// order; trailing dimensions the block covers whole are merged into one run.
void for_each_run(const std::vector<std::int64_t>& shape, std::size_t element_size, const Block& block,
                  const std::function<void(std::uint64_t, std::uint64_t, std::uint64_t)>& fn);

// Splits `count` replicated tensors of the given sizes among `writers` ranks so that each
// writes about the same number of bytes (largest first onto the least loaded); returns the
// writer of each tensor. The same inputs give the same answer on every rank.
std::vector<int> balance_writers(const std::vector<std::uint64_t>& bytes, int writers);

}  // namespace mpitrain::checkpoint
