#include "model/stream_adapter.hpp"

namespace varps {

StreamAdapter::StreamAdapter(Backend& be, const ParScaleAdapter& a, const VarConfig& model) {
  a.check_fits(model);
  streams = a.streams;
  prefix_tokens = a.prefix_tokens;
  smooth = a.smooth;
  origin = a.origin;
  // What the backend holds: the aggregation matrices at its matrix-product precision.
  const uint64_t matrices = a.aggregate0_w.data.size() + a.aggregate2_w.data.size();
  bytes = a.bytes() - matrices * sizeof(float) + be.matrix_bytes(a.aggregate0_w.shape) +
          be.matrix_bytes(a.aggregate2_w.shape);
  parameters = a.bytes() / sizeof(float);
  for (int b = 0; b < a.depth(); ++b) {
    prefix_k.push_back(be.upload(a.prefix_k[b]));
    prefix_v.push_back(be.upload(a.prefix_v[b]));
  }
  aggregate0_w = be.upload_matrix(a.aggregate0_w);
  aggregate0_b = be.upload(a.aggregate0_b);
  aggregate2_w = be.upload_matrix(a.aggregate2_w);
  aggregate2_b = be.upload(a.aggregate2_b);
}

}  // namespace varps
