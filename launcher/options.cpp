// Boost.Program_options glue shared by the subcommands: parse, --help, and errors that name the option.
#include "launcher/options.h"

#include <iostream>

namespace mpitrain::launcher {

bool parse_options(const std::string& command, const std::string& synopsis, const Args& args,
                   po::options_description& options, const po::positional_options_description& positional,
                   po::variables_map& values) {
  options.add_options()("help,h", "show this help");
  try {
    // No guessing: an abbreviated option is an error, not whichever option it happens to prefix.
    po::store(po::command_line_parser(args)
                  .options(options)
                  .positional(positional)
                  .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                  .run(),
              values);
    if (values.count("help")) {
      std::cout << "usage: mpitrain " << command << " " << synopsis << "\n" << options;
      return false;
    }
    po::notify(values);
  } catch (const po::error& e) {
    throw UsageError(command + ": " + e.what());
  }
  return true;
}

}  // namespace mpitrain::launcher
