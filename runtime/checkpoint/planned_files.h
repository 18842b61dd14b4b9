// The consolidated files of a save, written under temporary names and committed once whole: created by rank 0, written by the ranks, fsynced, renamed (or removed on failure).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/save_plan.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

// Where file `file` of a save into `dir` is written before its commit.
std::string temp_name(const std::string& dir, const std::string& file);

// Collective over `comm`: rank 0 creates every planned file under its temporary name (header
// written, full length), agreed; `write` runs on every rank (it agrees its own steps); rank 0
// then fsyncs each file, renames it to its final name and writes the index (stale files of an
// earlier save removed), agreed. Where anything fails, rank 0 removes the temporary files
// (nothing half-written stays behind) and the error is raised on every rank.
void write_planned_files(comm::Communicator& comm, const std::string& dir, const SavePlan& plan,
                         const std::function<void()>& write);

// The planned files opened for writing, one descriptor each, opened on first use.
class OpenFiles {
 public:
  OpenFiles(const std::string& dir, const SavePlan& plan);
  ~OpenFiles();
  OpenFiles(const OpenFiles&) = delete;
  OpenFiles& operator=(const OpenFiles&) = delete;
  int fd(std::size_t file);
  void sync_all();  // fsyncs every file opened

 private:
  std::string dir_;
  const SavePlan& plan_;
  std::vector<int> fds_;
};

// Writes the packed bytes [begin, end) of a block held in `packed` (which starts at packed
// byte `packed_base`) to the runs of the file they belong to.
void write_packed_range(int fd, const std::string& path, const PlannedTensor& planned,
                        const std::vector<std::int64_t>& coords, const Block& block, const std::uint8_t* packed,
                        std::uint64_t packed_base, std::uint64_t begin, std::uint64_t end);

}  // namespace mpitrain::checkpoint
