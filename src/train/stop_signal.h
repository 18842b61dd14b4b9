// Save-and-stop on a signal (Slurm's --signal=USR1@T, a scheduler's SIGTERM): the handler only records it; the Trainer acts at a step boundary.
#pragma once

#include <stdexcept>
#include <string>

namespace mpitrain::train {

// The exit status of a run stopped by a signal after saving: EX_TEMPFAIL, "try again", which
// the sbatch templates turn into a requeue that resumes from the saved checkpoint.
inline constexpr int kStoppedForRequeueExitStatus = 75;

// Installs handlers for a comma-separated list of USR1, USR2, TERM, INT (empty: none); the
// others of the four get their default action. Throws std::invalid_argument naming an unknown one.
void install_stop_signals(const std::string& names);
// The signal number received since installation on this process, or 0.
int received_stop_signal();
std::string signal_name(int signal);

// Thrown by the Trainer on every rank once the checkpoint of a signalled stop is committed.
struct StoppedBySignal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mpitrain::train
