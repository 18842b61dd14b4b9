// save_mode parallel: every writer rank writes its blocks straight into the consolidated files, through MPI-IO subarray views or its own pwrites.
#include "runtime/checkpoint/parallel_writer.h"

#include "runtime/checkpoint/crash_point.h"
#include "runtime/checkpoint/mpiio_writer.h"
#include "runtime/checkpoint/planned_files.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/mpi_communicator.h"

namespace mpitrain::checkpoint {

namespace {

bool use_mpiio(SaveIo io, const SaveBlocks& blocks) {
  if (io == SaveIo::kPosix) return false;
  bool strided = false;
  const auto& tensors = blocks.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i)
    for (const auto& rb : blocks.of(i)) {
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
std::vector<std::vector<std::vector<std::size_t>>> rounds_by_file(const SaveBlocks& blocks, const HostStaging& staged,
                                                                  const SavePlan& plan, std::uint64_t round_bytes) {
  std::vector<std::vector<std::vector<std::size_t>>> rounds(plan.files.size());
  std::vector<std::uint64_t> filled(plan.files.size(), 0);
  for (const auto i : blocks.written()) {
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
void write_parallel_mpiio(comm::Communicator& comm, MPI_Comm handle, const std::string& dir, const SaveBlocks& blocks,
                          HostStaging& staged, const SavePlan& plan, std::uint64_t round_bytes) {
  // MPI_File_open failing on some ranks only would leave the others in the collective calls
  // that follow: every rank first opens every file itself, agreed.
  comm::run_agreed(comm, [&] {
    for (std::size_t f = 0; f < plan.files.size(); ++f) OpenFiles(dir, plan).fd(f);  // one open file at a time
  });
  const auto mine = rounds_by_file(blocks, staged, plan, std::max<std::uint64_t>(round_bytes, 1));
  auto counts = torch::zeros({static_cast<std::int64_t>(plan.files.size())}, torch::kInt64);
  for (std::size_t f = 0; f < mine.size(); ++f) counts[static_cast<std::int64_t>(f)] = static_cast<std::int64_t>(mine[f].size());
  comm.allreduce(counts, comm::ReduceOp::kMax);
  const auto& tensors = blocks.tensors();
  comm::run_agreed(comm, [&] {
    std::exception_ptr first_error;  // every file's collective calls are made regardless
    for (std::size_t f = 0; f < plan.files.size(); ++f) {
      const auto& rounds = mine[f];
      auto blocks_of = [&](int round) {
        std::vector<FileBlock> out;
        if (first_error || static_cast<std::size_t>(round) >= rounds.size()) return out;
        for (const auto i : rounds[static_cast<std::size_t>(round)]) {
          const auto& t = tensors[i];
          const auto& data = staged_block(blocks, staged, i);
          out.push_back({plan.tensors[i].offset, t.layout.coords(), t.layout.block, dtype_size(t.layout.dtype),
                         data.data_ptr()});
        }
        return out;
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
void write_parallel_posix(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks,
                          HostStaging& staged, const SavePlan& plan) {
  comm::run_agreed(comm, [&] {
    OpenFiles files(dir, plan);
    bool wrote = false;
    for (const auto i : blocks.written()) {
      const auto& t = blocks.tensors()[i];
      const auto& data = staged_block(blocks, staged, i);
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

}  // namespace

const comm::MpiCommunicator* mpiio_communicator(comm::Communicator& comm, const DistributedSaveOptions& options,
                                                const SaveBlocks& blocks) {
  if (options.mode != SaveMode::kParallel) return nullptr;
  const auto* mpi = dynamic_cast<const comm::MpiCommunicator*>(&comm.cpu_communicator());
  return mpi && use_mpiio(options.io, blocks) ? mpi : nullptr;
}

void save_parallel(comm::Communicator& comm, const std::string& dir, const SaveBlocks& blocks, HostStaging& staged,
                   const SavePlan& plan, const comm::MpiCommunicator* mpiio, std::uint64_t round_bytes) {
  write_planned_files(comm, dir, plan, [&] {
    crash_point("save.files_created", comm.rank());
    if (mpiio)
      write_parallel_mpiio(comm, mpiio->handle(), dir, blocks, staged, plan, round_bytes);
    else
      write_parallel_posix(comm, dir, blocks, staged, plan);
    crash_point("save.before_rename", comm.rank());
  });
}

}  // namespace mpitrain::checkpoint
