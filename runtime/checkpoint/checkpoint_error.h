// The exception every checkpoint reader and writer throws: one line that names the file and the problem.
#pragma once

#include <stdexcept>
#include <string>

namespace mpitrain::checkpoint {

class CheckpointError : public std::runtime_error {
 public:
  // `where` is the file, directory or tensor the problem is about; it leads the message.
  CheckpointError(const std::string& where, const std::string& problem)
      : std::runtime_error(where + ": " + problem) {}
  // A message that already names its file or tensor.
  explicit CheckpointError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace mpitrain::checkpoint
