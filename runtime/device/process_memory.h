// This process's resident memory as Linux reports it (/proc/self/status): now, and the peak since start or the last reset.
#pragma once

#include <cstdint>

namespace mpitrain::device {

std::uint64_t resident_bytes();       // VmRSS (0 where /proc is not there)
std::uint64_t peak_resident_bytes();  // VmHWM: the most resident at once
// Sets the peak back to what is resident now (Linux: "5" written to /proc/self/clear_refs).
void reset_peak_resident();

}  // namespace mpitrain::device
