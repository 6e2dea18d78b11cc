#include "model/stream_adapter.hpp"

namespace varps {

StreamAdapter::StreamAdapter(Backend& be, const ParScaleAdapter& a, const VarConfig& model) {
  a.check_fits(model);
  streams = a.streams;
  prefix_tokens = a.prefix_tokens;
  smooth = a.smooth;
  origin = a.origin;
  // What the backend holds: the aggregation matrices at its matrix-product
  // precision, every array with the backend's padding.
  const auto floats = [&](const Tensor& t) { return be.array_bytes(t.data.size(), sizeof(float)); };
  bytes = be.matrix_bytes(a.aggregate0_w.shape) + be.matrix_bytes(a.aggregate2_w.shape) + floats(a.aggregate0_b) +
          floats(a.aggregate2_b);
  for (int b = 0; b < a.depth(); ++b) bytes += floats(a.prefix_k[b]) + floats(a.prefix_v[b]);
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
