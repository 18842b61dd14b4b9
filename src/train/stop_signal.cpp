// Save-and-stop on a signal (Slurm's --signal=USR1@T, a scheduler's SIGTERM): once training runs, the handler only records it and the Trainer acts at a step boundary.
#include "src/train/stop_signal.h"

#include <csignal>
#include <set>
#include <sstream>
#include <vector>

namespace mpitrain::train {

namespace {

volatile std::sig_atomic_t received = 0;

// Async-signal-safe: one store. Everything else (agreeing, saving) happens in the training loop.
extern "C" void record_signal(int signal) { received = signal; }

int signal_number(const std::string& name) {
  if (name == "USR1") return SIGUSR1;
  if (name == "USR2") return SIGUSR2;
  if (name == "TERM") return SIGTERM;
  if (name == "INT") return SIGINT;
  throw std::invalid_argument("save_on_signals: unknown signal '" + name + "' (USR1, USR2, TERM, INT)");
}

}  // namespace

std::vector<int> parse_stop_signals(const std::string& names) {
  std::set<int> wanted;
  std::stringstream list(names);
  std::string name;
  while (std::getline(list, name, ',')) {
    if (name.empty()) continue;
    wanted.insert(signal_number(name.rfind("SIG", 0) == 0 ? name.substr(3) : name));
  }
  return {wanted.begin(), wanted.end()};
}

void record_stop_signals(const std::vector<int>& signals) {
  const std::set<int> wanted(signals.begin(), signals.end());
  // The signals not listed keep (or get back) their default action.
  for (int signal : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT}) {
    struct sigaction action {};
    action.sa_handler = wanted.count(signal) ? record_signal : SIG_DFL;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // blocking MPI and file calls continue instead of failing
    sigaction(signal, &action, nullptr);
  }
}

int received_stop_signal() { return received; }

std::string signal_name(int signal) {
  switch (signal) {
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "signal " + std::to_string(signal);
  }
}

}  // namespace mpitrain::train
