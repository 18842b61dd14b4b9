// Named points in the save path where a test can have this process killed (SIGKILL), to prove a crash at that moment loses nothing.
#pragma once

#include <string>

namespace mpitrain::checkpoint {

// Kills this process with SIGKILL when MPITRAIN_CRASH_AT is "<name>" (every rank) or
// "<name>@<rank>" (that rank only), the first time the point is reached, or with "#<n>"
// appended ("step.done#7"), the n-th time. Unset, as in production: one cached getenv,
// nothing else.
void crash_point(const std::string& name, int rank);

}  // namespace mpitrain::checkpoint
