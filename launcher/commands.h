// The mpitrain subcommands; each parses its own arguments and returns the process exit status.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace mpitrain::launcher {

using Args = std::vector<std::string>;  // the arguments after the subcommand name

int run_inspect(const Args& args);
int run_logits(const Args& args);
int run_convert(const Args& args);
int run_init(const Args& args);
int run_train(const Args& args);
int run_estimate_memory(const Args& args);
int run_prepare_data(const Args& args);
int run_generate(const Args& args);
int run_consolidate(const Args& args);
int run_tokenize(const Args& args);
int run_bench(const Args& args);
int run_bench_io(const Args& args);
int run_bench_allreduce(const Args& args);
int run_bench_save(const Args& args);
int run_bench_tokenize(const Args& args);

// Thrown for a bad command line; main prints it with the usage hint.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mpitrain::launcher
