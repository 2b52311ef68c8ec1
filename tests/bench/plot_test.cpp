// `llmd bench --plot`: the histogram and throughput arithmetic, and an SVG that XML accepts.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "bench/plot.hpp"

namespace llmd::bench {
namespace {

RequestRecord record(double send, double first, std::vector<double> itl, int64_t tokens) {
  RequestRecord r;
  r.ok = true;
  r.send_s = send;
  r.first_s = first;
  r.itl_s = std::move(itl);
  r.end_s = first + std::accumulate(r.itl_s.begin(), r.itl_s.end(), 0.0);
  r.output_tokens = tokens;
  return r;
}

TEST(Plot, HistogramSpansMinToP99AndCountsEveryValue) {
  std::vector<double> v;
  for (int i = 0; i < 1000; ++i) v.push_back(i % 100);  // 0..99, ten of each
  v.push_back(5000);                                    // a tail far above p99
  const Histogram h = histogram(v, 10);
  ASSERT_EQ(h.counts.size(), 10u);
  EXPECT_DOUBLE_EQ(h.lo, 0);
  // p99 of the 1001 values is 99: bins of 9.9 ms; the 5000 lands in the last bin and in overflow.
  EXPECT_NEAR(h.width, 9.9, 1e-9);
  EXPECT_EQ(std::accumulate(h.counts.begin(), h.counts.end(), uint64_t{0}), 1001u);
  EXPECT_EQ(h.overflow, 1u);
  EXPECT_EQ(h.counts[0], 100u);  // 0..9.89: the values 0..9
  EXPECT_EQ(h.counts[9], 101u);  // 89.1..99: the values 90..99, and the tail

  const Histogram same = histogram({3, 3, 3}, 5);
  EXPECT_EQ(same.counts[0], 3u);
  EXPECT_TRUE(histogram({}, 5).counts.empty());
}

TEST(Plot, ThroughputSpreadsTokensOverChunksAndSkipsWarmup) {
  std::vector<RequestRecord> recs;
  // 4 tokens in 2 chunks at 0.5 s and 1.5 s; ends at 1.5 s.
  recs.push_back(record(0, 0.5, {1.0}, 4));
  RequestRecord warm = record(0, 0.2, {}, 100);
  warm.warmup = true;
  recs.push_back(warm);
  RequestRecord failed = record(0, 2.5, {}, 7);
  failed.ok = false;  // its tokens did arrive; it does not count as completed
  recs.push_back(failed);
  const ThroughputSeries s = throughput_over_time(recs, 1.0);
  ASSERT_EQ(s.tokens_per_s.size(), 3u);
  EXPECT_DOUBLE_EQ(s.tokens_per_s[0], 2);
  EXPECT_DOUBLE_EQ(s.tokens_per_s[1], 2);
  EXPECT_DOUBLE_EQ(s.tokens_per_s[2], 7);
  EXPECT_DOUBLE_EQ(s.requests_per_s[0], 0);
  EXPECT_DOUBLE_EQ(s.requests_per_s[1], 1);
  EXPECT_DOUBLE_EQ(s.requests_per_s[2], 0);
  // Half-second buckets double the rate of the same tokens.
  EXPECT_DOUBLE_EQ(throughput_over_time(recs, 0.5).tokens_per_s[1], 4);
}

// The SVG is well-formed (xmllint parses it), has its four panels, one bar per filled bin and
// escapes the title.
TEST(Plot, SvgIsWellFormedWithFourPanels) {
  std::vector<RequestRecord> recs;
  for (int i = 0; i < 200; ++i)
    recs.push_back(record(i * 0.01, i * 0.01 + 0.02 + (i % 7) * 0.001, {0.005, 0.006}, 3));
  const std::string svg = render_svg(recs, 2.0, "random <8 in> & \"64 out\"");
  for (const char* panel :
       {"Time to first token", "Inter-token latency", "Output throughput", "Completed requests"})
    EXPECT_NE(svg.find(panel), std::string::npos) << panel;
  EXPECT_NE(svg.find("random &lt;8 in&gt; &amp; &quot;64 out&quot;"), std::string::npos);
  EXPECT_EQ(svg.find("<8 in>"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);

  const auto path =
      std::filesystem::temp_directory_path() / ("llmd_plot_test_" + std::to_string(getpid()) + ".svg");
  std::ofstream(path) << svg;
  const std::string cmd = "xmllint --noout " + path.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "");

  // No data at all still draws the frame, saying so.
  const std::string none = render_svg({}, 0, "empty");
  EXPECT_NE(none.find("no data"), std::string::npos);
}

}  // namespace
}  // namespace llmd::bench
