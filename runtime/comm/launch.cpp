// Process placement from MPI (rank, world, local rank/size), cross-checked with the launcher's environment.
#include "runtime/comm/launch.h"

#include <mpi.h>
#include <torch/torch.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace mpitrain::comm {
namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

bool has_env(const char* name) { return std::getenv(name) != nullptr; }

constexpr const char* kNoPmiAdvice =
    "srun did not pass PMI to MPI. Launch with `srun --mpi=pmix ...` (check `srun --mpi=list`), or with `mpirun` "
    "inside the allocation";

// Before MPI_Init: a task of a multi-task srun step with no PMI in its environment would have
// Open MPI abort inside MPI_Init with a page of text per task; say it in one line instead.
void check_srun_passes_pmi() {
  const int slurm_tasks = env_int("SLURM_NTASKS", env_int("SLURM_NPROCS", 0));
  const bool srun_task = has_env("SLURM_STEP_ID") && has_env("SLURM_PROCID") && !has_env("OMPI_COMM_WORLD_SIZE");
  const bool pmi = has_env("PMIX_RANK") || has_env("PMIX_NAMESPACE") || has_env("PMI_RANK") || has_env("PMI_FD");
  if (srun_task && slurm_tasks > 1 && !pmi)
    throw std::runtime_error("started by srun with " + std::to_string(slurm_tasks) + " tasks but " + kNoPmiAdvice);
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  check_srun_passes_pmi();
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

LaunchInfo detect_launch() {
  LaunchInfo info;
  MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info.world_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &info.local_rank);
  MPI_Comm_size(local, &info.local_size);
  MPI_Comm_free(&local);

  const int slurm_tasks = env_int("SLURM_NTASKS", env_int("SLURM_NPROCS", 0));
  const bool under_slurm_step = std::getenv("SLURM_STEP_ID") != nullptr && std::getenv("SLURM_PROCID") != nullptr;
  const bool under_mpirun = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  info.launcher = under_mpirun ? "mpirun" : (under_slurm_step ? "srun" : "none");

  if (!under_mpirun && under_slurm_step && slurm_tasks > 1 && info.world_size == 1)
    throw std::runtime_error("started by srun with " + std::to_string(slurm_tasks) + " tasks but MPI sees a world of 1: " +
                             kNoPmiAdvice);
  if (under_mpirun) {
    const int env_size = env_int("OMPI_COMM_WORLD_SIZE", info.world_size);
    const int env_rank = env_int("OMPI_COMM_WORLD_RANK", info.rank);
    if (env_size != info.world_size || env_rank != info.rank)
      throw std::runtime_error("Open MPI's environment says rank " + std::to_string(env_rank) + " of " +
                               std::to_string(env_size) + " but MPI says " + std::to_string(info.rank) + " of " +
                               std::to_string(info.world_size) + ": mixed MPI installations?");
  }
  if (under_slurm_step && !under_mpirun && slurm_tasks > 1 && slurm_tasks != info.world_size)
    throw std::runtime_error("SLURM_NTASKS is " + std::to_string(slurm_tasks) + " but MPI's world has " +
                             std::to_string(info.world_size) + " ranks");
  return info;
}

int configure_torch_threads(const LaunchInfo& launch, int requested) {
  int threads = requested;
  // More threads than cores only fight over them; a typo (1000000) would start that many per rank.
  const unsigned host_cores = std::max(1u, std::thread::hardware_concurrency());
  if (requested > static_cast<int>(host_cores))
    throw std::runtime_error("parallel.torch_threads " + std::to_string(requested) + " is more than the " +
                             std::to_string(host_cores) + " cores of this host");
  if (threads <= 0) {
    // Slurm's --cpus-per-task, when set, is this rank's share already.
    const int per_task = env_int("SLURM_CPUS_PER_TASK", 0);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // mpirun binds each rank to cores by default (one core per rank at np <= 2): more
    // threads than the cores a rank may run on only fight over them (measured: 2 threads
    // on one bound core ran at 0.5x of one thread).
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    const int bound = sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : cores;
    threads = per_task > 0 ? per_task
                           : (bound < cores ? std::max(1, bound) : std::max(1, cores / std::max(1, launch.local_size)));
  }
  at::set_num_threads(threads);
  // The interop pool can only be sized before its first use; later calls are ignored by design.
  try {
    at::set_num_interop_threads(1);
  } catch (const std::exception&) {
  }
  return threads;
}

}  // namespace mpitrain::comm
