// Turns a sharded save into a standard HF directory, the ranks sharing its blocks by bytes.
#include "runtime/checkpoint/consolidate.h"

#include <filesystem>
#include <memory>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/planned_files.h"
#include "runtime/checkpoint/save_plan.h"
#include "runtime/checkpoint/sharded_format.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

namespace {

void copy_model_files(const std::string& source_dir, const std::string& output_dir) {
  // The model's other files (config, generation config, tokenizer, training args) come
  // along; training state (optimizer, RNG, scheduler, trainer state, marker) does not: the
  // output is a model directory, not a checkpoint.
  for (const auto& item : fs::directory_iterator(source_dir)) {
    const auto name = item.path().filename().string();
    const bool state = item.path().extension() == ".safetensors" || name == kShardedIndexFile ||
                       name == kTrainerStateFile || name == kSchedulerFile || name == kCompleteMarker;
    if (!item.is_regular_file() || state) continue;
    if (fs::absolute(source_dir) == fs::absolute(output_dir)) continue;
    fs::copy_file(item.path(), fs::path(output_dir) / name, fs::copy_options::overwrite_existing);
  }
}

}  // namespace

void consolidate_sharded(comm::Communicator& comm, const std::string& source_dir, const std::string& output_dir,
                         std::uint64_t max_shard_size, bool verify_checksums) {
  std::unique_ptr<CheckpointReader> reader;
  std::vector<ShardedTensor> tensors;
  comm::run_agreed(comm, [&] {
    reader = std::make_unique<CheckpointReader>(source_dir);
    if (!reader->sharded()) throw CheckpointError(source_dir, "is not a sharded checkpoint (no " + std::string(kShardedIndexFile) + ")");
  });
  // Every file as it was saved (the ranks share the reading) before any is turned into an HF
  // directory that would carry a flipped byte on as sound.
  if (verify_checksums) comm::run_agreed(comm, [&] { verify_if_checkpoint(source_dir, comm.rank(), comm.size()); });
  comm::run_agreed(comm, [&] { tensors = read_sharded_index(source_dir); });
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  const auto plan = plan_hf_save(specs, max_shard_size);
  // Every saved block has one owner, balanced by bytes over the ranks.
  std::vector<std::uint64_t> bytes;
  for (const auto& t : tensors)
    for (const auto& saved : t.blocks)
      bytes.push_back(static_cast<std::uint64_t>(saved.block.numel()) * dtype_size(t.spec.dtype));
  const auto owner = balance_writers(bytes, comm.size());
  write_planned_files(comm, output_dir, plan, [&] {
    comm::run_agreed(comm, [&] {
      OpenFiles files(output_dir, plan);
      // Block by block, so memory stays at one saved block, never a whole model.
      std::size_t k = 0;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const auto& planned = plan.tensors[i];
        for (const auto& saved : tensors[i].blocks) {
          if (owner[k++] != comm.rank()) continue;
          auto data = reader->read(tensors[i].spec.name, saved.block, tensors[i].view).contiguous();
          write_packed_range(files.fd(planned.file), temp_name(output_dir, plan.files[planned.file].name), planned,
                             tensors[i].view, saved.block, static_cast<const std::uint8_t*>(data.data_ptr()), 0, 0,
                             data.nbytes());
        }
      }
      files.sync_all();
    });
  });
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) copy_model_files(source_dir, output_dir);
  });
}

}  // namespace mpitrain::checkpoint
