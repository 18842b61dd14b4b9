// Deleting a file or a directory tree without std::filesystem::remove_all, which crashes in a process that loads pip's LibTorch.
#pragma once

#include <cstdint>
#include <filesystem>

namespace mpitrain::checkpoint {

// Deletes `path` and everything below it; a link goes, not what it points to. Returns how many
// entries went (0 when `path` does not exist); throws std::filesystem::filesystem_error naming
// the entry it could not delete.
//
// Why not std::filesystem::remove_all: pip's LibTorch (seen with 2.11+cu130) carries and exports
// its own copy of std::filesystem from the older GCC it was built with; the dynamic linker binds
// our calls to it, and its remove_all jumps to a null function pointer (SIGSEGV, seen on an H200
// machine). The other std::filesystem calls we make worked there; this one is done with nftw.
std::uintmax_t remove_tree(const std::filesystem::path& path);

}  // namespace mpitrain::checkpoint
