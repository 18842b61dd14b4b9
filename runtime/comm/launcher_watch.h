// A rank started by mpirun stops within a fraction of a second when its launcher dies (SIGKILL to mpirun), instead of training on and committing checkpoints nobody waits for.
#pragma once

namespace mpitrain::comm {

// Under mpirun (OMPI_COMM_WORLD_RANK set, the parent mpirun or orted), a thread checks every
// `interval_s` whether this process's parent (mpirun or its orted) is still its parent; once
// it has been reparented, it writes one line to stderr and ends the process with status 137
// (as a SIGKILL would). Open MPI notices the lost daemon too, but only after about 1.5 s.
// Elsewhere (srun, a plain process whose shell may go away under nohup) it does nothing.
// Idempotent.
void stop_when_launcher_dies(double interval_s = 0.1);

}  // namespace mpitrain::comm
