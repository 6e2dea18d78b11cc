#include "varps/precision_error.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "varps/error.hpp"

namespace varps::bench {

namespace {

// Every scale's guided logits [B, l, V], as the sampler got them.
struct LogitsByScale {
  std::vector<std::vector<float>> scales;
  int64_t V = 0;
};

GenerateOptions recording(LogitsByScale& out) {
  GenerateOptions o;
  o.on_logits = [&out](int scale, const float* logits, int64_t B, int64_t l, int64_t V) {
    if (static_cast<size_t>(scale) >= out.scales.size()) out.scales.resize(scale + 1);
    out.scales[scale].assign(logits, logits + B * l * V);
    out.V = V;
  };
  return o;
}

// log softmax of one row, in double.
void log_softmax(const float* x, int64_t V, std::vector<double>& out) {
  out.resize(V);
  const double mx = *std::max_element(x, x + V);
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(x[v] - mx);
  const double log_sum = std::log(sum) + mx;
  for (int64_t v = 0; v < V; ++v) out[v] = x[v] - log_sum;
}

// Pixels in [0, 1]; infinite when identical.
double psnr(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size() || ref.empty()) throw Error("measure_precision_error: the runs' images differ in size");
  double sq = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    sq += d * d;
  }
  const double mse = sq / static_cast<double>(ref.size());
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : std::numeric_limits<double>::infinity();
}

std::string fixed(double v, int digits) {
  if (std::isinf(v)) return "inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string scientific(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

}  // namespace

PrecisionError measure_precision_error(const Pipeline& float32, const Pipeline& candidate,
                                       const std::vector<ImageRequest>& requests) {
  if (requests.empty()) throw Error("measure_precision_error: no requests");
  const std::vector<int>& patch_nums = float32.var_config().patch_nums;
  if (candidate.var_config().patch_nums != patch_nums)
    throw Error("measure_precision_error: the two pipelines run different models");
  const int64_t B = static_cast<int64_t>(requests.size());

  LogitsByScale ref, forced_logits;
  const GeneratedImages ref_images = float32.generate(requests, recording(ref));

  // The float32 run's tokens, forced: [scale][B·pn²].
  std::vector<std::vector<int32_t>> forced(patch_nums.size());
  for (size_t s = 0; s < patch_nums.size(); ++s)
    for (int64_t b = 0; b < B; ++b)
      forced[s].insert(forced[s].end(), ref_images.tokens[b][s].begin(), ref_images.tokens[b][s].end());
  GenerateOptions teacher = recording(forced_logits);
  teacher.forced_tokens = &forced;
  const GeneratedImages decoded = candidate.generate(requests, teacher);
  const GeneratedImages free_images = candidate.generate(requests);

  PrecisionError e;
  e.images = B;
  const int64_t V = ref.V;
  double all_num = 0.0, all_den = 0.0;
  int64_t all_same = 0, all_tokens = 0;
  std::vector<double> lp, lq;
  for (size_t s = 0; s < patch_nums.size(); ++s) {
    const std::vector<float>& r = ref.scales.at(s);
    const std::vector<float>& x = forced_logits.scales.at(s);
    if (r.size() != x.size()) throw Error("measure_precision_error: the runs' logits differ in shape");
    ScalePrecisionError se;
    se.side = patch_nums[s];
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < r.size(); ++i) {
      const double d = static_cast<double>(x[i]) - r[i];
      num += d * d;
      den += static_cast<double>(r[i]) * r[i];
    }
    se.logits_error = den > 0 ? std::sqrt(num / den) : 0.0;
    all_num += num;
    all_den += den;
    const int64_t rows = static_cast<int64_t>(r.size()) / V;
    double kl = 0.0;
    int64_t top1 = 0;
    for (int64_t t = 0; t < rows; ++t) {
      const float* rr = r.data() + t * V;
      const float* xx = x.data() + t * V;
      log_softmax(rr, V, lp);
      log_softmax(xx, V, lq);
      double k = 0.0;
      for (int64_t v = 0; v < V; ++v) k += std::exp(lp[v]) * (lp[v] - lq[v]);
      kl += std::max(k, 0.0);
      top1 += std::max_element(rr, rr + V) - rr == std::max_element(xx, xx + V) - xx;
    }
    se.kl = kl / static_cast<double>(rows);
    se.top1_agreement = static_cast<double>(top1) / static_cast<double>(rows);
    int64_t same = 0, total = 0;
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<int32_t>& a = ref_images.tokens[b][s];
      const std::vector<int32_t>& c = free_images.tokens[b][s];
      for (size_t i = 0; i < a.size(); ++i, ++total) same += a[i] == c[i];
    }
    se.token_agreement = static_cast<double>(same) / static_cast<double>(total);
    all_same += same;
    all_tokens += total;
    e.scales.push_back(se);
  }
  e.logits_error = all_den > 0 ? std::sqrt(all_num / all_den) : 0.0;
  e.token_agreement = static_cast<double>(all_same) / static_cast<double>(all_tokens);
  e.psnr_db = psnr(free_images.pixels, ref_images.pixels);
  e.decoded_psnr_db = psnr(decoded.pixels, ref_images.pixels);
  return e;
}

std::string precision_error_markdown(const PrecisionError& e) {
  std::string s =
      "| scale | side | logits error (teacher forced) | KL, nats | top-1 agreement | tokens agreeing (free running) |\n"
      "| ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (size_t i = 0; i < e.scales.size(); ++i) {
    const ScalePrecisionError& se = e.scales[i];
    s += "| " + std::to_string(i + 1) + " | " + std::to_string(se.side) + " | " + scientific(se.logits_error) + " | " +
         scientific(se.kl) + " | " + fixed(100.0 * se.top1_agreement, 1) + " % | " +
         fixed(100.0 * se.token_agreement, 1) + " % |\n";
  }
  s += "| all | | " + scientific(e.logits_error) + " | | | " + fixed(100.0 * e.token_agreement, 1) + " % |\n\n";
  s += "Images: " + std::to_string(e.images) + ". PSNR against float32's images: " + fixed(e.decoded_psnr_db, 2) +
       " dB for float32's tokens decoded in this precision (the residual path and decoder alone), " +
       fixed(e.psnr_db, 2) + " dB for the images it samples on its own.\n";
  return s;
}

}  // namespace varps::bench
