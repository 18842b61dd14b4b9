// Save-and-stop on a signal (Slurm's --signal=USR1@T, a scheduler's SIGTERM): once training runs, the handler only records it and the Trainer acts at a step boundary.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace mpitrain::train {

// The exit status of a run stopped by a signal after saving: EX_TEMPFAIL, "try again", which
// the sbatch templates turn into a requeue that resumes from the saved checkpoint.
inline constexpr int kStoppedForRequeueExitStatus = 75;

// The signal numbers of a comma-separated list of USR1, USR2, TERM, INT (with or without
// "SIG"; empty: none). Throws std::invalid_argument naming an unknown one.
std::vector<int> parse_stop_signals(const std::string& names);
// From now on the listed signals are recorded (the Trainer saves and stops at its next step
// boundary); the others of the four get their default action. Before this is called every
// one of them has its default action: a signal while the job starts ends it at once, with
// that signal's status, as there is nothing to save yet.
void record_stop_signals(const std::vector<int>& signals);
// The signal number recorded since record_stop_signals on this process, or 0.
int received_stop_signal();
std::string signal_name(int signal);

// Thrown by the Trainer on every rank once the checkpoint of a signalled stop is committed.
struct StoppedBySignal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mpitrain::train
