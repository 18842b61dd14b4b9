// Writes a file so that its final name only ever holds complete contents: temp name, fsync, rename.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mpitrain::checkpoint {

class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t size);  // appends; retries short writes
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit();  // fsync, rename to the final name, fsync the directory

  const std::string& path() const { return final_path_; }

 private:
  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes a whole small file (JSON, index) atomically.
void write_file_atomically(const std::string& path, std::string_view contents);

// fsyncs a directory so that renames and unlinks inside it survive a crash.
void fsync_directory(const std::string& dir);

}  // namespace mpitrain::checkpoint
