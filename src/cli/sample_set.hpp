#pragma once
// A FID sample set on disk (`varps sample`): the job's parameters, its
// shards, and the final archive. Image i of a job (class-major order) has
// class classes[i / per_class] and seed seed + i, so every image is a
// function of the job alone, and shards can be made in any order, by any
// process, and again after a crash.
//
//   DIR/job.json             the parameters, written before the first shard
//   DIR/shards/NNNNNN.rgb    shard k: its images, uint8 [n, H, W, 3]
//   DIR/png/NNNNNN.png       with --png: image i as `generate` writes it
//   DIR/samples.npz          arr_0 uint8 [N, H, W, 3], arr_1 int64 [N] labels
//   DIR/manifest.json        the parameters, counts, timings
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "varps/pipeline.hpp"

namespace varps::cli {

struct SampleSetJob {
  nlohmann::ordered_json identity;  // every parameter the images depend on
  std::vector<int> classes;
  int64_t per_class = 0;
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t shard_size = 0;
  int64_t height = 0, width = 0;

  int64_t images() const { return static_cast<int64_t>(classes.size()) * per_class; }
  int64_t shards() const { return (images() + shard_size - 1) / shard_size; }
  int64_t shard_begin(int64_t k) const { return k * shard_size; }
  int64_t shard_end(int64_t k) const { return std::min(images(), (k + 1) * shard_size); }
  ImageRequest request(int64_t i) const;
};

// The job recorded in `dir`, if any, must equal `job`: otherwise a
// varps::Error naming the first parameter that differs and both values.
// Without one, records `job`.
void claim_sample_dir(const std::filesystem::path& dir, const SampleSetJob& job);

std::filesystem::path shard_path(const std::filesystem::path& dir, int64_t k);
// Shard k is complete when its file holds exactly its images.
bool shard_complete(const std::filesystem::path& dir, const SampleSetJob& job, int64_t k);

// Writes samples.npz from the complete shards (atomically) and returns its
// path.
std::filesystem::path merge_sample_set(const std::filesystem::path& dir, const SampleSetJob& job);

}  // namespace varps::cli
