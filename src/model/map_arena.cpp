#include "model/map_arena.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "varps/error.hpp"

namespace varps {

namespace {
size_t aligned(size_t n) { return (n + MapArena::kAlign - 1) / MapArena::kAlign * MapArena::kAlign; }
std::string map_text(int64_t n, int64_t c, int64_t h, int64_t w) {
  return "a [" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) +
         "] map";
}
}  // namespace

// A live map: where it starts, how much it holds (padded), and how far from
// its end's edge.
struct MapArena::Block {
  uint64_t id;
  size_t offset, floats, skip;
  End end;
};

struct MapArena::Ledger {
  std::vector<Block> live;
  uint64_t next_id = 0;
  size_t high_water = 0;

  const Block* find(size_t offset) const {
    for (const Block& b : live)
      if (b.offset == offset) return &b;
    return nullptr;
  }
  size_t extent(End end) const {
    size_t e = 0;
    for (const Block& b : live)
      if (b.end == end) e = std::max(e, b.skip + b.floats);
    return e;
  }
};

MapArena::MapArena(Backend& be, size_t map_floats, int max_maps, size_t stats_floats)
    : MapArena(be.alloc(buffer_floats(map_floats, max_maps, stats_floats)), map_floats, max_maps, stats_floats) {}

MapArena::MapArena(Array<float> memory, size_t map_floats, int max_maps, size_t stats_floats)
    : buffer_(std::move(memory)),
      capacity_(buffer_floats(map_floats, max_maps, 0)),
      ledger_(std::make_shared<Ledger>()) {
  if (buffer_.size() < capacity_ + stats_floats)
    throw Error("map arena: " + std::to_string(buffer_.size()) + " elements of memory for an arena of " +
                std::to_string(capacity_ + stats_floats));
  stats_ = buffer_.slice(capacity_, stats_floats);
}

size_t MapArena::buffer_floats(size_t map_floats, int max_maps, size_t stats_floats) {
  // Each map's padding is under kAlign elements.
  return aligned(map_floats) + static_cast<size_t>(std::max(max_maps, 0)) * kAlign + stats_floats;
}

size_t MapArena::high_water() const { return ledger_->high_water; }

const MapArena::Block* MapArena::block_of(const FeatureMap& m) const {
  const float* p = m.data.data();
  if (p < buffer_.data() || p >= buffer_.data() + capacity_) return nullptr;
  return ledger_->find(static_cast<size_t>(p - buffer_.data()));
}

FeatureMap MapArena::opposite(const FeatureMap& of, int64_t n, int64_t c, int64_t h, int64_t w) {
  const Block* b = block_of(of);
  return place(b && b->end == End::Low ? End::High : End::Low, 0, n, c, h, w);
}

FeatureMap MapArena::beside(const FeatureMap& of, int64_t n, int64_t c, int64_t h, int64_t w) {
  const Block* b = block_of(of);
  if (!b) throw Error("map arena: a map placed beside one that is not a live map of the arena");
  return place(b->end, b->skip + b->floats, n, c, h, w);
}

FeatureMap MapArena::place(End end, size_t skip, int64_t n, int64_t c, int64_t h, int64_t w) {
  const size_t size = static_cast<size_t>(n * c * h * w), floats = aligned(size);
  if (skip + floats > capacity_)
    throw Error("map arena: " + map_text(n, c, h, w) + " " + std::to_string(skip) +
                " elements from an edge does not fit in " + std::to_string(capacity_));
  const size_t offset = end == End::Low ? skip : capacity_ - skip - floats;
  for (const Block& b : ledger_->live)
    if (offset < b.offset + b.floats && b.offset < offset + floats)
      throw Error("map arena: " + map_text(n, c, h, w) + " would overlap a live one (" +
                  std::to_string(ledger_->extent(End::Low)) + " + " + std::to_string(ledger_->extent(End::High)) +
                  " of " + std::to_string(capacity_) + " elements in use)");
  const uint64_t id = ledger_->next_id++;
  ledger_->live.push_back({id, offset, floats, skip, end});
  ledger_->high_water = std::max(ledger_->high_water, ledger_->extent(End::Low) + ledger_->extent(End::High));
  // The handle keeps the buffer alive and leaves the ledger when released.
  std::shared_ptr<Ledger> ledger = ledger_;
  Array<float> buffer = buffer_;
  std::shared_ptr<float> p(buffer_.data() + offset, [ledger, buffer, id](float*) {
    std::erase_if(ledger->live, [id](const Block& b) { return b.id == id; });
  });
  return FeatureMap{Array<float>(std::move(p), size), n, c, h, w};
}

Array<float> MapArena::norm_stats(int64_t n, int groups) {
  const size_t need = static_cast<size_t>(n * groups * 2);
  if (need > stats_.size())
    throw Error("map arena: statistics of " + std::to_string(n) + " images need " + std::to_string(need) +
                " elements, it holds " + std::to_string(stats_.size()));
  return stats_.slice(0, need);
}

}  // namespace varps
