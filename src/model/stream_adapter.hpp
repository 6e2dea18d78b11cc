#pragma once
// A ParScale adapter resident on a backend: the per-stream prefix keys and
// values of every block (stored once per stream, never per row) and the
// aggregation network applied after the head norm.
#include <vector>

#include "backend.hpp"
#include "varps/adapter.hpp"
#include "varps/config.hpp"

namespace varps {

struct StreamAdapter {
  // Throws varps::Error unless `adapter` fits `model`.
  StreamAdapter(Backend& backend, const ParScaleAdapter& adapter, const VarConfig& model);

  int64_t streams = 1;        // P
  int64_t prefix_tokens = 0;  // T
  double smooth = 0.0;        // s
  std::vector<Array<float>> prefix_k, prefix_v;  // per block [P, H, T, hd]
  Array<MatrixElement> aggregate0_w;             // [C, P·C]
  Array<float> aggregate0_b;                     // [C]
  Array<MatrixElement> aggregate2_w;             // [P, C]
  Array<float> aggregate2_b;                     // [P]
  uint64_t bytes = 0;       // held on the backend
  uint64_t parameters = 0;  // elements, whatever their precision
  std::string origin;
};

}  // namespace varps
