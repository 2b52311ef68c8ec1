#include "bench/plot.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace llmd::bench {

Histogram histogram(const std::vector<double>& values, int bins) {
  Histogram h;
  if (values.empty() || bins <= 0) return h;
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  h.lo = sorted.front();
  const double hi = percentile_sorted(sorted, 99);
  h.width = hi > h.lo ? (hi - h.lo) / bins : 1.0;  // all equal: one unit-wide bar holds them
  h.counts.assign(static_cast<std::size_t>(bins), 0);
  for (const double v : sorted) {
    auto i = static_cast<int64_t>(std::floor((v - h.lo) / h.width));
    if (v > hi) ++h.overflow;
    i = std::clamp<int64_t>(i, 0, bins - 1);
    ++h.counts[static_cast<std::size_t>(i)];
  }
  return h;
}

ThroughputSeries throughput_over_time(const std::vector<RequestRecord>& records, double bucket_s) {
  ThroughputSeries s;
  s.bucket_s = bucket_s > 0 ? bucket_s : 1.0;
  auto bucket = [&](double t) {
    if (t < 0) t = 0;
    const auto i = static_cast<std::size_t>(t / s.bucket_s);
    if (i >= s.tokens_per_s.size()) {
      s.tokens_per_s.resize(i + 1, 0.0);
      s.requests_per_s.resize(i + 1, 0.0);
    }
    return i;
  };
  const double per_s = 1.0 / s.bucket_s;
  for (const RequestRecord& r : records) {
    if (r.warmup) continue;
    if (r.ok) s.requests_per_s[bucket(r.end_s)] += per_s;
    if (r.first_s < 0 || r.output_tokens <= 0) continue;
    // Chunk arrival times: the first, then each gap after it.
    const double tokens_per_chunk =
        static_cast<double>(r.output_tokens) / static_cast<double>(r.itl_s.size() + 1);
    double t = r.first_s;
    s.tokens_per_s[bucket(t)] += tokens_per_chunk * per_s;
    for (const double gap : r.itl_s) {
      t += gap;
      s.tokens_per_s[bucket(t)] += tokens_per_chunk * per_s;
    }
  }
  return s;
}

namespace {

constexpr double kPanelW = 460, kPanelH = 280;
constexpr double kMarginL = 64, kMarginR = 16, kMarginT = 34, kMarginB = 44;
constexpr double kHeader = 40;

// A step of 1, 2 or 5 × 10^k that cuts [0, max] into about five parts.
double nice_step(double max) {
  if (!(max > 0)) return 1;
  const double raw = max / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string number(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:.3g}k", v / 1e3);
  if (a >= 10) return fmt::format("{:.0f}", v);
  if (a >= 1) return fmt::format("{:.2g}", v);
  return fmt::format("{:.2g}", v);
}

std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// One panel: a frame at (x, y) with axes over [x0, x1] × [0, y1]; the data are drawn by the caller
// through px()/py().
class Panel {
 public:
  Panel(std::string& svg, double x, double y, double x0, double x1, double y1)
      : svg_(svg), x_(x), y_(y), x0_(x0), x1_(x1 > x0 ? x1 : x0 + 1), y1_(y1 > 0 ? y1 : 1) {}

  double px(double v) const { return x_ + kMarginL + (v - x0_) / (x1_ - x0_) * plot_w(); }
  double py(double v) const { return y_ + kMarginT + plot_h() - v / y1_ * plot_h(); }
  double plot_w() const { return kPanelW - kMarginL - kMarginR; }
  double plot_h() const { return kPanelH - kMarginT - kMarginB; }

  void frame(const std::string& title, const std::string& xlabel, const std::string& ylabel) {
    svg_ += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" class="t">{}</text>)"
                        "\n",
                        x_ + kMarginL, y_ + 20, escape(title));
    const double step_y = nice_step(y1_);
    for (double v = 0; v <= y1_ * 1.0001; v += step_y) {
      svg_ += fmt::format(R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" class="g"/>)"
                          R"(<text x="{:.1f}" y="{:.1f}" class="yl">{}</text>)"
                          "\n",
                          px(x0_), py(v), px(x1_), py(v), px(x0_) - 4, py(v) + 4, number(v));
    }
    const double step_x = nice_step(x1_ - x0_);
    for (double v = std::ceil(x0_ / step_x) * step_x; v <= x1_ * 1.0001 + 1e-12; v += step_x) {
      svg_ += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" class="xl">{}</text>)"
                          "\n",
                          px(v), py(0) + 16, number(v));
    }
    svg_ += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" class="f"/>)"
                        "\n",
                        px(x0_), py(y1_), plot_w(), plot_h());
    svg_ += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" class="xt">{}</text>)"
                        "\n",
                        x_ + kMarginL + plot_w() / 2, y_ + kPanelH - 8, escape(xlabel));
    svg_ += fmt::format(
        R"~(<text x="{:.1f}" y="{:.1f}" class="yt" transform="rotate(-90 {:.1f} {:.1f})">{}</text>)~"
        "\n",
        x_ + 14, y_ + kMarginT + plot_h() / 2, x_ + 14, y_ + kMarginT + plot_h() / 2, escape(ylabel));
  }

  void empty(const std::string& what) {
    svg_ += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" class="xt">no {}</text>)"
                        "\n",
                        x_ + kMarginL + plot_w() / 2, y_ + kMarginT + plot_h() / 2, escape(what));
  }

 private:
  std::string& svg_;
  double x_, y_, x0_, x1_, y1_;
};

void histogram_panel(std::string& svg, double x, double y, const std::string& title,
                     const std::vector<double>& values_ms) {
  const Histogram h = histogram(values_ms, 40);
  const uint64_t top = h.counts.empty() ? 1 : *std::max_element(h.counts.begin(), h.counts.end());
  const double x1 = h.lo + h.width * static_cast<double>(std::max<std::size_t>(h.counts.size(), 1));
  std::string t = fmt::format("{} ({} values)", title, values_ms.size());
  if (h.overflow) t += fmt::format(", last bar adds {} above p99", h.overflow);
  Panel p(svg, x, y, h.lo, x1, static_cast<double>(top) * 1.05);
  p.frame(t, "ms", "count");
  if (h.counts.empty()) return p.empty("data");
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    if (!h.counts[i]) continue;
    const double bx = p.px(h.lo + h.width * static_cast<double>(i));
    const double bw = std::max(p.px(h.lo + h.width * static_cast<double>(i + 1)) - bx - 0.5, 0.5);
    const double by = p.py(static_cast<double>(h.counts[i]));
    svg += fmt::format(
        R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" class="b"><title>{}–{} ms: {}</title></rect>)"
        "\n",
        bx, by, bw, p.py(0) - by, number(h.lo + h.width * static_cast<double>(i)),
        number(h.lo + h.width * static_cast<double>(i + 1)), h.counts[i]);
  }
}

void series_panel(std::string& svg, double x, double y, const std::string& title, const std::string& ylabel,
                  const std::vector<double>& series, double bucket_s) {
  const double top = series.empty() ? 1 : *std::max_element(series.begin(), series.end());
  Panel p(svg, x, y, 0, bucket_s * static_cast<double>(std::max<std::size_t>(series.size(), 1)), top * 1.05);
  p.frame(title, "seconds", ylabel);
  if (series.empty()) return p.empty("data");
  std::string points;
  for (std::size_t i = 0; i < series.size(); ++i) {
    points += fmt::format("{:.1f},{:.1f} ", p.px(bucket_s * static_cast<double>(i)), p.py(series[i]));
    points += fmt::format("{:.1f},{:.1f} ", p.px(bucket_s * static_cast<double>(i + 1)), p.py(series[i]));
  }
  svg += fmt::format(R"(<polyline points="{}" class="l"/>)"
                     "\n",
                     points);
}

}  // namespace

std::string render_svg(const std::vector<RequestRecord>& records, double duration_s,
                       const std::string& title) {
  std::vector<double> ttft, itl;
  for (const RequestRecord& r : records) {
    if (r.warmup || !r.ok) continue;
    if (r.first_s >= 0) ttft.push_back(r.ttft_s() * 1e3);
    for (const double g : r.itl_s) itl.push_back(g * 1e3);
  }
  // About a hundred steps across the run, at least a millisecond each.
  const double bucket = std::max(duration_s / 100, 1e-3);
  const ThroughputSeries tp = throughput_over_time(records, bucket);

  const double w = 2 * kPanelW, h = kHeader + 2 * kPanelH;
  std::string svg = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0:.0f}" height="{1:.0f}" viewBox="0 0 {0:.0f} {1:.0f}" font-family="sans-serif" font-size="11">)"
      "\n"
      "<style>.t{{font-weight:bold}} .g{{stroke:#e4e4e4}} .f{{fill:none;stroke:#555}} "
      ".b{{fill:#4a7bd0}} .l{{fill:none;stroke:#d0524a;stroke-width:1.5}} "
      ".yl{{text-anchor:end}} .xl{{text-anchor:middle}} .xt{{text-anchor:middle}} "
      ".yt{{text-anchor:middle}}</style>\n"
      R"(<rect width="100%" height="100%" fill="white"/>)"
      "\n"
      R"(<text x="{2:.1f}" y="26" font-size="15" text-anchor="middle">{3}</text>)"
      "\n",
      w, h, w / 2, escape(title));
  histogram_panel(svg, 0, kHeader, "Time to first token", ttft);
  histogram_panel(svg, kPanelW, kHeader, "Inter-token latency", itl);
  series_panel(svg, 0, kHeader + kPanelH, "Output throughput", "tokens/s", tp.tokens_per_s, tp.bucket_s);
  series_panel(svg, kPanelW, kHeader + kPanelH, "Completed requests", "requests/s", tp.requests_per_s,
               tp.bucket_s);
  svg += "</svg>\n";
  return svg;
}

}  // namespace llmd::bench
