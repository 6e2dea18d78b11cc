#include "model/stream_adapter.hpp"

namespace varps {

StreamAdapter::StreamAdapter(Backend& be, const ParScaleAdapter& a, const VarConfig& model) {
  a.check_fits(model);
  streams = a.streams;
  prefix_tokens = a.prefix_tokens;
  smooth = a.smooth;
  origin = a.origin;
  bytes = a.bytes();
  for (int b = 0; b < a.depth(); ++b) {
    prefix_k.push_back(be.upload(a.prefix_k[b]));
    prefix_v.push_back(be.upload(a.prefix_v[b]));
  }
  aggregate0_w = be.upload(a.aggregate0_w);
  aggregate0_b = be.upload(a.aggregate0_b);
  aggregate2_w = be.upload(a.aggregate2_w);
  aggregate2_b = be.upload(a.aggregate2_b);
}

}  // namespace varps
