// This process's resident memory as Linux reports it (/proc/self/status): now, and the peak since start or the last reset.
#include "runtime/device/process_memory.h"

#include <fstream>
#include <string>

namespace mpitrain::device {

namespace {

// A /proc/self/status field ("VmRSS:  1234 kB") in bytes.
std::uint64_t status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  return 0;
}

}  // namespace

std::uint64_t resident_bytes() { return status_bytes("VmRSS"); }
std::uint64_t peak_resident_bytes() { return status_bytes("VmHWM"); }
void reset_peak_resident() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace mpitrain::device
