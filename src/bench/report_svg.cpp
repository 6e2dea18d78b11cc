// bench.svg: two panels against the number of streams P, one colour per
// schedule: latency (median, with p10–p90 whiskers) and memory (measured peak
// solid, the engine's planned total dashed). Hand-written SVG text.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "bench/format.hpp"
#include "varps/bench.hpp"

namespace varps::bench {
namespace {

constexpr double kWidth = 1000, kHeight = 480, kPanelWidth = 500;
constexpr double kPlotTop = 60, kPlotBottom = 380, kPlotLeft = 80, kPlotRight = 475;  // within a panel
const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

std::string n2(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string text(double x, double y, const std::string& s, const std::string& extra = "") {
  return "<text x=\"" + n2(x) + "\" y=\"" + n2(y) + "\"" + (extra.empty() ? "" : " " + extra) + ">" +
         fmt::xml_escape(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& style) {
  return "<line x1=\"" + n2(x1) + "\" y1=\"" + n2(y1) + "\" x2=\"" + n2(x2) + "\" y2=\"" + n2(y2) + "\" " + style +
         "/>\n";
}

// The y axis: 0 to a round number at or above the largest value, with round ticks.
struct YAxis {
  double top = 1, step = 0.2;
  explicit YAxis(double max_value) {
    if (!(max_value > 0) || !std::isfinite(max_value)) max_value = 1;
    const double raw = max_value / 5;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double f = raw / mag;
    step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    top = std::ceil(max_value / step - 1e-9) * step;
  }
  double y(double v) const { return kPlotBottom - (v / top) * (kPlotBottom - kPlotTop); }
  std::string label(double v) const {
    const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
    return fmt::fixed(v, decimals);
  }
};

// The x axis: one tick per measured P, log2-spaced when every P ≥ 1.
struct XAxis {
  std::vector<int> ticks;
  bool log = true;
  double lo = 0, hi = 0;
  explicit XAxis(const std::vector<RunResult>& runs) {
    std::set<int> ps;
    for (const RunResult& r : runs) ps.insert(r.streams);
    ticks.assign(ps.begin(), ps.end());
    for (int p : ticks) log = log && p >= 1;
    if (!ticks.empty()) {
      lo = t(ticks.front());
      hi = t(ticks.back());
    }
  }
  double t(int p) const { return log ? std::log2(static_cast<double>(p)) : static_cast<double>(p); }
  double x(int p, double panel_x) const {
    const double left = panel_x + kPlotLeft + 30, right = panel_x + kPlotRight - 30;
    if (hi == lo) return (left + right) / 2;
    return left + (t(p) - lo) / (hi - lo) * (right - left);
  }
};

struct Series {
  std::string schedule;
  std::string colour;
  std::vector<const RunResult*> runs;  // sorted by P
};

std::vector<Series> series_of(const std::vector<RunResult>& runs) {
  std::vector<Series> out;
  for (const RunResult& r : runs) {
    auto it = std::find_if(out.begin(), out.end(), [&](const Series& s) { return s.schedule == r.schedule; });
    if (it == out.end()) {
      const size_t n = sizeof kPalette / sizeof kPalette[0];
      out.push_back(Series{r.schedule, kPalette[out.size() % n], {}});
      it = out.end() - 1;
    }
    it->runs.push_back(&r);
  }
  for (Series& s : out) {
    std::stable_sort(s.runs.begin(), s.runs.end(),
                     [](const RunResult* a, const RunResult* b) { return a->streams < b->streams; });
  }
  return out;
}

std::string frame(double px, const std::string& title, const std::string& y_title, const XAxis& xa, const YAxis& ya) {
  std::string s;
  s += text(px + kPanelWidth / 2, 32, title, "text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\"");
  const int ticks = static_cast<int>(std::lround(ya.top / ya.step));
  for (int i = 0; i <= ticks; ++i) {
    const double v = ya.step * i;
    const double y = ya.y(v);
    s += line(px + kPlotLeft, y, px + kPlotRight, y, "stroke=\"#e0e0e0\"");
    s += text(px + kPlotLeft - 6, y + 4, ya.label(v), "text-anchor=\"end\"");
  }
  for (int p : xa.ticks) {
    const double x = xa.x(p, px);
    s += line(x, kPlotBottom, x, kPlotBottom + 5, "stroke=\"#000\"");
    s += text(x, kPlotBottom + 20, std::to_string(p), "text-anchor=\"middle\"");
  }
  s += line(px + kPlotLeft, kPlotTop, px + kPlotLeft, kPlotBottom, "stroke=\"#000\"");
  s += line(px + kPlotLeft, kPlotBottom, px + kPlotRight, kPlotBottom, "stroke=\"#000\"");
  s += text(px + (kPlotLeft + kPlotRight) / 2, kPlotBottom + 42, "streams P", "text-anchor=\"middle\"");
  const double yc = (kPlotTop + kPlotBottom) / 2;
  s += text(px + 22, yc, y_title, "text-anchor=\"middle\" transform=\"rotate(-90 " + n2(px + 22) + " " + n2(yc) + ")\"");
  return s;
}

struct Pt {
  double x, y;
};

std::string polyline(const std::vector<Pt>& pts, const std::string& colour, bool dashed) {
  if (pts.size() < 2) return "";
  std::string s = "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\"" +
                  (dashed ? " stroke-dasharray=\"6 4\"" : "") + " points=\"";
  for (size_t i = 0; i < pts.size(); ++i) {
    // Appended piece by piece: `"x" + std::string&&` trips a GCC 12 -Wrestrict false positive.
    if (i) s += ' ';
    s += n2(pts[i].x);
    s += ',';
    s += n2(pts[i].y);
  }
  return s + "\"/>\n";
}

double to_mib(uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

}  // namespace

std::string report_svg(const Report& r) {
  const XAxis xa(r.runs);
  const std::vector<Series> series = series_of(r.runs);
  double lat_max = 0, mem_max = 0;
  for (const RunResult& run : r.runs) {
    for (double v : {run.latency_ms.median, run.latency_ms.p90}) {
      if (std::isfinite(v)) lat_max = std::max(lat_max, v);
    }
    mem_max = std::max({mem_max, to_mib(run.peak_memory_bytes), to_mib(run.planned.total())});
  }
  const YAxis lat_axis(lat_max), mem_axis(mem_max);

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + n2(kWidth) + "\" height=\"" + n2(kHeight) +
                  "\" viewBox=\"0 0 " + n2(kWidth) + " " + n2(kHeight) +
                  "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect x=\"0\" y=\"0\" width=\"" + n2(kWidth) + "\" height=\"" + n2(kHeight) + "\" fill=\"#fff\"/>\n";
  s += frame(0, "Latency per request (median, p10–p90)", "latency (ms)", xa, lat_axis);
  s += frame(kPanelWidth, "Peak memory (measured solid, planned dashed)", "memory (MiB)", xa, mem_axis);

  const size_t n = series.size();
  for (size_t k = 0; k < n; ++k) {
    const Series& se = series[k];
    // Schedules at the same P are nudged apart so their whiskers stay visible.
    const double dx = (static_cast<double>(k) - (static_cast<double>(n) - 1) / 2) * 6;
    std::vector<Pt> lat, peak, plan;
    for (const RunResult* run : se.runs) {
      const double x = xa.x(run->streams, 0) + dx;
      const LatencyStats& l = run->latency_ms;
      if (std::isfinite(l.median)) {
        lat.push_back({x, lat_axis.y(l.median)});
        if (std::isfinite(l.p10) && std::isfinite(l.p90)) {
          const std::string st = "stroke=\"" + se.colour + "\" stroke-width=\"1.5\"";
          s += line(x, lat_axis.y(l.p10), x, lat_axis.y(l.p90), st);
          s += line(x - 4, lat_axis.y(l.p10), x + 4, lat_axis.y(l.p10), st);
          s += line(x - 4, lat_axis.y(l.p90), x + 4, lat_axis.y(l.p90), st);
        }
      }
      const double mx = xa.x(run->streams, kPanelWidth) + dx;
      peak.push_back({mx, mem_axis.y(to_mib(run->peak_memory_bytes))});
      plan.push_back({mx, mem_axis.y(to_mib(run->planned.total()))});
    }
    s += polyline(lat, se.colour, false);
    s += polyline(peak, se.colour, false);
    s += polyline(plan, se.colour, true);
    for (const Pt& p : lat) s += "<circle cx=\"" + n2(p.x) + "\" cy=\"" + n2(p.y) + "\" r=\"3.5\" fill=\"" + se.colour + "\"/>\n";
    for (const Pt& p : peak) s += "<circle cx=\"" + n2(p.x) + "\" cy=\"" + n2(p.y) + "\" r=\"3.5\" fill=\"" + se.colour + "\"/>\n";
    for (const Pt& p : plan) {
      s += "<rect x=\"" + n2(p.x - 3.5) + "\" y=\"" + n2(p.y - 3.5) + "\" width=\"7\" height=\"7\" fill=\"#fff\" stroke=\"" +
           se.colour + "\" stroke-width=\"1.5\"/>\n";
    }
  }

  // Legend: one entry per schedule, then the line styles.
  double lx = 20;
  const double ly = kHeight - 22;
  for (const Series& se : series) {
    s += line(lx, ly, lx + 24, ly, "stroke=\"" + se.colour + "\" stroke-width=\"3\"");
    s += text(lx + 30, ly + 4, se.schedule);
    lx += 40 + 7.0 * static_cast<double>(se.schedule.size()) + 20;
  }
  s += line(lx, ly, lx + 24, ly, "stroke=\"#555\" stroke-width=\"2\"");
  s += text(lx + 30, ly + 4, "measured peak");
  lx += 150;
  s += line(lx, ly, lx + 24, ly, "stroke=\"#555\" stroke-width=\"2\" stroke-dasharray=\"6 4\"");
  s += text(lx + 30, ly + 4, "planned (weights + KV + activations)");
  if (r.runs.empty()) s += text(kWidth / 2, kHeight / 2, "no runs", "text-anchor=\"middle\"");
  s += "</svg>\n";
  return s;
}

}  // namespace varps::bench
