// A job whose last rank never joins an allreduce: the collective timeout must end it with the rank named.
#include <chrono>
#include <thread>

#include "runtime/comm/collective_timeout.h"
#include "runtime/comm/launch.h"
#include "runtime/comm/mpi_communicator.h"

int main(int argc, char** argv) {
  using namespace mpitrain::comm;
  MpiSession mpi(&argc, &argv);
  auto world = MpiCommunicator::world();
  set_collective_timeout_seconds(2);
  auto t = torch::ones({16});
  world->allreduce(t);  // everyone arrives at #0
  if (world->rank() == world->size() - 1) {
    // Stuck in computation, not in MPI; killed by the others' MPI_Abort.
    std::this_thread::sleep_for(std::chrono::seconds(600));
    return 0;
  }
  world->allreduce(t);  // #1: the last rank never comes
  return 0;
}
