#pragma once
// `llmd bench --plot FILE.svg`: one self-contained SVG with four panels — the TTFT and ITL
// distributions (histograms) and output-token and request throughput over time — so a run can be
// judged at a glance without a plotting stack.
#include <cstdint>
#include <string>
#include <vector>

#include "bench/report.hpp"

namespace llmd::bench {

// Equal-width bins over [lo, lo + width × bins); values above the top fall into the last bin (the
// `overflow` of them are counted apart too, so the plot can say so), values below into the first.
struct Histogram {
  double lo = 0, width = 0;
  std::vector<uint64_t> counts;
  uint64_t overflow = 0;
};
// The bins span [min, p99] of the values (a long tail would squash everything else into one bar).
Histogram histogram(const std::vector<double>& values, int bins);

// Per bucket of `bucket_s` seconds from 0: output tokens that arrived in it per second (each
// request's tokens spread over its text chunks) and requests that ended in it per second. Measured
// records only (no warm-up); both series have the same length, covering every measured event.
struct ThroughputSeries {
  double bucket_s = 1;
  std::vector<double> tokens_per_s, requests_per_s;
};
ThroughputSeries throughput_over_time(const std::vector<RequestRecord>& records, double bucket_s);

// The whole picture; `title` heads it (e.g. the workload and the URL).
std::string render_svg(const std::vector<RequestRecord>& records, double duration_s,
                       const std::string& title);

}  // namespace llmd::bench
