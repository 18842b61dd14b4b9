// The collective save on 2 and 4 ranks: gather, parallel and sharded+consolidate give the single-writer bytes; any layout reads back.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <tuple>

#include "runtime/checkpoint/assign_writers.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/checkpoint_reader.h"
#include "runtime/checkpoint/consolidate.h"
#include "runtime/checkpoint/distributed_save.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/save_plan.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/comm/string_collectives.h"
#include "tests/unit/test_files.h"

namespace mpitrain::checkpoint {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<comm::MpiCommunicator> world() {
  static auto w = comm::MpiCommunicator::world();
  return w;
}

// A scratch directory that rank 0 creates and every rank knows.
std::string shared_scratch(const std::string& tag) {
  std::string path;
  if (world()->rank() == 0) {
    std::string pattern = (fs::temp_directory_path() / ("mpitrain-save-" + tag + "-XXXXXX")).string();
    path = ::mkdtemp(pattern.data());
  }
  return comm::broadcast_string(*world(), path);
}

// Splits `extent` into `parts` nearly equal pieces; returns piece `index` as (offset, size).
std::pair<std::int64_t, std::int64_t> split(std::int64_t extent, int parts, int index) {
  const auto base = extent / parts, extra = extent % parts;
  const auto size = base + (index < extra ? 1 : 0);
  const auto offset = index * base + std::min<std::int64_t>(index, extra);
  return {offset, size};
}

struct GlobalTensor {
  std::string name;
  torch::Tensor value;
  int split_dim;  // -1: replicated
};

// The global model every rank can rebuild; each rank keeps its block.
std::vector<GlobalTensor> model() {
  return {
      {"a.column_parallel", torch::arange(30, torch::kFloat32).view({6, 5}), 0},
      {"b.row_parallel", torch::arange(28, torch::kFloat32).view({4, 7}) * 0.5, 1},
      {"c.replicated", torch::tensor({1.5f, -2.f, 3.f}), -1},
      {"d.bf16", torch::arange(24, torch::kFloat32).view({2, 3, 4}).to(torch::kBFloat16), -1},
      {"e.tiny", torch::tensor({7.f, 8.f, 9.f}), 0},  // at np 4 one rank holds nothing
      {"f.big", torch::randn({40, 6}, torch::TensorOptions().dtype(torch::kFloat32)), 0},
  };
}

// Rank `rank`'s block of `g`: split along its split dim, or the whole (a replica on every rank).
Block block_of(const GlobalTensor& g, int ranks, int rank) {
  auto block = Block::whole(g.value.sizes().vec());
  if (g.split_dim >= 0) {
    const auto d = static_cast<std::size_t>(g.split_dim);
    std::tie(block.offsets[d], block.sizes[d]) = split(block.sizes[d], ranks, rank);
  }
  return block;
}

std::vector<LocalTensor> local_blocks(const std::vector<GlobalTensor>& global) {
  auto& w = *world();
  std::vector<LocalTensor> out;
  for (const auto& g : global) {
    LocalTensor t;
    t.layout.name = g.name;
    t.layout.shape = g.value.sizes().vec();
    t.layout.dtype = from_scalar_type(g.value.scalar_type());
    t.layout.block = block_of(g, w.size(), w.rank());
    t.data = g.value;
    for (std::size_t d = 0; d < t.layout.block.sizes.size(); ++d)
      t.data = t.data.narrow(static_cast<std::int64_t>(d), t.layout.block.offsets[d], t.layout.block.sizes[d]);
    t.data = t.data.contiguous();
    out.push_back(std::move(t));
  }
  return out;
}

// The reference: one process writes the whole tensors with the plain HF writer.
void write_reference(const std::string& dir, const std::vector<GlobalTensor>& global, std::uint64_t max_shard) {
  std::vector<torch::Tensor> keep;
  std::vector<TensorBytes> tensors;
  for (const auto& g : global) {
    keep.push_back(g.value.contiguous());
    tensors.push_back(tensor_bytes(g.name, keep.back()));
  }
  save_hf_weights(dir, tensors, max_shard);
}

void expect_same_files(const std::string& expected, const std::string& actual) {
  std::vector<std::string> names;
  for (const auto& item : fs::directory_iterator(expected)) names.push_back(item.path().filename().string());
  ASSERT_FALSE(names.empty());
  for (const auto& name : names) {
    ASSERT_TRUE(fs::exists(fs::path(actual) / name)) << name;
    EXPECT_TRUE(testing::read_bytes(expected + "/" + name) == testing::read_bytes(actual + "/" + name)) << name;
  }
  for (const auto& item : fs::directory_iterator(actual))
    EXPECT_TRUE(fs::exists(fs::path(expected) / item.path().filename())) << "extra file " << item.path();
}

class DistributedSave : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(DistributedSave, GatherAndParallelWriteTheSingleWriterBytes) {
  torch::manual_seed(3);  // same f.big on every rank
  const auto global = model();
  const auto locals = local_blocks(global);
  const auto root = shared_scratch("modes");
  const auto max_shard = GetParam();
  if (world()->rank() == 0) write_reference(root + "/reference", global, max_shard);
  // Parallel mode through each writer: MPI-IO subarray views, pwrite, and the automatic choice.
  const std::vector<std::tuple<SaveMode, SaveIo, const char*>> ways = {{SaveMode::kGather, SaveIo::kAuto, "gather"},
                                                                       {SaveMode::kParallel, SaveIo::kMpiio, "parallel"},
                                                                       {SaveMode::kParallel, SaveIo::kPosix, "posix"},
                                                                       {SaveMode::kParallel, SaveIo::kAuto, "auto"}};
  // Each way also with every block staged through the two-buffer pipeline a GPU's blocks take
  // (7-byte chunks: many, not aligned with elements or rows).
  for (const bool staged : {false, true})
    for (const auto& [mode, io, name] : ways) {
      DistributedSaveOptions options;
      options.mode = mode;
      options.io = io;
      options.max_shard_size = max_shard;
      options.gather_window_bytes = 40;  // many windows, not aligned with rows
      options.staging = {7, staged};
      const auto out = root + "/" + name + (staged ? "-staged" : "");
      save_distributed(*world(), out, locals, options);
      world()->barrier();
      if (world()->rank() == 0) expect_same_files(root + "/reference", out);
    }
  DistributedSaveOptions sharded;
  sharded.mode = SaveMode::kSharded;
  save_distributed(*world(), root + "/sharded", locals, sharded);
  sharded.staging = {7, true};
  save_distributed(*world(), root + "/sharded-staged", locals, sharded);
  world()->barrier();
  if (world()->rank() == 0) expect_same_files(root + "/sharded", root + "/sharded-staged");
  // Collective: every rank writes its share of the blocks.
  consolidate_sharded(*world(), root + "/sharded", root + "/consolidated", max_shard);
  if (world()->rank() == 0) expect_same_files(root + "/reference", root + "/consolidated");
  // Any block reads back from either kind of directory: here the column-parallel tensor
  // split along dim 1 instead, and the row-parallel one along dim 0 (a reshard).
  for (const char* source : {"sharded", "parallel"}) {
    CheckpointReader reader(root + "/" + source);
    for (const auto& g : global) {
      const auto dim = g.value.dim() > 1 ? 1 - std::max(g.split_dim, 0) : 0;
      auto block = Block::whole(g.value.sizes().vec());
      const auto [offset, size] = split(g.value.size(dim), world()->size(), world()->rank());
      block.offsets[static_cast<std::size_t>(dim)] = offset;
      block.sizes[static_cast<std::size_t>(dim)] = size;
      EXPECT_TRUE(torch::equal(reader.read(g.name, block), g.value.narrow(dim, offset, size))) << source << " " << g.name;
    }
  }
  world()->barrier();
  if (world()->rank() == 0) remove_tree(root);
}

INSTANTIATE_TEST_SUITE_P(ShardSizes, DistributedSave, ::testing::Values(5'000'000'000ull, 300ull));

const std::vector<std::tuple<SaveMode, SaveIo, const char*>>& every_way() {
  static const std::vector<std::tuple<SaveMode, SaveIo, const char*>> ways = {
      {SaveMode::kGather, SaveIo::kAuto, "gather"},
      {SaveMode::kParallel, SaveIo::kMpiio, "parallel"},
      {SaveMode::kParallel, SaveIo::kPosix, "posix"},
      {SaveMode::kSharded, SaveIo::kAuto, "sharded"}};
  return ways;
}

// The most a writer that frees each block once written may hold with a bound of one byte:
// this rank's largest written block, the writers assigned as the save assigns them.
std::uint64_t largest_written_block(const std::vector<GlobalTensor>& global, SaveMode mode) {
  auto& w = *world();
  std::vector<TensorBlocks> tensors;
  for (const auto& g : global) {
    TensorBlocks t;
    t.element_size = g.value.element_size();
    for (int r = 0; r < w.size(); ++r) t.by_rank.push_back(block_of(g, w.size(), r));
    tensors.push_back(std::move(t));
  }
  const auto writes = assign_writers(tensors, mode);
  std::uint64_t largest = 0;
  for (std::size_t i = 0; i < global.size(); ++i)
    if (writes[i][static_cast<std::size_t>(w.rank())])
      largest = std::max(largest, static_cast<std::uint64_t>(tensors[i].by_rank[static_cast<std::size_t>(w.rank())].numel()) *
                                      tensors[i].element_size);
  return largest;
}

TEST(DistributedSave, ASavedDtypeIsMadeBlockByBlockWhileWriting) {
  torch::manual_seed(3);
  const auto global = model();
  // What a bf16 save must hold: every float32 tensor rounded to bf16.
  auto converted = global;
  for (auto& g : converted)
    if (g.value.scalar_type() == torch::kFloat32) g.value = g.value.to(torch::kBFloat16);
  auto locals = local_blocks(global);  // float32 data, bf16 layouts: converted by the save
  for (auto& t : locals) t.layout.dtype = from_scalar_type(torch::kBFloat16);
  const auto up_front = local_blocks(converted);
  const auto root = shared_scratch("dtype");
  if (world()->rank() == 0) write_reference(root + "/reference", converted, 300);
  for (const auto& [mode, io, name] : every_way())
    // Staged as a GPU's blocks are too (7-byte chunks), and with a bound of one byte (each
    // block converted only when asked for).
    for (const StagingOptions& staging : {StagingOptions{}, StagingOptions{7, true, 1}}) {
      DistributedSaveOptions options;
      options.mode = mode;
      options.io = io;
      options.max_shard_size = 300;
      options.gather_window_bytes = 40;
      options.staging = staging;
      const auto out = root + "/" + name + (staging.stage_cpu_tensors ? "-staged" : "");
      const auto stats = save_distributed(*world(), out, locals, options);
      // Each block freed once written: with a bound of one byte, one block held at a time
      // (MPI-IO too: each collective round writes one block per rank).
      if (staging.ahead_bytes == 1) {
        EXPECT_LE(stats.peak_host_copy_bytes, largest_written_block(converted, mode)) << name;
      }
      if (mode == SaveMode::kSharded) save_distributed(*world(), out + "-up-front", up_front, options);
      world()->barrier();
      if (world()->rank() == 0)
        expect_same_files(mode == SaveMode::kSharded ? out + "-up-front" : root + "/reference", out);
    }
  world()->barrier();
  if (world()->rank() == 0) remove_tree(root);
}

TEST(DistributedSave, ADirectoryNotSharedByEveryRankIsAClearErrorExceptForGather) {
  const auto root = shared_scratch("local");
  // Each rank's own directory, as node-local storage on another host would be.
  const auto mine = root + "/node" + std::to_string(world()->rank());
  torch::manual_seed(5);  // every rank the same model
  const auto global = model();
  const auto locals = local_blocks(global);
  for (const auto& [mode, io, name] : every_way()) {
    SCOPED_TRACE(name);
    DistributedSaveOptions options;
    options.mode = mode;
    options.io = io;
    options.max_shard_size = 300;
    options.gather_window_bytes = 40;
    const auto dir = mine + "/" + name;
    if (mode == SaveMode::kGather) {  // only rank 0 writes: it works
      save_distributed(*world(), dir, locals, options);
      if (world()->rank() == 0) {
        write_reference(root + "/reference", global, 300);
        expect_same_files(root + "/reference", dir);
      }
      continue;
    }
    try {
      save_distributed(*world(), dir, locals, options);
      ADD_FAILURE() << "the save did not fail";
    } catch (const comm::AgreedError& e) {
      // Named by the first rank that cannot see rank 0's files, as that rank sees it.
      EXPECT_EQ(std::string(e.what()).rfind(root + "/node1/" + name + ": is not on a filesystem every rank shares: rank 1 (on host ", 0), 0u)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("save_mode gather writes from rank 0 only"), std::string::npos) << e.what();
    }
    // Nothing written anywhere, the probe removed.
    if (fs::exists(dir)) {
      EXPECT_TRUE(fs::is_empty(dir)) << dir;
    }
    if (mode != SaveMode::kParallel) continue;
    // Without the probe, the files rank 0 created are missing elsewhere: still one agreed
    // error naming a file, never a rank left inside MPI-IO's collective calls.
    options.check_shared_directory = false;
    try {
      save_distributed(*world(), dir, locals, options);
      ADD_FAILURE() << "the save did not fail";
    } catch (const comm::AgreedError& e) {
      EXPECT_NE(std::string(e.what()).find("model-00001-of-"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cannot open for writing: No such file or directory"), std::string::npos)
          << e.what();
    }
    if (world()->rank() == 0) {
      EXPECT_TRUE(fs::is_empty(dir)) << dir;  // its temporaries removed
    }
  }
  world()->barrier();
  if (world()->rank() == 0) remove_tree(root);
}

TEST(DistributedSave, BadShardedDirectoriesAreClearErrors) {
  // Not a sharded checkpoint (here: nothing at all): the same error on every rank.
  EXPECT_THROW(consolidate_sharded(*world(), "/nonexistent/checkpoint", "/nonexistent/out", 1000), comm::AgreedError);
  if (world()->rank() != 0) return;
  testing::ScratchDir dir;
  testing::write_bytes(dir / "sharded_index.json",
                       R"({"format": "mpitrain-sharded", "version": 1, "tensors": [{"name": "w", "dtype": "F32",
                           "shape": [2], "blocks": [{"file": "../escape.safetensors", "offsets": [0], "sizes": [2]}]}]})");
  try {
    CheckpointReader reader(dir.path());
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("outside the directory"), std::string::npos) << e.what();
  }
  testing::write_bytes(dir / "sharded_index.json",
                       R"({"format": "mpitrain-sharded", "version": 1, "tensors": [{"name": "w", "dtype": "F32",
                           "shape": [2], "blocks": [{"file": "shard-00000.safetensors", "offsets": [0], "sizes": [2]}]}]})");
  CheckpointReader reader(dir.path());
  try {
    reader.read("w", Block::whole({2}));
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

// Every file of a directory, by name.
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& item : fs::directory_iterator(dir))
    files[item.path().filename().string()] = testing::read_bytes(item.path().string());
  return files;
}

TEST(DistributedSave, AFailedSaveLeavesThePreviousFilesAndNoTemporaries) {
  const auto global = model();
  const auto root = shared_scratch("fail");
  // A block of the wrong shape (found before any write), and one that cannot be staged
  // (as a GPU copy that fails: found midway, while other ranks send, receive or write), on
  // the last rank or on rank 0 (gather mode's receiver).
  struct Fault {
    const char* name;
    std::size_t tensor;  // a block every rank writes
    bool stage_all;      // staging CPU blocks too: the failing block is met midway
    std::function<void(LocalTensor&)> apply;
    const char* message;  // what the one-line error says, after the tensor's name
  };
  const auto on_meta = [](LocalTensor& t) { t.data = torch::empty(t.data.sizes(), torch::device(torch::kMeta)); };
  const std::vector<Fault> faults = {
      {"wrong shape", 0, false, [](LocalTensor& t) { t.data = torch::zeros({1, 1}); },
       "a.column_parallel: local block is not"},
      {"cannot stage", 0, false, on_meta, "a.column_parallel: could not be staged to host memory"},
      // Blocks a..e are staged (and sent, or written) before f fails.
      {"fails midway", 5, true, on_meta, "f.big: could not be staged to host memory"}};
  for (const auto& [mode, io, name] : every_way())
    for (const auto& [fault, tensor, stage_all, apply, message] : faults)
      for (const int faulty_rank : {world()->size() - 1, 0}) {
        SCOPED_TRACE(std::string(name) + ", " + fault + " on rank " + std::to_string(faulty_rank));
        const auto dir = root + "/" + name;
        auto locals = local_blocks(global);
        DistributedSaveOptions options;
        options.mode = mode;
        options.io = io;
        options.gather_window_bytes = 40;
        options.staging = {7, stage_all, 1};  // MPI-IO: a round per block, so "midway" is a later round
        save_distributed(*world(), dir, locals, options);
        world()->barrier();
        const auto before = world()->rank() == 0 ? files_of(dir) : std::map<std::string, std::string>();
        if (world()->rank() == faulty_rank) apply(locals[tensor]);
        try {
          save_distributed(*world(), dir, locals, options);
          ADD_FAILURE() << "the save did not fail";
        } catch (const comm::AgreedError& e) {
          EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
        }
        world()->barrier();
        if (world()->rank() == 0) {
          const auto after = files_of(dir);
          for (const auto& [file, bytes] : after) EXPECT_EQ(file.find(".tmp"), std::string::npos) << file;
          // A sharded save is made in a fresh directory by its callers: only the consolidated
          // kinds promise the previous files back.
          if (mode != SaveMode::kSharded) {
            EXPECT_TRUE(after == before);
          }
        }
      }
  world()->barrier();
  if (world()->rank() == 0) remove_tree(root);
}

}  // namespace
}  // namespace mpitrain::checkpoint
