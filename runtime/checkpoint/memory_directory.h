// What kind of filesystem a directory is on (node-local memory or not) and how much room it has: the local tier's start checks.
#pragma once

#include <cstdint>
#include <string>

namespace mpitrain::checkpoint {

struct DirectoryRoom {
  bool in_memory = false;       // tmpfs or ramfs: node-local memory
  std::string kind;             // "tmpfs", "ext4", "nfs", ... or the magic number in hex
  std::uint64_t free_bytes = 0;  // what an unprivileged writer may still use
};

// The filesystem `dir` is on (it must exist); CheckpointError naming it when it cannot be read.
DirectoryRoom directory_room(const std::string& dir);

// The bytes of the regular files under `dir` (0 when it does not exist).
std::uint64_t bytes_under(const std::string& dir);

}  // namespace mpitrain::checkpoint
