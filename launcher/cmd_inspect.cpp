// `mpitrain inspect PATH`: every tensor (name, dtype, shape, bytes), totals, and every format problem.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>

#include "launcher/options.h"
#include "runtime/checkpoint/checkpoint_schema.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/inspect.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"

namespace mpitrain::launcher {
namespace {

namespace fs = std::filesystem;

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// A sharded training checkpoint holds exactly the model's tensors, by their HF names.
void check_sharded_against_model(const models::HfModel& model, const std::string& dir, checkpoint::InspectReport& report) {
  std::map<std::string, std::vector<std::int64_t>> saved;
  for (const auto& t : report.tensors) saved[t.entry.name] = t.entry.shape;
  const std::string where = (fs::path(dir) / checkpoint::kShardedIndexFile).string() + ": ";
  for (const auto& [name, placement] : model.placements()) {
    const auto it = saved.find(name);
    if (it == saved.end())
      report.problems.push_back(where + "tensor '" + name + "' that " + model.architecture() + " needs is missing");
    else if (it->second != placement.shape)
      report.problems.push_back(where + "tensor '" + name + "' has shape " + shape_text(it->second) +
                                " but config.json implies " + shape_text(placement.shape));
    saved.erase(name);
  }
  for (const auto& [name, shape] : saved)
    if (!model.is_ignorable_checkpoint_tensor(name))
      report.problems.push_back(where + "tensor '" + name + "' is not used by " + model.architecture());
}

// A directory with a config.json is also checked as a model: the config must describe a
// supported architecture and every tensor must fit it.
void check_against_config(const std::string& dir, checkpoint::InspectReport& report) {
  const auto config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path)) {
    report.problems.push_back(dir + ": no config.json (transformers cannot load the directory without it)");
    return;
  }
  try {
    auto model = models::create_model(checkpoint::read_json_file(config_path), config_path);
    if (!fs::exists(fs::path(dir) / checkpoint::kSingleWeightsFile) && !fs::exists(fs::path(dir) / checkpoint::kWeightsIndexFile) &&
        fs::exists(fs::path(dir) / checkpoint::kShardedIndexFile)) {
      check_sharded_against_model(*model, dir, report);
      return;
    }
    const auto weights = checkpoint::HfWeights::open(dir);
    std::vector<std::string> unused;
    for (auto& problem : models::check_weights(*model, weights, &unused)) report.problems.push_back(problem);
    for (auto& name : unused)
      report.problems.push_back(dir + ": tensor '" + name + "' is not used by " + model->architecture());
  } catch (const std::exception& e) {
    const std::string text = e.what();
    // Weight-file problems are already listed per file; do not report them twice.
    for (const auto& known : report.problems)
      if (known.rfind(text, 0) == 0) return;  // the same problem, perhaps with a hint added
    report.problems.push_back(text);
  }
}

}  // namespace

int run_inspect(const Args& args) {
  po::options_description options("inspect options");
  std::string path;
  options.add_options()("path", po::value(&path)->required(), "a .safetensors file or an HF model directory");
  po::positional_options_description positional;
  positional.add("path", 1);
  po::variables_map values;
  if (!parse_options("inspect", "PATH", args, options, positional, values)) return 0;

  auto report = checkpoint::inspect_checkpoint(path);
  if (fs::is_directory(path)) check_against_config(path, report);

  std::size_t width = 4;
  for (const auto& t : report.tensors) width = std::max(width, t.entry.name.size());
  std::cout << std::left << std::setw(static_cast<int>(width)) << "name" << "  " << std::setw(8) << "dtype"
            << std::setw(20) << "shape" << std::right << std::setw(14) << "bytes" << "  file\n";
  for (const auto& t : report.tensors)
    std::cout << std::left << std::setw(static_cast<int>(width)) << t.entry.name << "  " << std::setw(8)
              << checkpoint::dtype_name(t.entry.dtype) << std::setw(20) << shape_text(t.entry.shape) << std::right
              << std::setw(14) << t.entry.nbytes() << "  " << t.file << "\n";
  std::cout << "total: " << report.tensors.size() << " tensors, " << report.total_elements << " elements, "
            << report.total_bytes << " bytes in " << report.files.size() << " file(s)\n";
  if (report.problems.empty()) {
    std::cout << "no problems found\n";
    return 0;
  }
  std::cout << report.problems.size() << " problem(s):\n";
  for (const auto& p : report.problems) std::cout << "  problem: " << p << "\n";
  std::cerr << "mpitrain: error: " << path << ": " << report.problems.size() << " format problem(s), first: "
            << report.problems.front() << "\n";
  return 1;
}

}  // namespace mpitrain::launcher
