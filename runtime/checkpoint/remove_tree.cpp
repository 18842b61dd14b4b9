// Deleting a file or a directory tree with POSIX nftw (see remove_tree.h for why not std::filesystem::remove_all).
#include "runtime/checkpoint/remove_tree.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

namespace mpitrain::checkpoint {

namespace {

// nftw's callback takes no context: the walk of this thread counts here.
thread_local std::uintmax_t removed_count = 0;
thread_local std::string failed_entry;

int remove_entry(const char* entry, const struct stat*, int, struct FTW*) {
  if (std::remove(entry) != 0) {
    if (errno == ENOENT) return 0;  // gone meanwhile: what was asked for
    failed_entry = entry;
    return errno ? errno : EIO;
  }
  ++removed_count;
  return 0;
}

}  // namespace

std::uintmax_t remove_tree(const std::filesystem::path& given) {
  // "link/" would name the link's target: the link itself is what goes.
  auto text = given.string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  const std::filesystem::path path(text);
  struct stat info;
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return 0;
    throw std::filesystem::filesystem_error("cannot delete", path, std::error_code(errno, std::generic_category()));
  }
  removed_count = 0;
  failed_entry.clear();
  // Children before their directory (FTW_DEPTH), links not followed (FTW_PHYS).
  const int result = ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (result != 0) {
    const int error = result > 0 ? result : errno;
    throw std::filesystem::filesystem_error("cannot delete", failed_entry.empty() ? path : std::filesystem::path(failed_entry),
                                            std::error_code(error, std::generic_category()));
  }
  return removed_count;
}

}  // namespace mpitrain::checkpoint
