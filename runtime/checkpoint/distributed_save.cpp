// The collective save: every rank's blocks into one HF directory (gather to rank 0, parallel writes) or per-rank shards.
#include "runtime/checkpoint/distributed_save.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <numeric>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_dir.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/crash_point.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/mpiio_writer.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/checkpoint/safetensors_writer.h"
#include "runtime/checkpoint/save_plan.h"
#include "runtime/checkpoint/shared_directory.h"
#include "runtime/checkpoint/torch_tensors.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/mpi_communicator.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

SaveMode parse_save_mode(const std::string& name) {
  if (name == "gather") return SaveMode::kGather;
  if (name == "parallel") return SaveMode::kParallel;
  if (name == "sharded") return SaveMode::kSharded;
  throw std::invalid_argument("save_mode '" + name + "' is not one of gather, parallel, sharded");
}

SaveIo parse_save_io(const std::string& name) {
  if (name == "auto") return SaveIo::kAuto;
  if (name == "mpiio") return SaveIo::kMpiio;
  if (name == "posix") return SaveIo::kPosix;
  throw std::invalid_argument("save_io '" + name + "' is not one of auto, mpiio, posix");
}

namespace {

struct RankBlock {
  int rank;
  Block block;
  bool writer;
};

// Every rank's block of every tensor: one allgather of a fixed-size integer table.
std::vector<std::vector<RankBlock>> gather_layouts(comm::Communicator& comm, const std::vector<LocalTensor>& tensors) {
  std::vector<std::int64_t> row;
  for (const auto& t : tensors) {
    for (auto o : t.layout.block.offsets) row.push_back(o);
    for (auto s : t.layout.block.sizes) row.push_back(s);
    row.push_back(t.layout.writer ? 1 : 0);
  }
  const auto width = static_cast<std::int64_t>(row.size());
  auto all = comm.allgather(torch::tensor(row, torch::kInt64).view({1, width}));
  std::vector<std::vector<RankBlock>> out(tensors.size());
  for (int r = 0; r < comm.size(); ++r) {
    const auto* values = all[r].data_ptr<std::int64_t>();
    std::size_t k = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto ndim = tensors[i].layout.coords().size();
      RankBlock rb{r, {}, false};
      for (std::size_t d = 0; d < ndim; ++d) rb.block.offsets.push_back(values[k++]);
      for (std::size_t d = 0; d < ndim; ++d) rb.block.sizes.push_back(values[k++]);
      rb.writer = values[k++] != 0;
      out[i].push_back(rb);
    }
  }
  return out;
}

std::string temp_name(const std::string& dir, const std::string& file) {
  return (fs::path(dir) / (file + ".tmp-save")).string();
}

void pwrite_all(int fd, const void* data, std::uint64_t length, std::uint64_t offset, const std::string& path) {
  const auto* cursor = static_cast<const char*>(data);
  while (length > 0) {
    const auto n = ::pwrite(fd, cursor, std::min<std::uint64_t>(length, 1u << 30), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw CheckpointError(path, std::string("write failed: ") + std::strerror(errno));
    cursor += n;
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::uint64_t>(n);
  }
}

class OpenFiles {
 public:
  OpenFiles(const std::string& dir, const SavePlan& plan) : dir_(dir), plan_(plan), fds_(plan.files.size(), -1) {}
  ~OpenFiles() {
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
  }
  int fd(std::size_t file) {
    if (fds_[file] < 0) {
      const auto path = temp_name(dir_, plan_.files[file].name);
      fds_[file] = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fds_[file] < 0) throw CheckpointError(path, std::string("cannot open for writing: ") + std::strerror(errno));
    }
    return fds_[file];
  }
  void sync_all() {
    for (std::size_t f = 0; f < fds_.size(); ++f)
      if (fds_[f] >= 0 && ::fsync(fds_[f]) != 0)
        throw CheckpointError(temp_name(dir_, plan_.files[f].name), std::string("fsync failed: ") + std::strerror(errno));
  }

 private:
  std::string dir_;
  const SavePlan& plan_;
  std::vector<int> fds_;
};

// Rank 0: every planned file exists under its temporary name, header written, full length.
void create_planned_files(const std::string& dir, const SavePlan& plan) {
  fs::create_directories(dir);
  for (const auto& file : plan.files) {
    const auto path = temp_name(dir, file.name);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw CheckpointError(path, std::string("cannot create: ") + std::strerror(errno));
    try {
      pwrite_all(fd, file.preamble.data(), file.preamble.size(), 0, path);
      if (::ftruncate(fd, static_cast<off_t>(file.size)) != 0)
        throw CheckpointError(path, std::string("cannot size the file: ") + std::strerror(errno));
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
  }
}

// Rank 0, once every writer has fsynced: final names, index, stale files gone.
void commit_planned_files(const std::string& dir, const SavePlan& plan) {
  for (const auto& file : plan.files) {
    const auto path = temp_name(dir, file.name);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
      if (fd >= 0) ::close(fd);
      throw CheckpointError(path, std::string("fsync failed: ") + std::strerror(errno));
    }
    ::close(fd);
    fs::rename(path, fs::path(dir) / file.name);
  }
  finish_hf_save(dir, plan);
}

void remove_temporaries(const std::string& dir, const SavePlan& plan) {
  std::error_code ignored;
  for (const auto& file : plan.files) fs::remove(temp_name(dir, file.name), ignored);
}

// Writes the packed bytes [begin, end) of a block held in `packed` (which starts at packed
// byte `packed_base`) to the runs of the file they belong to.
void write_packed_range(int fd, const std::string& path, const PlannedTensor& planned,
                        const std::vector<std::int64_t>& coords, const Block& block, const std::uint8_t* packed,
                        std::uint64_t packed_base, std::uint64_t begin, std::uint64_t end) {
  for_each_run(coords, dtype_size(planned.spec.dtype), block,
               [&](std::uint64_t in_tensor, std::uint64_t in_block, std::uint64_t length) {
                 const auto lo = std::max(in_block, begin), hi = std::min(in_block + length, end);
                 if (lo >= hi) return;
                 pwrite_all(fd, packed + (lo - packed_base), hi - lo, planned.offset + in_tensor + (lo - in_block), path);
               });
}

std::vector<TensorSpec> specs_of(const std::vector<LocalTensor>& tensors) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back({t.layout.name, t.layout.dtype, t.layout.shape});
  return specs;
}

// Whether this rank writes a block of `t` (a writer with a non-empty block).
bool writes(const LocalTensor& t) { return t.layout.writer && !t.layout.block.empty(); }

// The tensors this rank writes a block of, in index order.
std::vector<std::size_t> written_blocks(const std::vector<LocalTensor>& tensors) {
  std::vector<std::size_t> mine;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (writes(tensors[i])) mine.push_back(i);
  return mine;
}

const char* const kNotTheBlock = "local block is not a contiguous tensor of the layout's dtype and block shape";

// Block i as staged to the host (the LocalTensor's own data when already there in its dtype),
// checked; a staging failure (a GPU copy) names the tensor.
const torch::Tensor& staged_block(const std::vector<LocalTensor>& tensors, HostStaging& staged, std::size_t i) {
  const auto& t = tensors[i];
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

// The same check before staging, where the data's dtype may still be converted.
void check_block_shape(const LocalTensor& t) {
  if (!t.data.defined() || !t.data.is_contiguous() || t.data.sizes().vec() != t.layout.block.sizes)
    throw CheckpointError(t.layout.name, kNotTheBlock);
}

// Whether parallel mode writes through MPI-IO: asked for (or, for kAuto, some writer block is
// strided) and every block fits MPI's int counts. Decided from the gathered layouts, so every
// rank takes the same path.
bool use_mpiio(SaveIo io, const std::vector<LocalTensor>& tensors, const std::vector<std::vector<RankBlock>>& layouts) {
  if (io == SaveIo::kPosix) return false;
  bool strided = false;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    for (const auto& rb : layouts[i]) {
      if (!rb.writer || rb.block.empty()) continue;
      const auto& coords = tensors[i].layout.coords();
      const auto element = dtype_size(tensors[i].layout.dtype);
      if (!fits_mpiio(coords, rb.block, element)) return false;
      if (!strided) {
        int runs = 0;
        for_each_run(coords, element, rb.block, [&](std::uint64_t, std::uint64_t, std::uint64_t) { ++runs; });
        strided = runs > 1;
      }
    }
  return io == SaveIo::kMpiio || strided;
}

// This rank's blocks of each file (in staging order) cut into rounds of at most `round_bytes`
// of host copies (at least one block each), so a collective write holds about that much host
// memory; blocks written from where they are (CPU tensors in their dtype) cost nothing.
std::vector<std::vector<std::vector<std::size_t>>> rounds_by_file(const std::vector<LocalTensor>& tensors,
                                                                  const HostStaging& staged, const SavePlan& plan,
                                                                  std::uint64_t round_bytes) {
  std::vector<std::vector<std::vector<std::size_t>>> rounds(plan.files.size());
  std::vector<std::uint64_t> filled(plan.files.size(), 0);
  for (const auto i : written_blocks(tensors)) {
    const auto f = plan.tensors[i].file;
    const auto bytes = staged.staged_bytes(i);
    if (rounds[f].empty() || filled[f] + bytes > round_bytes) {
      rounds[f].emplace_back();
      filled[f] = 0;
    }
    rounds[f].back().push_back(i);
    filled[f] += bytes;
  }
  return rounds;
}

// Parallel mode's writes through MPI-IO: each file in collective rounds of about
// `round_bytes` per rank, staged just before their write and freed after (the staging order is
// file by file); every rank makes as many rounds as the rank that needs most. The blocks'
// shapes were agreed before: a rank that threw midway would leave the others inside MPI-IO
// calls it never makes.
void write_parallel_mpiio(comm::Communicator& comm, MPI_Comm handle, const std::string& dir,
                          const std::vector<LocalTensor>& tensors, HostStaging& staged, const SavePlan& plan,
                          std::uint64_t round_bytes) {
  // MPI_File_open failing on some ranks only would leave the others in the collective calls
  // that follow: every rank first opens every file itself, agreed.
  comm::run_agreed(comm, [&] {
    for (std::size_t f = 0; f < plan.files.size(); ++f) OpenFiles(dir, plan).fd(f);  // one open file at a time
  });
  const auto mine = rounds_by_file(tensors, staged, plan, std::max<std::uint64_t>(round_bytes, 1));
  auto counts = torch::zeros({static_cast<std::int64_t>(plan.files.size())}, torch::kInt64);
  for (std::size_t f = 0; f < mine.size(); ++f) counts[static_cast<std::int64_t>(f)] = static_cast<std::int64_t>(mine[f].size());
  comm.allreduce(counts, comm::ReduceOp::kMax);
  comm::run_agreed(comm, [&] {
    std::exception_ptr first_error;  // every file's collective calls are made regardless
    for (std::size_t f = 0; f < plan.files.size(); ++f) {
      const auto& rounds = mine[f];
      auto blocks_of = [&](int round) {
        std::vector<FileBlock> blocks;
        if (first_error || static_cast<std::size_t>(round) >= rounds.size()) return blocks;
        for (const auto i : rounds[static_cast<std::size_t>(round)]) {
          const auto& t = tensors[i];
          const auto& data = staged_block(tensors, staged, i);
          blocks.push_back({plan.tensors[i].offset, t.layout.coords(), t.layout.block, dtype_size(t.layout.dtype),
                            data.data_ptr()});
        }
        return blocks;
      };
      auto written = [&](int round) {
        if (static_cast<std::size_t>(round) < rounds.size())
          for (const auto i : rounds[static_cast<std::size_t>(round)]) staged.release(i);
      };
      try {
        write_rounds_collectively(handle, temp_name(dir, plan.files[f].name),
                                  static_cast<int>(counts[static_cast<std::int64_t>(f)].item<std::int64_t>()), blocks_of,
                                  written);
      } catch (...) {  // any error: the other files' collective calls are still made
        if (!first_error) first_error = std::current_exception();
      }
      if (f == 0) crash_point("save.writing", comm.rank());  // one file written, maybe not all
    }
    if (first_error) std::rethrow_exception(first_error);
  });
}

// Parallel mode's writes with each rank's pwrite of its runs.
void write_parallel_posix(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                          HostStaging& staged, const SavePlan& plan) {
  comm::run_agreed(comm, [&] {
    OpenFiles files(dir, plan);
    bool wrote = false;
    for (const auto i : written_blocks(tensors)) {
      const auto& t = tensors[i];
      const auto& data = staged_block(tensors, staged, i);
      const auto& planned = plan.tensors[i];
      const auto* bytes = static_cast<const std::uint8_t*>(data.data_ptr());
      write_packed_range(files.fd(planned.file), temp_name(dir, plan.files[planned.file].name), planned,
                         t.layout.coords(), t.layout.block, bytes, 0, 0, data.nbytes());
      staged.release(i);
      if (!wrote) crash_point("save.writing", comm.rank());  // some bytes written, most not
      wrote = true;
    }
    files.sync_all();
  });
}

// The MPI communicator parallel mode writes through with MPI-IO, or null for pwrite: asked for
// (or, for kAuto, some writer block is strided), decided from the gathered layouts so every
// rank takes the same path. On a GPU the world is NCCL's; the blocks are host copies by then
// and go through the MPI communicator it wraps.
const comm::MpiCommunicator* mpiio_communicator(comm::Communicator& comm, const DistributedSaveOptions& options,
                                                const std::vector<LocalTensor>& tensors,
                                                const std::vector<std::vector<RankBlock>>& layouts) {
  if (options.mode != SaveMode::kParallel) return nullptr;
  const auto* mpi = dynamic_cast<const comm::MpiCommunicator*>(&comm.cpu_communicator());
  return mpi && use_mpiio(options.io, tensors, layouts) ? mpi : nullptr;
}

void save_parallel(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                   HostStaging& staged, const SavePlan& plan, const comm::MpiCommunicator* mpiio,
                   std::uint64_t round_bytes) {
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) create_planned_files(dir, plan);
  });
  crash_point("save.files_created", comm.rank());
  if (mpiio)
    write_parallel_mpiio(comm, mpiio->handle(), dir, tensors, staged, plan, round_bytes);
  else
    write_parallel_posix(comm, dir, tensors, staged, plan);
  crash_point("save.before_rename", comm.rank());
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) commit_planned_files(dir, plan);
  });
}

void save_gather(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                 HostStaging& staged, const SavePlan& plan, const std::vector<std::vector<RankBlock>>& layouts,
                 std::uint64_t window) {
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) create_planned_files(dir, plan);
  });
  // Rank 0's files and two receive windows, agreed before any window is sent: once the sends
  // begin, rank 0 must receive them all.
  std::unique_ptr<OpenFiles> files;
  torch::Tensor buffers[2];
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    files = std::make_unique<OpenFiles>(dir, plan);
    for (auto& b : buffers) b = torch::empty({static_cast<std::int64_t>(window)}, torch::kUInt8);
  });
  constexpr int kTag = 4242;
  // Every rank walks the same plan in the same order: tensor by tensor, writer block by
  // writer block, window by window. Rank 0 receives each window and writes it at its place,
  // double-buffered: window k+1 arrives while a helper thread writes window k. Its memory
  // beyond its own tensors is two windows, whatever the model's size.
  comm::run_agreed(comm, [&] {
    // A failure (a block that did not stage, a write that failed) stops this rank's writes but
    // not its part in the plan: every send is still received and every window still sent (an
    // empty message, which a receive of any length accepts; nothing of it is committed), so no
    // rank waits for one that left; it is raised at the end.
    std::exception_ptr error;
    auto attempt = [&](const std::function<void()>& step) {
      if (error) return;
      try {
        step();
      } catch (...) {
        error = std::current_exception();
      }
    };
    auto block_or_error = [&](std::size_t i) {
      const torch::Tensor* data = nullptr;
      attempt([&] { data = &staged_block(tensors, staged, i); });
      return data;
    };
    std::future<void> writing;  // the write of the other buffer, in flight
    auto finish_writing = [&] {
      if (writing.valid()) attempt([&] { writing.get(); });  // the other buffer is free again
    };
    int next = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& planned = plan.tensors[i];
      const auto element = dtype_size(planned.spec.dtype);
      for (const auto& rb : layouts[i]) {
        if (!rb.writer || rb.block.empty()) continue;
        const std::uint64_t bytes = static_cast<std::uint64_t>(rb.block.numel()) * element;
        const auto path = temp_name(dir, plan.files[planned.file].name);
        if (rb.rank == 0 && comm.rank() == 0) {
          if (const auto* data = block_or_error(i))
            attempt([&] {
              write_packed_range(files->fd(planned.file), path, planned, tensors[i].layout.coords(), rb.block,
                                 static_cast<const std::uint8_t*>(data->data_ptr()), 0, 0, bytes);
            });
          staged.release(i);
          continue;
        }
        if (comm.rank() != 0 && comm.rank() != rb.rank) continue;
        const torch::Tensor* data = comm.rank() == rb.rank ? block_or_error(i) : nullptr;
        for (std::uint64_t begin = 0; begin < bytes; begin += window) {
          const auto length = std::min(window, bytes - begin);
          if (comm.rank() == rb.rank) {
            comm.send(data ? torch::from_blob(static_cast<std::uint8_t*>(data->data_ptr()) + begin,
                                              {static_cast<std::int64_t>(length)}, torch::kUInt8)
                           : torch::empty({0}, torch::kUInt8),
                      0, kTag);
          } else {
            auto chunk = buffers[next].narrow(0, 0, static_cast<std::int64_t>(length));
            comm.recv(chunk, rb.rank, kTag);
            finish_writing();
            if (error) continue;  // received and dropped
            writing = std::async(std::launch::async, [&files, &planned, &tensors, i, path, block = rb.block, chunk,
                                                      begin, length] {
              write_packed_range(files->fd(planned.file), path, planned, tensors[i].layout.coords(), block,
                                 chunk.data_ptr<std::uint8_t>(), begin, begin, begin + length);
            });
            next ^= 1;
          }
        }
        if (comm.rank() == rb.rank) staged.release(i);
      }
    }
    finish_writing();
    if (error) std::rethrow_exception(error);
    if (files) files->sync_all();
  });
  files.reset();  // closed before the renames
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) commit_planned_files(dir, plan);
  });
}

std::string shard_file(int rank) {
  char name[64];
  std::snprintf(name, sizeof name, "shard-%05d.safetensors", rank);
  return name;
}

// The specs of this rank's blocks `mine` in its shard file.
std::vector<TensorSpec> block_specs(const std::vector<LocalTensor>& tensors, const std::vector<std::size_t>& mine) {
  std::vector<TensorSpec> specs;
  for (const auto i : mine) specs.push_back({tensors[i].layout.name, tensors[i].layout.dtype, tensors[i].layout.block.sizes});
  return specs;
}

// The order the writes ask for the blocks (HostStaging stages them in it): index order, except
// file by file for MPI-IO (`plan` given) and the shard file's order for a sharded save.
std::vector<std::size_t> staging_order(const std::vector<LocalTensor>& tensors, SaveMode mode, const SavePlan* plan) {
  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (mode == SaveMode::kSharded) {
    const auto mine = written_blocks(tensors);
    std::vector<std::size_t> file_order;
    try {
      file_order = safetensors_file_order(block_specs(tensors, mine));
    } catch (const std::exception&) {
      return order;  // the shard's writer raises the same error, inside its agreed step
    }
    std::vector<std::size_t> sharded;
    for (const auto k : file_order) sharded.push_back(mine[k]);
    std::vector<bool> listed(tensors.size(), false);
    for (const auto i : sharded) listed[i] = true;
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (!listed[i]) sharded.push_back(i);  // not written: nothing to stage
    return sharded;
  }
  if (plan)
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return plan->tensors[a].file < plan->tensors[b].file; });
  return order;
}

void save_sharded(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                  HostStaging& staged, const std::vector<std::vector<RankBlock>>& layouts) {
  comm::run_agreed(comm, [&] { fs::create_directories(dir); });
  comm::run_agreed(comm, [&] {
    // Streamed in the file's order, which is the staging order: each block is staged just
    // before its bytes are written and freed after.
    const auto mine = written_blocks(tensors);
    write_safetensors_streamed(
        (fs::path(dir) / shard_file(comm.rank())).string(), block_specs(tensors, mine),
        [&](std::size_t k) { return staged_block(tensors, staged, mine[k]).data_ptr(); },
        [&](std::size_t k) { staged.release(mine[k]); });
  });
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    json index = {{"format", "mpitrain-sharded"}, {"version", 1}, {"tensors", json::array()}};
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& l = tensors[i].layout;
      json blocks = json::array();
      for (const auto& rb : layouts[i])
        if (rb.writer && !rb.block.empty())
          blocks.push_back({{"file", shard_file(rb.rank)}, {"offsets", rb.block.offsets}, {"sizes", rb.block.sizes}});
      json entry = {{"name", l.name}, {"dtype", std::string(dtype_name(l.dtype))}, {"shape", l.shape}, {"blocks", blocks}};
      if (!l.view.empty() && l.view != l.shape) entry["view"] = l.view;  // the blocks' coordinates
      index["tensors"].push_back(std::move(entry));
      total += spec_nbytes({l.name, l.dtype, l.shape});
    }
    index["total_size"] = total;
    // The index is written last: a sharded save without it is incomplete.
    write_file_atomically((fs::path(dir) / kShardedIndexFile).string(), index.dump(1) + "\n");
    fsync_directory(dir);
  });
}

}  // namespace

SaveStats save_distributed(comm::Communicator& comm, const std::string& dir, const std::vector<LocalTensor>& tensors,
                           const DistributedSaveOptions& options) {
  const auto layouts = gather_layouts(comm, tensors);
  // Agreed before any mode's writes, sends or collective file calls begin.
  comm::run_agreed(comm, [&] {
    for (const auto i : written_blocks(tensors)) check_block_shape(tensors[i]);
  });
  // Before any bytes: on node-local storage each node would hold its own part of the files.
  if (options.mode != SaveMode::kGather && options.check_shared_directory)
    require_shared_directory(comm, dir, std::string(options.mode == SaveMode::kSharded ? "sharded" : "parallel") +
                                            " saves write there from every rank (save_mode gather writes from rank 0 only)");
  // The blocks this rank writes, copied off a GPU (and converted to the saved dtype) block by
  // block while the writes of earlier ones go on, in the order the writes ask for them.
  std::vector<BlockToStage> written;
  for (const auto& t : tensors)
    written.push_back({writes(t) ? t.data : torch::Tensor(),
                       to_scalar_type(t.layout.dtype, t.layout.name)});
  if (options.mode == SaveMode::kSharded) {
    HostStaging staged(std::move(written), staging_order(tensors, options.mode, nullptr), options.staging);
    save_sharded(comm, dir, tensors, staged, layouts);
    return {staged.peak_held_bytes()};
  }
  const auto plan = plan_hf_save(specs_of(tensors), options.max_shard_size);
  const auto* mpiio = mpiio_communicator(comm, options, tensors, layouts);
  HostStaging staged(std::move(written), staging_order(tensors, options.mode, mpiio ? &plan : nullptr),
                     options.staging);
  try {
    if (options.mode == SaveMode::kParallel)
      // Rounds of half the bound: the next round is staged while this one is written.
      save_parallel(comm, dir, tensors, staged, plan, mpiio, options.staging.ahead_bytes / 2);
    else
      save_gather(comm, dir, tensors, staged, plan, layouts, std::max<std::uint64_t>(options.gather_window_bytes, 1));
  } catch (...) {
    if (comm.rank() == 0) remove_temporaries(dir, plan);  // nothing half-written stays behind
    throw;
  }
  return {staged.peak_held_bytes()};
}

// ---- reading and consolidating ----

struct SavedBlock {
  std::string file;
  Block block;
};
struct ShardedTensor {
  TensorSpec spec;
  std::vector<std::int64_t> view;  // the blocks' coordinates (the shape unless the saver viewed it)
  std::vector<SavedBlock> blocks;
};

namespace {

std::vector<ShardedTensor> read_sharded_index(const std::string& dir) {
  const auto path = (fs::path(dir) / kShardedIndexFile).string();
  if (!fs::exists(path)) throw CheckpointError(dir, "is not a sharded checkpoint (no " + std::string(kShardedIndexFile) + ")");
  json index;
  try {
    index = json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    throw CheckpointError(path, std::string("invalid JSON (") + e.what() + ")");
  }
  if (index.value("format", std::string()) != "mpitrain-sharded" || !index.contains("tensors"))
    throw CheckpointError(path, "not an mpitrain sharded index");
  std::vector<ShardedTensor> out;
  try {
    for (const auto& t : index["tensors"]) {
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
        SavedBlock sb{b.at("file").get<std::string>(), {b.at("offsets").get<std::vector<std::int64_t>>(), b.at("sizes").get<std::vector<std::int64_t>>()}};
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
      out.push_back(std::move(st));
    }
  } catch (const json::exception& e) {
    throw CheckpointError(path, std::string("malformed index (") + e.what() + ")");
  }
  return out;
}

}  // namespace

struct CheckpointReader::Impl {
  std::string dir;
  std::vector<ShardedTensor> sharded;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;  // sharded: by file name
  std::unique_ptr<HfWeights> weights;                              // consolidated

  const SafetensorsFile& file(const std::string& name) {
    auto& slot = files[name];
    if (!slot) {
      const auto path = fs::path(dir) / name;
      if (!fs::exists(path)) throw CheckpointError(path.string(), "shard named by the sharded index does not exist");
      slot = std::make_unique<SafetensorsFile>(path.string());
    }
    return *slot;
  }
  const ShardedTensor* find(const std::string& name) const {
    for (const auto& t : sharded)
      if (t.spec.name == name) return &t;
    return nullptr;
  }
};

CheckpointReader::CheckpointReader(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  sharded_ = fs::exists(fs::path(dir) / kShardedIndexFile);
  if (sharded_)
    impl_->sharded = read_sharded_index(dir);
  else
    impl_->weights = std::make_unique<HfWeights>(HfWeights::open(dir));
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::dir() const { return impl_->dir; }

bool CheckpointReader::contains(const std::string& name) const {
  return sharded_ ? impl_->find(name) != nullptr : impl_->weights->contains(name);
}

std::vector<std::string> CheckpointReader::names() const {
  if (!sharded_) return impl_->weights->names();
  std::vector<std::string> names;
  for (const auto& t : impl_->sharded) names.push_back(t.spec.name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::int64_t> CheckpointReader::shape(const std::string& name) const {
  if (!sharded_) return impl_->weights->entry(name).shape;
  const auto* t = impl_->find(name);
  if (!t) throw CheckpointError(impl_->dir, "no tensor named '" + name + "'");
  return t->spec.shape;
}

torch::Tensor CheckpointReader::read(const std::string& name, const Block& block,
                                     const std::vector<std::int64_t>& view) const {
  if (!sharded_) {
    const auto& file = impl_->weights->file_of(name);
    auto entry = file.entry(name);
    if (!view.empty()) entry.shape = view;  // the same bytes in the caller's coordinates
    return read_tensor_slice(file, entry, block.offsets, block.sizes);
  }
  const auto* t = impl_->find(name);
  if (!t) throw CheckpointError(impl_->dir, "no tensor named '" + name + "'");
  const auto& coords = view.empty() ? t->spec.shape : view;
  if (coords != t->view) {
    // Saved in other coordinates (a fused tensor viewed differently): assemble the whole
    // tensor, then take the block. Costs one tensor of memory; only fused tensors get here.
    auto whole = read(name, Block::whole(t->view), t->view).view(coords);
    auto out = whole;
    for (std::size_t d = 0; d < coords.size(); ++d)
      out = out.narrow(static_cast<std::int64_t>(d), block.offsets[d], block.sizes[d]);
    return out.contiguous();
  }
  auto out = torch::empty(block.sizes, torch::TensorOptions().dtype(to_scalar_type(t->spec.dtype, name)));
  for (const auto& saved : t->blocks) {
    const auto overlap = saved.block.intersect(block);
    if (overlap.empty()) continue;
    const auto& file = impl_->file(saved.file);
    const auto& entry = file.entry(name);
    if (entry.shape != saved.block.sizes || entry.dtype != t->spec.dtype)
      throw CheckpointError(file.path(), "tensor '" + name + "' does not match the sharded index");
    std::vector<std::int64_t> in_saved, in_target;
    for (std::size_t d = 0; d < overlap.offsets.size(); ++d) {
      in_saved.push_back(overlap.offsets[d] - saved.block.offsets[d]);
      in_target.push_back(overlap.offsets[d] - block.offsets[d]);
    }
    auto piece = read_tensor_slice(file, entry, in_saved, overlap.sizes);
    auto target = out;
    for (std::size_t d = 0; d < overlap.offsets.size(); ++d)
      target = target.narrow(static_cast<std::int64_t>(d), in_target[d], overlap.sizes[d]);
    target.copy_(piece);
  }
  return out;
}

namespace {

void copy_model_files(const std::string& source_dir, const std::string& output_dir) {
  // The model's other files (config, generation config, tokenizer, training args) come
  // along; training state (optimizer, RNG, scheduler, trainer state, marker) does not: the
  // output is a model directory, not a checkpoint.
  for (const auto& item : fs::directory_iterator(source_dir)) {
    const auto name = item.path().filename().string();
    const bool state = item.path().extension() == ".safetensors" || name == kShardedIndexFile ||
                       name == "trainer_state.json" || name == "scheduler.json" || name == kCompleteMarker;
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
    if (!reader->sharded()) throw CheckpointError(source_dir, "is not a sharded checkpoint (no sharded_index.json)");
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
  try {
    comm::run_agreed(comm, [&] {
      if (comm.rank() == 0) create_planned_files(output_dir, plan);
    });
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
    comm::run_agreed(comm, [&] {
      if (comm.rank() == 0) commit_planned_files(output_dir, plan);
    });
  } catch (...) {
    if (comm.rank() == 0) remove_temporaries(output_dir, plan);
    throw;
  }
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) copy_model_files(source_dir, output_dir);
  });
}

}  // namespace mpitrain::checkpoint
