// The decoder's map arena: maps placed from its two ends at fixed offsets,
// refused when they would not fit or would overlap a live map.
#include <gtest/gtest.h>

#include "backend.hpp"
#include "model/map_arena.hpp"
#include "test_files.hpp"

namespace varps {
namespace {

struct Arena {
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  // 1000 elements of maps, at most 2 maps: capacity 1024 + 2·64.
  MapArena arena{*be, 1000, 2, 8};
  const float* base() { return arena.opposite(FeatureMap{}, 1, 1, 1, 1).data.data(); }
};

size_t at(const FeatureMap& m, const float* base) { return static_cast<size_t>(m.data.data() - base); }

TEST(MapArena, PlacesMapsFromBothEnds) {
  Arena t;
  ASSERT_EQ(t.arena.capacity(), 1024u + 2 * MapArena::kAlign);
  EXPECT_EQ(MapArena::buffer_floats(1000, 2, 8), t.arena.capacity() + 8);
  const float* base = t.base();
  const FeatureMap outside;                                      // not in the arena: the low end
  const FeatureMap a = t.arena.opposite(outside, 1, 2, 10, 10);  // 200 → 256 elements
  EXPECT_EQ(at(a, base), 0u);
  const FeatureMap b = t.arena.opposite(a, 1, 1, 10, 10);  // 100 → 128, at the high end
  EXPECT_EQ(at(b, base), t.arena.capacity() - 128);
  const FeatureMap c = t.arena.beside(a, 1, 3, 1, 1);
  EXPECT_EQ(at(c, base), 256u);
  const FeatureMap d = t.arena.beside(b, 1, 1, 1, 64);  // 64: one granule below b
  EXPECT_EQ(at(d, base), t.arena.capacity() - 128 - 64);
  // b is at the high end, so its opposite is the low end's edge, where a lies.
  EXPECT_CONTAINS(test::error_of([&] { t.arena.opposite(b, 1, 1, 1, 5); }), "overlap a live one");
  EXPECT_EQ(t.arena.high_water(), 256u + 64 + 128 + 64);
}

TEST(MapArena, RefusesOverlapsAndOverflow) {
  Arena t;
  const FeatureMap a = t.arena.opposite(FeatureMap{}, 1, 1, 1, 600);  // 640 at the low end
  EXPECT_CONTAINS(test::error_of([&] { t.arena.opposite(FeatureMap{}, 1, 1, 1, 5); }), "overlap a live one");
  EXPECT_CONTAINS(test::error_of([&] { t.arena.opposite(a, 1, 1, 1, 600); }), "overlap a live one");
  EXPECT_CONTAINS(test::error_of([&] { t.arena.opposite(a, 1, 1, 1, 2000); }), "does not fit in 1152");
  EXPECT_CONTAINS(test::error_of([&] { t.arena.beside(FeatureMap{}, 1, 1, 1, 1); }), "not a live map of the arena");
  const FeatureMap b = t.arena.opposite(a, 1, 1, 1, 512);  // fits exactly: 640 + 512 = 1152
  EXPECT_EQ(t.arena.high_water(), 1152u);
  EXPECT_CONTAINS(test::error_of([&] { t.arena.norm_stats(5, 1); }), "statistics of 5 images");
  EXPECT_EQ(t.arena.norm_stats(2, 2).size(), 8u);
}

TEST(MapArena, AReleasedMapFreesItsPlace) {
  Arena t;
  const float* first = nullptr;
  {
    const FeatureMap a = t.arena.opposite(FeatureMap{}, 1, 1, 1, 600);
    first = a.data.data();
    FeatureMap copy = a;  // a handle's copies hold the place too
    const FeatureMap moved = std::move(copy);
    (void)moved;
  }
  const FeatureMap again = t.arena.opposite(FeatureMap{}, 1, 1, 1, 1100);  // the whole arena
  EXPECT_EQ(again.data.data(), first) << "the same sequence of maps lands on the same offsets";
  EXPECT_EQ(t.arena.high_water(), 1152u);
}

// An arena may lie in memory that another use leaves idle (the decoder's in
// the KV cache): its maps are placed there, and memory that is too small is
// refused.
TEST(MapArena, LiesInGivenMemory) {
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  const Array<float> idle = be->alloc(MapArena::buffer_floats(1000, 2, 8) + 3);
  MapArena arena(idle, 1000, 2, 8);
  EXPECT_EQ(arena.opposite(FeatureMap{}, 1, 1, 1, 10).data.data(), idle.data());
  EXPECT_EQ(arena.norm_stats(4, 1).data(), idle.data() + arena.capacity());
  const Array<float> small = be->alloc(MapArena::buffer_floats(1000, 2, 8) - 1);
  EXPECT_CONTAINS(test::error_of([&] { MapArena(small, 1000, 2, 8); }), "elements of memory for an arena of 1160");
}

}  // namespace
}  // namespace varps
