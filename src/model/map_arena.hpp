#pragma once
// One buffer for every map of a decoder pass, allocated once with the
// request's other arrays. Maps are placed from its two ends: a layer's new
// map goes to the end opposite its input, or beside a map on the same end
// (MapStore). The decoder's layers are written so that the two ends never
// meet within Vqvae::decoder_map_bytes_per_image per image, and the arena
// checks it: a map that would overlap a live one, or not fit, is an Error.
// The same layer sequence gives the same offsets on every pass, so a
// recorded pass replays on the same addresses.
#include <memory>

#include "model/feature_map.hpp"

namespace varps {

class MapArena final : public MapStore {
 public:
  // Room for up to `max_maps` live maps of `map_floats` elements in all,
  // each padded to start on 256 bytes, and `stats_floats` of norm statistics.
  MapArena(Backend& be, size_t map_floats, int max_maps, size_t stats_floats);
  // The same in `memory`, which holds at least buffer_floats() elements and
  // which nothing else uses while the arena's maps live.
  MapArena(Array<float> memory, size_t map_floats, int max_maps, size_t stats_floats);
  // Elements the buffer of such an arena holds.
  static size_t buffer_floats(size_t map_floats, int max_maps, size_t stats_floats);

  // Placed at the other end from `of` (at the low end when `of` is not in
  // this arena), next to that end's edge.
  FeatureMap opposite(const FeatureMap& of, int64_t n, int64_t c, int64_t h, int64_t w) override;
  // Placed on `of`'s end, next to it on the side away from the edge; `of`
  // must be in this arena.
  FeatureMap beside(const FeatureMap& of, int64_t n, int64_t c, int64_t h, int64_t w) override;
  Array<float> norm_stats(int64_t n, int groups) override;

  size_t capacity() const { return capacity_; }  // elements for maps
  // The most elements the two ends' live maps have spanned together.
  size_t high_water() const;
  static constexpr size_t kAlign = 64;  // elements: 256 bytes

 private:
  enum class End { Low, High };
  struct Block;
  struct Ledger;
  const Block* block_of(const FeatureMap& m) const;  // nullptr: not a live map of this arena
  FeatureMap place(End end, size_t skip, int64_t n, int64_t c, int64_t h, int64_t w);

  Array<float> buffer_;
  size_t capacity_ = 0;
  Array<float> stats_;
  std::shared_ptr<Ledger> ledger_;  // shared with the maps' handles, which leave it when released
};

}  // namespace varps
