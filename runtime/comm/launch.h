// Process placement from MPI (rank, world, local rank/size), cross-checked with the launcher's environment.
#pragma once

#include <string>

namespace mpitrain::comm {

struct LaunchInfo {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;  // among the ranks on this node
  std::string launcher;                // "mpirun", "srun" or "none"
};

// Initialises MPI (MPI_THREAD_MULTIPLE) once per process and finalises it at exit.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// Reads the placement from MPI and checks it against OMPI_COMM_WORLD_* and SLURM_* variables.
// Throws std::runtime_error with launch advice when they disagree, e.g. a job started by
// `srun` without PMIx, where every task is a world of one. The constructor of MpiSession already
// refuses a multi-task srun step without PMI in its environment (before MPI_Init aborts on it).
LaunchInfo detect_launch();

// Torch intra-op threads: the cores this rank is bound to when the launcher bound it, else
// cores of this node / local ranks (at least 1); SLURM_CPUS_PER_TASK or `requested` > 0
// override. One interop thread. Returns the thread count set. Throws std::runtime_error where
// `requested` is more than the cores of this host.
int configure_torch_threads(const LaunchInfo& launch, int requested);

}  // namespace mpitrain::comm
