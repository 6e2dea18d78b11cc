#pragma once
// Feature maps of the VQVAE and where a pass takes them from.
#include <cstdint>

#include "backend.hpp"

namespace varps {

// A feature map in backend memory: [N, C, H, W].
struct FeatureMap {
  Array<float> data;
  int64_t n = 0, c = 0, h = 0, w = 0;
  size_t size() const { return static_cast<size_t>(n * c * h * w); }
  View<float> nchw() const { return data.as({n, c, h, w}); }
  View<float> planes() const { return data.as({n * c, h, w}); }  // [N·C, H, W]
  View<float> flat() const { return data.as({n * c * h * w}); }
};

// Where the VQVAE's layers take the maps they write. A layer says which
// maps must be alive together by naming, for each new map, one it must not
// disturb: `opposite(of)` is placed away from `of` and from what lies beside
// it, `beside(of)` next to it. A backend-allocating store ignores the
// placement; an arena (MapArena) turns it into fixed offsets in one buffer,
// so a decoder pass allocates nothing and can be recorded.
class MapStore {
 public:
  virtual ~MapStore() = default;
  virtual FeatureMap opposite(const FeatureMap& of, int64_t n, int64_t c, int64_t h, int64_t w) = 0;
  virtual FeatureMap beside(const FeatureMap& of, int64_t n, int64_t c, int64_t h, int64_t w) = 0;
  // Room for GroupNorm statistics of n images ([n, groups, 2]); every call
  // may return the same memory, each use of it ends before the next call.
  virtual Array<float> norm_stats(int64_t n, int groups) = 0;
};

// Each map a fresh allocation of the backend (the encoder, the tests).
class HeapMaps final : public MapStore {
 public:
  explicit HeapMaps(Backend& be) : be_(be) {}
  FeatureMap opposite(const FeatureMap&, int64_t n, int64_t c, int64_t h, int64_t w) override {
    return take(n, c, h, w);
  }
  FeatureMap beside(const FeatureMap&, int64_t n, int64_t c, int64_t h, int64_t w) override { return take(n, c, h, w); }
  Array<float> norm_stats(int64_t n, int groups) override { return be_.alloc(static_cast<size_t>(n * groups * 2)); }

 private:
  FeatureMap take(int64_t n, int64_t c, int64_t h, int64_t w) {
    return FeatureMap{be_.alloc(static_cast<size_t>(n * c * h * w)), n, c, h, w};
  }
  Backend& be_;
};

}  // namespace varps
