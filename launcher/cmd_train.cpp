// `mpitrain train CONFIG.json [--key=value ...]`: the distributed training job, launched by mpirun or srun; and its key reference.
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "launcher/commands.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/collective_timeout.h"
#include "runtime/comm/launch.h"
#include "runtime/comm/launcher_watch.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/device/device.h"
#include "src/train/config_agreement.h"
#include "src/train/run_config.h"
#include "src/train/stop_signal.h"
#include "src/train/trainer.h"

namespace mpitrain::launcher {

namespace {

// MPITRAIN_READY_FILE (set by slurm/mpitrain-job.sh): created once every rank saves on its stop
// signals (the model is built and training is about to start), so the job script may forward a
// warning; one forwarded earlier would end the ranks with nothing saved.
void signal_ready_when_every_rank_is(comm::Communicator& world) {
  const char* ready = std::getenv("MPITRAIN_READY_FILE");
  if (!ready) return;
  world.barrier();
  if (world.rank() == 0) std::ofstream(ready) << "ready\n";
}

const char* type_name(train::KeySpec::Type type) {
  using Type = train::KeySpec::Type;
  switch (type) {
    case Type::kInt: return "integer";
    case Type::kFloat: return "number";
    case Type::kBool: return "bool";
    case Type::kString: return "string";
    case Type::kObject: return "object";
    case Type::kPathOrBool: return "path or bool";
    case Type::kNames: return "names";
  }
  return "";
}

// A table cell: a '|' would end the cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

// `mpitrain train --help-markdown`: docs/configuration.md, generated from the key table so it
// cannot go stale (tests/cli/config_reference_test.sh compares the two).
void print_config_reference(std::ostream& out) {
  out << "# Configuration reference\n\n"
         "Every key of a `mpitrain train` run config, with its type, default and meaning.\n\n"
         "This page is generated from the key table (`config_keys()` in `src/train/run_config.cpp`);\n"
         "do not edit it by hand: after changing the table run\n"
         "`build/bin/mpitrain train --help-markdown > docs/configuration.md` (the test\n"
         "`config_reference_doc` fails while the two differ). `mpitrain train --help` prints the same\n"
         "keys as plain text.\n\n"
         "A run config is a JSON object with five sections: `model`, `data`, `training`, `parallel` and `lora`.\n"
         "Every key can be overridden on the command line after the config, by its plain name\n"
         "(`--max_steps=0`) or its dotted path (`--training.max_steps=0`); an unknown key or a bad value\n"
         "stops every rank with one line that names it and suggests the closest key. What the keys do\n"
         "together is told on the topical pages: [training](training.md),\n"
         "[checkpoints](checkpoints.md), [parallelism](parallelism.md),\n"
         "[Slurm and signals](slurm-and-signals.md), [GPUs](gpu.md).\n";
  const std::map<std::string, std::string> intros = {
      {"model", "What is trained: `config` (an HF config.json object: a model trained from scratch, seeded by\n"
                "`init_seed`) or `model_name_or_path` (start from an HF directory; its config.json defines the\n"
                "model)."},
      {"data", "What it is trained on: an HDF5 file made by `mpitrain prepare-data`, or the `source` it is\n"
               "prepared from (see [training.md](training.md#data))."},
      {"training", "Hugging Face `TrainingArguments` names and defaults (a key marked \"as in HF\" does what it\n"
                   "does there), and mpitrain's own device, save and signal keys."},
      {"parallel", "How the ranks share the work: world = dp × tp (see [parallelism.md](parallelism.md))."},
      {"lora", "LoRA fine-tuning with PEFT's names and defaults: set `target_modules` (or `adapter_name_or_path`) and\n"
               "the base is frozen, the adapters trained, and every checkpoint and the final directory is a PEFT\n"
               "adapter (see [training.md](training.md#lora))."},
  };
  std::vector<std::string> sections;  // in the table's order
  for (const auto& k : train::config_keys())
    if (std::find(sections.begin(), sections.end(), k.section) == sections.end()) sections.push_back(k.section);
  for (const auto& section : sections) {
    out << "\n## `" << section << "`\n\n";
    if (intros.count(section)) out << intros.at(section) << "\n\n";
    out << "| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
    for (const auto& k : train::config_keys()) {
      if (k.section != section) continue;
      const std::string meaning = !k.help.empty() ? k.help : section == "training" ? "as in HF `TrainingArguments`" : "";
      out << "| `" << k.name << "` | " << type_name(k.type) << " | `" << cell(k.default_value.dump()) << "` | "
          << cell(meaning) << " |\n";
    }
  }
}

}  // namespace

int run_train(const Args& args) {
  if (!args.empty() && args[0] == "--help-markdown") {
    print_config_reference(std::cout);
    return 0;
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (args.empty()) throw UsageError("train: expected CONFIG.json");
    std::cout << "usage: mpitrain train CONFIG.json [--key=value ...]\n"
                 "       mpitrain train --help-markdown   (this list as docs/configuration.md)\n"
                 "keys (plain or section.key):\n";
    for (const auto& k : train::config_keys())
      std::cout << "  " << k.dotted() << " (default " << k.default_value.dump() << ")"
                << (k.help.empty() ? "" : ": " + k.help) << "\n";
    return 0;
  }
  comm::MpiSession mpi(nullptr, nullptr);
  int rank = 0;
  try {
    const auto launch = comm::detect_launch();
    rank = launch.rank;
    comm::stop_when_launcher_dies();
    auto world = comm::MpiCommunicator::world();
    nlohmann::json config;
    comm::run_agreed(*world, [&] { config = train::load_run_config(args[0], Args(args.begin() + 1, args.end())); });
    train::require_same_config_on_every_rank(*world, config);
    comm::set_collective_timeout_seconds(config["parallel"]["collective_timeout_s"].get<double>());
    comm::run_agreed(*world, [&] { comm::configure_torch_threads(launch, config["parallel"]["torch_threads"].get<int>()); });
    const int tp = config["parallel"]["tensor_parallel_size"].get<int>();
    at::Device device = at::kCPU;
    comm::run_agreed(*world, [&] {
      device = device::select_device(config["training"]["device"].get<std::string>(), launch.local_rank, "training.device");
    });
    // On a GPU, device tensors travel over NCCL and CPU tensors over MPI.
    const auto compute_world = device::world_for(device, world);
    std::shared_ptr<comm::Mesh> mesh;
    comm::run_agreed(*world, [&] { mesh = std::make_shared<comm::Mesh>(compute_world, tp); });
    train::Trainer trainer(config, mesh, device);
    trainer.take_stop_signals();
    signal_ready_when_every_rank_is(*world);
    trainer.train();
    trainer.save_model(config["training"]["output_dir"].get<std::string>());
    trainer.finish();
    return 0;
  } catch (const train::StoppedBySignal& e) {
    // Every rank stopped at the same step after the checkpoint was committed.
    if (rank == 0) std::cerr << "mpitrain: " << e.what() << std::endl;
    return train::kStoppedForRequeueExitStatus;
  } catch (const comm::AgreedError& e) {
    // Every rank has the same message; one line is enough.
    if (rank == 0) std::cerr << "mpitrain: error: " << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    const std::string text = e.what();
    int world_size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    // A world of one (which includes srun without PMI, where every task is its own rank 0)
    // has nobody to stop: one line and a non-zero exit. Otherwise a failure on one rank
    // must end the whole job.
    if (world_size == 1) {
      std::cerr << "mpitrain: error: " << text.substr(0, text.find('\n')) << std::endl;
      return 1;
    }
    comm::abort_job(text.substr(0, text.find('\n')));
  }
}

}  // namespace mpitrain::launcher
