// Collective error agreement: a step that may fail on some ranks fails on all of them, with the first failure's message.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include "runtime/comm/communicator.h"

namespace mpitrain::comm {

// Thrown on every rank when any rank's step failed; the message is that of the lowest failing rank.
struct AgreedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `step` on every rank, then agrees (two small collectives) on whether it failed
// anywhere. Every rank must call this at the same point. Without this, one rank's error
// leaves the others waiting in their next collective.
void run_agreed(Communicator& comm, const std::function<void()>& step);

}  // namespace mpitrain::comm
