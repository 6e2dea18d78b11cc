#pragma once
// The processes of one `varps sample` job: under mpirun in a build with MPI,
// every rank of MPI_COMM_WORLD; otherwise this process alone.
#include <string>

namespace varps::cli {

class MpiWorld {
 public:
  // Joins MPI when the process was started by an MPI launcher (Open MPI's
  // or a PMI one) in a build with MPI; otherwise a world of one.
  MpiWorld();
  ~MpiWorld();
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // among the ranks on this node
  bool joined() const { return joined_; }
  // Every rank says whether its part succeeded; returns the lowest failed
  // rank, or -1 when all succeeded. A collective: every rank must call it.
  int first_failed_rank(bool ok) const;
  // The sum over the ranks (a collective).
  long long sum(long long v) const;

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool joined_ = false;
};

// True when this process was started by an MPI launcher.
bool started_by_mpi_launcher();
// Whether this build can join an MPI job.
bool mpi_compiled();

}  // namespace varps::cli
