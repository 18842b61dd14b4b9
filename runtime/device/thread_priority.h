// Lowering the calling thread's CPU and I/O priority, for a background writer that must not slow the training beside it.
#pragma once

#include <string>

namespace mpitrain::device {

// This thread only (Linux keeps a nice value and an I/O priority per thread): nice +10 and the
// idle I/O class, where it reads and writes only when no one else does (under the CFQ and BFQ
// schedulers; others ignore I/O classes). Returns "" or why a part could not be done.
std::string lower_this_thread_priority();

}  // namespace mpitrain::device
