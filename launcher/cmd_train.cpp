// `mpitrain train CONFIG.json [--key=value ...]`: the distributed training job, launched by mpirun or srun.
#include <mpi.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "launcher/commands.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/collective_timeout.h"
#include "runtime/comm/launch.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/device/device.h"
#include "src/train/config_agreement.h"
#include "src/train/run_config.h"
#include "src/train/stop_signal.h"
#include "src/train/trainer.h"

namespace mpitrain::launcher {

namespace {

// MPITRAIN_READY_FILE (set by slurm/mpitrain-job.sh): created once every rank has its stop
// signal handlers (installed at process start), so the job script may forward a warning.
void signal_ready_when_every_rank_is(comm::Communicator& world) {
  const char* ready = std::getenv("MPITRAIN_READY_FILE");
  if (!ready) return;
  world.barrier();
  if (world.rank() == 0) std::ofstream(ready) << "ready\n";
}

}  // namespace

int run_train(const Args& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (args.empty()) throw UsageError("train: expected CONFIG.json");
    std::cout << "usage: mpitrain train CONFIG.json [--key=value ...]\nkeys (plain or section.key):\n";
    for (const auto& k : train::config_keys())
      std::cout << "  " << k.dotted() << " (default " << k.default_value.dump() << ")"
                << (k.help.empty() ? "" : ": " + k.help) << "\n";
    return 0;
  }
  // A warning signal may come while the job is still starting (a requeued Slurm job can be
  // warned at once): record it from the first instant; the config then sets the final list.
  train::install_stop_signals("USR1,TERM");
  comm::MpiSession mpi(nullptr, nullptr);
  int rank = 0;
  try {
    const auto launch = comm::detect_launch();
    rank = launch.rank;
    auto world = comm::MpiCommunicator::world();
    nlohmann::json config;
    comm::run_agreed(*world, [&] { config = train::load_run_config(args[0], Args(args.begin() + 1, args.end())); });
    train::require_same_config_on_every_rank(*world, config);
    comm::set_collective_timeout_seconds(config["parallel"]["collective_timeout_s"].get<double>());
    signal_ready_when_every_rank_is(*world);
    comm::configure_torch_threads(launch, config["parallel"]["torch_threads"].get<int>());
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
    trainer.train();
    trainer.save_model(config["training"]["output_dir"].get<std::string>());
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
