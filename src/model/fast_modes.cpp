#include "varps/fast_modes.hpp"

#include <cmath>
#include <sstream>

#include "varps/config.hpp"
#include "varps/error.hpp"

namespace varps {

void check_fast_modes(const FastModes& m, const VarConfig& cfg, bool has_refiner) {
  const int K = cfg.num_scales();
  const std::string scales = "this model has " + std::to_string(K) + " scales";
  if (m.cfg_until_scale < 0 || m.cfg_until_scale > K)
    throw Error("cfg-until-scale " + std::to_string(m.cfg_until_scale) + " is out of range: " + scales +
                " (0 keeps guidance at every scale)");
  if (!(m.prune >= 0.0 && m.prune < 1.0) || !std::isfinite(m.prune))
    throw Error("prune " + std::to_string(m.prune) + " is out of range: the fraction of tokens left out is in [0, 1)");
  if (m.prune > 0.0 && (m.prune_scales < 1 || m.prune_scales > K - 1))
    throw Error("prune-scales " + std::to_string(m.prune_scales) + " is out of range: " + scales +
                ", and the first has no previous scale to restore from (1.." + std::to_string(K - 1) + ")");
  if (m.refine_from_scale != 0 && (m.refine_from_scale < 2 || m.refine_from_scale > K))
    throw Error("refine-from-scale " + std::to_string(m.refine_from_scale) + " is out of range: " + scales +
                ", and the refiner takes over from scale 2.." + std::to_string(K));
  if (m.refine_from_scale != 0 && !has_refiner)
    throw Error("refine-from-scale " + std::to_string(m.refine_from_scale) + " needs a refiner model: none is attached");
}

std::string describe(const FastModes& m) {
  std::ostringstream s;
  const char* sep = "";
  if (m.cfg_until_scale > 0) {
    s << "cfg until scale " << m.cfg_until_scale;
    sep = ", ";
  }
  if (m.prune > 0.0) {
    s << sep << "prune " << m.prune << " at the last " << m.prune_scales << " scales";
    sep = ", ";
  }
  if (m.refine_from_scale > 0) s << sep << "refiner from scale " << m.refine_from_scale;
  const std::string out = s.str();
  return out.empty() ? "exact" : out;
}

}  // namespace varps
