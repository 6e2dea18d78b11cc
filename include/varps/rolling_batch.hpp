#pragma once
// Generations in flight together, advancing one scale per step in one
// backbone pass (continuous batching at scale boundaries). Requests that
// join together form a cohort; a cohort that joins while others are
// mid-way starts at the next step, its first scale's rows in the same pass
// as the others' later scales, each cohort with its own KV cache. An
// image's tokens and pixels are those Pipeline::generate gives it alone:
// they depend only on its own class, seed and sampling parameters.
#include <cstdint>
#include <memory>
#include <vector>

#include "varps/pipeline.hpp"

namespace varps {

class RollingBatch {
 public:
  // At most `max_images` images in flight, every cohort's together, each
  // cohort generated with the fast modes `fast`. The pipeline must outlive
  // the batch, and keep its adapter and refiner while it runs.
  RollingBatch(const Pipeline& pipe, int max_images, const FastModes& fast = {});
  ~RollingBatch();
  RollingBatch(const RollingBatch&) = delete;
  RollingBatch& operator=(const RollingBatch&) = delete;

  // Starts `requests` as one cohort at the next step and returns its id.
  // Throws varps::Error for a bad request (as generate() does) or when they
  // would put more than max_images images in flight.
  uint64_t join(const std::vector<ImageRequest>& requests);

  struct Finished {
    uint64_t cohort = 0;
    GeneratedImages images;  // generate()'s result for the cohort's requests
    int64_t most_images = 0;  // the most images any of its passes held
  };
  // One backbone pass over the next scale of every cohort, then each
  // cohort's sampling; the cohorts past their last scale are decoded and
  // returned. Does nothing without cohorts. When it throws, the cohorts'
  // states are unknown: clear() them.
  std::vector<Finished> step();
  // Stops a cohort between steps: its rows leave the next pass, its state
  // is freed, and nothing is returned for it. Throws varps::Error for a
  // cohort that is not in flight.
  void leave(uint64_t cohort);
  void clear();

  int64_t images_in_flight() const;
  int64_t free_images() const;  // max_images − images_in_flight
  int cohorts() const;
  bool empty() const { return cohorts() == 0; }
  int64_t backbone_passes() const;  // steps that ran a pass, since construction

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace varps
