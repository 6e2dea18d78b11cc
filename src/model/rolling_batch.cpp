// Continuous batching at scale boundaries: every step is one
// VarTransformer::forward_scales over the next scale of every cohort, then
// each cohort's own sampling and residual steps on its own state.
#include "varps/rolling_batch.hpp"

#include <algorithm>
#include <deque>

#include "model/generation.hpp"
#include "varps/error.hpp"

namespace varps {

struct RollingBatch::Impl {
  struct Cohort {
    uint64_t id;
    std::unique_ptr<Generation> generation;
    int64_t most_images = 0;
  };
  const Pipeline::Impl& pipe;
  int64_t max_images;
  GenerateOptions opts;  // every cohort's: decoded images, nothing inspected
  std::vector<Cohort> cohorts;
  // States of finished cohorts, for later cohorts of their shape; at most
  // one per scale (the most cohorts that can be in flight), newest last.
  std::deque<std::unique_ptr<GenerationState>> spare;
  BlockWork work;  // every cohort's token rows of one pass
  uint64_t next_id = 1;
  int64_t passes = 0;

  int64_t in_flight() const {
    int64_t n = 0;
    for (const Cohort& c : cohorts) n += c.generation->images();
    return n;
  }

  std::unique_ptr<GenerationState> take_spare(const GenerationShape& shape) {
    for (auto it = spare.begin(); it != spare.end(); ++it)
      if ((*it)->shape == shape) {
        std::unique_ptr<GenerationState> s = std::move(*it);
        spare.erase(it);
        return s;
      }
    return nullptr;
  }

  void keep_spare(std::unique_ptr<GenerationState> s) {
    if (!s) return;
    spare.push_back(std::move(s));
    while (spare.size() > static_cast<size_t>(pipe.var->config().num_scales())) spare.pop_front();
  }

  // Room for the token rows of max_images guided images at the largest
  // scale: a bound on any step's, as cohorts are at different scales and
  // never hold more than max_images images together.
  void fit_work(int64_t tokens) {
    if (tokens <= work.tokens) return;
    const VarConfig& cfg = pipe.var->config();
    const int64_t streams = pipe.adapter ? pipe.adapter->streams : 1;
    work = {};  // before the larger one is taken
    work = pipe.var->new_block_work(std::max(tokens, max_images * 2 * streams * cfg.max_scale_tokens()));
  }
};

RollingBatch::RollingBatch(const Pipeline& pipe, int max_images, const FastModes& fast) {
  if (!pipe.impl_->var) throw Error("this pipeline has no VAR transformer");
  if (max_images < 1) throw Error("a rolling batch needs room for at least 1 image, got " + std::to_string(max_images));
  check_fast_modes(fast, pipe.var_config(), pipe.has_refiner());
  impl_ = std::make_unique<Impl>(Impl{*pipe.impl_, max_images, {}, {}, {}, {}, 1, 0});
  impl_->opts.fast = fast;
}

RollingBatch::~RollingBatch() = default;

uint64_t RollingBatch::join(const std::vector<ImageRequest>& requests) {
  Impl& m = *impl_;
  check_requests(requests);
  const int64_t n = static_cast<int64_t>(requests.size());
  if (n > m.max_images - m.in_flight())
    throw Error(std::to_string(n) + " images do not fit: " + std::to_string(m.in_flight()) + " of " +
                std::to_string(m.max_images) + " are in flight");
  auto g = std::make_unique<Generation>(m.pipe, requests, m.opts, nullptr,
                                        [&](const GenerationShape& shape) { return m.take_spare(shape); });
  m.cohorts.push_back({m.next_id, std::move(g), 0});
  return m.next_id++;
}

std::vector<RollingBatch::Finished> RollingBatch::step() {
  Impl& m = *impl_;
  std::vector<Finished> done;
  if (m.cohorts.empty()) return done;
  std::vector<VarTransformer::ScalePass> passes;
  int64_t tokens = 0;
  for (const Impl::Cohort& c : m.cohorts)
    if (const auto p = c.generation->begin_pass()) {
      passes.push_back(*p);
      tokens += m.pipe.var->pass_tokens(*p);
    }
  if (!passes.empty()) {
    m.fit_work(tokens);
    m.pipe.var->forward_scales(passes, m.work);
  }
  ++m.passes;
  const int64_t images = m.in_flight();
  for (Impl::Cohort& c : m.cohorts) {
    c.most_images = std::max(c.most_images, images);
    c.generation->end_pass();
    c.generation->sample();
  }
  // Finished cohorts leave in the order they joined.
  for (auto it = m.cohorts.begin(); it != m.cohorts.end();) {
    if (!it->generation->sampled_all()) {
      ++it;
      continue;
    }
    done.push_back({it->id, it->generation->finish(), it->most_images});
    m.keep_spare(it->generation->release_state());
    it = m.cohorts.erase(it);
  }
  return done;
}

void RollingBatch::leave(uint64_t cohort) {
  std::vector<Impl::Cohort>& cs = impl_->cohorts;
  const auto it = std::find_if(cs.begin(), cs.end(), [&](const Impl::Cohort& c) { return c.id == cohort; });
  if (it == cs.end()) throw Error("cohort " + std::to_string(cohort) + " is not in flight");
  cs.erase(it);
}

void RollingBatch::clear() { impl_->cohorts.clear(); }

int64_t RollingBatch::images_in_flight() const { return impl_->in_flight(); }
int64_t RollingBatch::free_images() const { return impl_->max_images - impl_->in_flight(); }
int RollingBatch::cohorts() const { return static_cast<int>(impl_->cohorts.size()); }
int64_t RollingBatch::backbone_passes() const { return impl_->passes; }

}  // namespace varps
