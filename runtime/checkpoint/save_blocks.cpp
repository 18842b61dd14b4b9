// Inside a collective save: every rank's block of every tensor, which rank writes each, and this rank's blocks as the writes ask for them.
#include "runtime/checkpoint/save_blocks.h"

#include <numeric>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "runtime/checkpoint/torch_tensors.h"

namespace mpitrain::checkpoint {

SaveBlocks::SaveBlocks(comm::Communicator& comm, const std::vector<LocalTensor>& tensors, SaveMode mode)
    : tensors_(tensors), layouts_(tensors.size()), rank_(comm.rank()) {
  std::vector<std::int64_t> row;
  for (const auto& t : tensors) {
    for (auto o : t.layout.block.offsets) row.push_back(o);
    for (auto s : t.layout.block.sizes) row.push_back(s);
  }
  const auto width = static_cast<std::int64_t>(row.size());
  auto all = comm.allgather(torch::tensor(row, torch::kInt64).view({1, width}));
  std::vector<TensorBlocks> by_tensor(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) by_tensor[i].element_size = dtype_size(tensors[i].layout.dtype);
  for (int r = 0; r < comm.size(); ++r) {
    const auto* values = all[r].data_ptr<std::int64_t>();
    std::size_t k = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto ndim = tensors[i].layout.coords().size();
      Block block;
      for (std::size_t d = 0; d < ndim; ++d) block.offsets.push_back(values[k++]);
      for (std::size_t d = 0; d < ndim; ++d) block.sizes.push_back(values[k++]);
      by_tensor[i].by_rank.push_back(block);
    }
  }
  const auto writes = assign_writers(by_tensor, mode);
  for (std::size_t i = 0; i < tensors.size(); ++i)
    for (int r = 0; r < comm.size(); ++r)
      layouts_[i].push_back({r, by_tensor[i].by_rank[static_cast<std::size_t>(r)], writes[i][static_cast<std::size_t>(r)]});
}

bool SaveBlocks::writes(std::size_t i) const {
  const auto& mine = layouts_[i][static_cast<std::size_t>(rank_)];
  return mine.writer && !mine.block.empty();
}

std::vector<std::size_t> SaveBlocks::written() const {
  std::vector<std::size_t> mine;
  for (std::size_t i = 0; i < tensors_.size(); ++i)
    if (writes(i)) mine.push_back(i);
  return mine;
}

std::vector<TensorSpec> SaveBlocks::specs() const {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors_) specs.push_back({t.layout.name, t.layout.dtype, t.layout.shape});
  return specs;
}

std::vector<TensorSpec> SaveBlocks::written_specs(const std::vector<std::size_t>& written) const {
  std::vector<TensorSpec> specs;
  for (const auto i : written) specs.push_back({tensors_[i].layout.name, tensors_[i].layout.dtype, tensors_[i].layout.block.sizes});
  return specs;
}

namespace {
const char* const kNotTheBlock = "local block is not a contiguous tensor of the layout's dtype and block shape";
}  // namespace

const torch::Tensor& staged_block(const SaveBlocks& blocks, HostStaging& staged, std::size_t i) {
  const auto& t = blocks.tensors()[i];
  const torch::Tensor* data = nullptr;
  try {
    data = &staged.host(i);
  } catch (const std::exception& e) {
    throw CheckpointError(t.layout.name, std::string("could not be staged to host memory (") + e.what() + ")");
  }
  if (!data->is_contiguous() || !data->device().is_cpu() || from_scalar_type(data->scalar_type()) != t.layout.dtype ||
      data->sizes().vec() != t.layout.block.sizes)
    throw CheckpointError(t.layout.name, kNotTheBlock);
  return *data;
}

void check_block_shape(const LocalTensor& t) {
  if (!t.data.defined() || !t.data.is_contiguous() || t.data.sizes().vec() != t.layout.block.sizes)
    throw CheckpointError(t.layout.name, kNotTheBlock);
}

std::vector<std::size_t> staging_order(const SaveBlocks& blocks, SaveMode mode, const SavePlan* plan) {
  const auto count = blocks.tensors().size();
  std::vector<std::size_t> order(count);
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (mode == SaveMode::kSharded) {
    const auto mine = blocks.written();
    std::vector<std::size_t> file_order;
    try {
      file_order = safetensors_file_order(blocks.written_specs(mine));
    } catch (const std::exception&) {
      return order;  // the shard's writer raises the same error, inside its agreed step
    }
    std::vector<std::size_t> sharded;
    for (const auto k : file_order) sharded.push_back(mine[k]);
    std::vector<bool> listed(count, false);
    for (const auto i : sharded) listed[i] = true;
    for (std::size_t i = 0; i < count; ++i)
      if (!listed[i]) sharded.push_back(i);  // not written: nothing to stage
    return sharded;
  }
  if (plan)
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return plan->tensors[a].file < plan->tensors[b].file; });
  return order;
}

}  // namespace mpitrain::checkpoint
