// Writes a file so that its final name only ever holds complete contents: temp name, fsync, rename.
#include "runtime/checkpoint/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/save_timing.h"

namespace mpitrain::checkpoint {
namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_path_(std::move(final_path)) {
  // The pid keeps concurrent writers (ranks sharing a file system) from sharing a temp name.
  temp_path_ = final_path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw CheckpointError(final_path_, "cannot create temporary file: " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, std::size_t size) {
  count_bytes_written(size);
  const char* cursor = static_cast<const char*>(data);
  while (size > 0) {
    // Linux caps one write at ~2 GiB; larger tensors go in several calls.
    const std::size_t chunk = std::min<std::size_t>(size, std::size_t{1} << 30);
    ssize_t written = ::write(fd_, cursor, chunk);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw CheckpointError(final_path_, "write failed: " + errno_text());
    }
    cursor += written;
    size -= static_cast<std::size_t>(written);
  }
}

void AtomicFile::commit() {
  const StageTimer fsync_time(SaveStage::kFsync);
  if (::fsync(fd_) != 0) throw CheckpointError(final_path_, "fsync failed: " + errno_text());
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw CheckpointError(final_path_, "close failed: " + errno_text());
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
    throw CheckpointError(final_path_, "rename from temporary file failed: " + errno_text());
  committed_ = true;
  fsync_directory(std::filesystem::path(final_path_).parent_path().string());
}

void write_file_atomically(const std::string& path, std::string_view contents) {
  AtomicFile file(path);
  file.write(contents);
  file.commit();
}

void fsync_directory(const std::string& dir) {
  const StageTimer fsync_time(SaveStage::kFsync);
  const std::string target = dir.empty() ? "." : dir;
  int fd = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(target, "cannot open directory to fsync: " + errno_text());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw CheckpointError(target, "directory fsync failed: " + errno_text());
}

}  // namespace mpitrain::checkpoint
