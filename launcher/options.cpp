// Boost.Program_options glue shared by the subcommands: parse, --help, and errors that name the option or the path.
#include "launcher/options.h"

#include <filesystem>
#include <iostream>

namespace mpitrain::launcher {

bool parse_options(const std::string& command, const std::string& synopsis, const Args& args,
                   po::options_description& options, const po::positional_options_description& positional,
                   po::variables_map& values, std::vector<std::string>* unregistered) {
  options.add_options()("help,h", "show this help");
  try {
    // No guessing: an abbreviated option is an error, not whichever option it happens to prefix.
    auto parser = po::command_line_parser(args).options(options).positional(positional).style(
        po::command_line_style::default_style & ~po::command_line_style::allow_guessing);
    if (unregistered) parser.allow_unregistered();
    const auto parsed = parser.run();
    po::store(parsed, values);
    if (unregistered) *unregistered = po::collect_unrecognized(parsed.options, po::exclude_positional);
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

void require_output_outside_source(const std::string& command, const std::string& source, const std::string& output) {
  namespace fs = std::filesystem;
  std::error_code error;
  const auto src = fs::weakly_canonical(source, error), out = fs::weakly_canonical(output, error);
  if (error) return;  // the command says what is wrong with a path it cannot resolve
  const auto relative = out.lexically_relative(src);
  if (!relative.empty() && *relative.begin() != "..")
    throw UsageError(command + ": " + output + " is " + (relative == "." ? "" : "inside ") + source +
                     ": it would be written while it is read; give another directory");
}

}  // namespace mpitrain::launcher
