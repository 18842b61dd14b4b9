// What kind of filesystem a directory is on (node-local memory or not) and how much room it has: the local tier's start checks.
#include "runtime/checkpoint/memory_directory.h"

#include <sys/statfs.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;

namespace {

std::string kind_of(unsigned long magic) {
  switch (magic) {
    case 0x01021994: return "tmpfs";
    case 0x858458f6: return "ramfs";
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x6969: return "nfs";
    case 0x794c7630: return "overlayfs";
    case 0x65735546: return "fuse";
    case 0x0BD00BD0: return "lustre";
    case 0x47504653: return "gpfs";
    default: break;
  }
  char text[32];
  std::snprintf(text, sizeof text, "filesystem 0x%lx", magic);
  return text;
}

}  // namespace

DirectoryRoom directory_room(const std::string& dir) {
  struct statfs kind {};
  struct statvfs room {};
  if (::statfs(dir.c_str(), &kind) != 0 || ::statvfs(dir.c_str(), &room) != 0)
    throw CheckpointError(dir, std::string("cannot read its filesystem: ") + std::strerror(errno));
  DirectoryRoom result;
  const auto magic = static_cast<unsigned long>(kind.f_type);
  result.in_memory = magic == 0x01021994 || magic == 0x858458f6;
  result.kind = kind_of(magic);
  result.free_bytes = static_cast<std::uint64_t>(room.f_bavail) * room.f_frsize;
  return result;
}

std::uint64_t bytes_under(const std::string& dir) {
  std::uint64_t total = 0;
  std::error_code ignored;
  for (auto it = fs::recursive_directory_iterator(dir, ignored); it != fs::recursive_directory_iterator();
       it.increment(ignored))
    if (it->is_regular_file(ignored)) total += it->file_size(ignored);
  return total;
}

}  // namespace mpitrain::checkpoint
