// Boost.Program_options glue shared by the subcommands: parse, --help, and errors that name the option or the path.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "launcher/commands.h"

namespace mpitrain::launcher {

namespace po = boost::program_options;

// Parses `args` against `options` with `positional` names; returns false when --help was
// printed. Throws UsageError naming the bad option, unless `unregistered` is given: options
// not in `options` are then left there (run config keys, for the caller to check).
bool parse_options(const std::string& command, const std::string& synopsis, const Args& args,
                   po::options_description& options, const po::positional_options_description& positional,
                   po::variables_map& values, std::vector<std::string>* unregistered = nullptr);

// Throws UsageError where `output` is `source` or inside it (`mpitrain consolidate SRC SRC`
// wrote into the checkpoint it was reading).
void require_output_outside_source(const std::string& command, const std::string& source, const std::string& output);

}  // namespace mpitrain::launcher
