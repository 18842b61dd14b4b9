// The consolidated files of a save, written under temporary names and committed once whole: created by rank 0, written by the ranks, fsynced, renamed (or removed on failure).
#include "runtime/checkpoint/planned_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/save_timing.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

std::string temp_name(const std::string& dir, const std::string& file) {
  return (fs::path(dir) / (file + ".tmp-save")).string();
}

namespace {

void pwrite_all(int fd, const void* data, std::uint64_t length, std::uint64_t offset, const std::string& path) {
  count_bytes_written(length);
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
    const StageTimer fsync_time(SaveStage::kFsync);
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

}  // namespace

void write_planned_files(comm::Communicator& comm, const std::string& dir, const SavePlan& plan,
                         const std::function<void()>& write) {
  try {
    comm::run_agreed(comm, [&] {
      if (comm.rank() == 0) create_planned_files(dir, plan);
    });
    write();
    comm::run_agreed(comm, [&] {
      if (comm.rank() == 0) commit_planned_files(dir, plan);
    });
  } catch (...) {
    if (comm.rank() == 0) remove_temporaries(dir, plan);  // nothing half-written stays behind
    throw;
  }
}

OpenFiles::OpenFiles(const std::string& dir, const SavePlan& plan) : dir_(dir), plan_(plan), fds_(plan.files.size(), -1) {}

OpenFiles::~OpenFiles() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

int OpenFiles::fd(std::size_t file) {
  if (fds_[file] < 0) {
    const auto path = temp_name(dir_, plan_.files[file].name);
    fds_[file] = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fds_[file] < 0) throw CheckpointError(path, std::string("cannot open for writing: ") + std::strerror(errno));
  }
  return fds_[file];
}

void OpenFiles::sync_all() {
  const StageTimer fsync_time(SaveStage::kFsync);
  for (std::size_t f = 0; f < fds_.size(); ++f)
    if (fds_[f] >= 0 && ::fsync(fds_[f]) != 0)
      throw CheckpointError(temp_name(dir_, plan_.files[f].name), std::string("fsync failed: ") + std::strerror(errno));
}

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

}  // namespace mpitrain::checkpoint
