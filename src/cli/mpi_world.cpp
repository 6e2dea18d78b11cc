#include "cli/mpi_world.hpp"

#include <cstdlib>

#ifdef VARPS_HAVE_MPI
// The C API only: Open MPI and MPICH would pull in their C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace varps::cli {

bool started_by_mpi_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

#ifdef VARPS_HAVE_MPI

bool mpi_compiled() { return true; }

MpiWorld::MpiWorld() {
  if (!started_by_mpi_launcher()) return;
  MPI_Init(nullptr, nullptr);
  joined_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_free(&node);
}

MpiWorld::~MpiWorld() {
  if (joined_) MPI_Finalize();
}

int MpiWorld::first_failed_rank(bool ok) const {
  if (!joined_) return ok ? -1 : 0;
  const int mine = ok ? size_ : rank_;
  int lowest = size_;
  MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return lowest == size_ ? -1 : lowest;
}

long long MpiWorld::sum(long long v) const {
  if (!joined_) return v;
  long long total = 0;
  MPI_Allreduce(&v, &total, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

#else

bool mpi_compiled() { return false; }
long long MpiWorld::sum(long long v) const { return v; }
MpiWorld::MpiWorld() = default;
MpiWorld::~MpiWorld() = default;
int MpiWorld::first_failed_rank(bool ok) const { return ok ? -1 : 0; }

#endif

}  // namespace varps::cli
