// Statistics, goodput, the JSON shape and the Prometheus scrape arithmetic of `llmd bench`.
#include <gtest/gtest.h>

#include "bench/report.hpp"
#include "common/error.hpp"

namespace llmd::bench {
namespace {

RequestRecord ok_record(double send, double first, double end, int64_t tokens, std::vector<double> itl = {}) {
  RequestRecord r;
  r.ok = true;
  r.send_s = send;
  r.first_s = first;
  r.end_s = end;
  r.output_tokens = tokens;
  r.itl_s = std::move(itl);
  return r;
}

TEST(Stats, PercentilesInterpolateLikeNumpy) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  const auto s = summarize(v);
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->mean, 50.5);
  EXPECT_DOUBLE_EQ(s->p50, 50.5);
  EXPECT_NEAR(s->p90, 90.1, 1e-9);
  EXPECT_NEAR(s->p99, 99.01, 1e-9);
  EXPECT_DOUBLE_EQ(summarize({7})->p99, 7);
  EXPECT_FALSE(summarize({}));
  std::vector<double> unsorted = {5, 1, 4, 2, 3};
  EXPECT_DOUBLE_EQ(summarize(unsorted)->p50, 3);
  EXPECT_DOUBLE_EQ(percentile_sorted({1, 2}, 25), 1.25);
}

TEST(Stats, TpotIsDecodeTimePerFurtherToken) {
  const RequestRecord r = ok_record(0, 0.1, 0.5, 5);
  EXPECT_NEAR(*r.tpot_s(), 0.1, 1e-12);
  EXPECT_FALSE(ok_record(0, 0.1, 0.1, 1).tpot_s());
  EXPECT_NEAR(r.ttft_s(), 0.1, 1e-12);
  EXPECT_NEAR(r.e2e_s(), 0.5, 1e-12);
}

TEST(Stats, ReportCountsExcludeWarmupAndFailures) {
  std::vector<RequestRecord> recs;
  recs.push_back(ok_record(0, 0.010, 0.050, 5, {0.01, 0.01, 0.01, 0.01}));
  recs.push_back(ok_record(0, 0.030, 0.110, 5, {0.02, 0.02, 0.02, 0.02}));
  RequestRecord warm = ok_record(0, 1, 2, 100);
  warm.warmup = true;
  recs.push_back(warm);
  RequestRecord bad;
  bad.error_kind = "http_500";
  recs.push_back(bad);
  bad.error_kind = "connect";
  recs.push_back(bad);
  recs.push_back(bad);
  const Report rep = make_report(recs, 2.0, Slo{});
  EXPECT_EQ(rep.requests_completed, 2u);
  EXPECT_EQ(rep.requests_failed, 3u);
  EXPECT_EQ(rep.requests_warmup, 1u);
  EXPECT_EQ(rep.failures_by_kind.at("connect"), 2u);
  EXPECT_EQ(rep.failures_by_kind.at("http_500"), 1u);
  EXPECT_DOUBLE_EQ(rep.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(rep.output_throughput, 5.0);
  EXPECT_NEAR(rep.ttft_ms->mean, 20, 1e-9);
  EXPECT_NEAR(rep.tpot_ms->mean, 15, 1e-9);  // (40/4 + 80/4) / 2
  EXPECT_NEAR(rep.itl_ms->p50, 15, 1e-9);    // four 10s and four 20s
  EXPECT_NEAR(rep.e2e_ms->p99, 50 + 60 * 0.99, 1e-9);
  EXPECT_FALSE(rep.goodput);  // no --slo
}

TEST(Stats, GoodputCountsRequestsMeetingEveryBound) {
  std::vector<RequestRecord> recs;
  recs.push_back(ok_record(0, 0.100, 0.500, 5));  // ttft 100, tpot 100
  recs.push_back(ok_record(0, 0.300, 0.400, 5));  // ttft 300, tpot 25
  recs.push_back(ok_record(0, 0.050, 0.150, 5));  // ttft 50, tpot 25
  recs.push_back(ok_record(0, 0.050, 0.050, 1));  // one token: no TPOT, meets it
  const Slo slo = parse_slo("ttft_ms=200,tpot_ms=50");
  EXPECT_FALSE(meets(recs[0], slo));
  EXPECT_FALSE(meets(recs[1], slo));
  EXPECT_TRUE(meets(recs[2], slo));
  EXPECT_TRUE(meets(recs[3], slo));
  const Report rep = make_report(recs, 4.0, slo);
  ASSERT_TRUE(rep.goodput);
  EXPECT_DOUBLE_EQ(*rep.goodput, 0.5);
  EXPECT_DOUBLE_EQ(*make_report(recs, 4.0, parse_slo("e2e_ms=450")).goodput, 0.75);
}

TEST(Stats, SloParsingNamesTheBadPart) {
  const Slo s = parse_slo("ttft_ms=200,tpot_ms=12.5,itl_ms=30,e2e_ms=1000");
  EXPECT_EQ(*s.ttft_ms, 200);
  EXPECT_EQ(*s.tpot_ms, 12.5);
  EXPECT_EQ(*s.itl_ms, 30);
  EXPECT_EQ(*s.e2e_ms, 1000);
  EXPECT_TRUE(parse_slo("").empty());
  EXPECT_THROW(parse_slo("ttft=200"), Error);
  EXPECT_THROW(parse_slo("ttft_ms=abc"), Error);
  EXPECT_THROW(parse_slo("ttft_ms=-1"), Error);
  EXPECT_THROW(parse_slo("ttft_ms"), Error);
}

TEST(Report, JsonHasExactlyTheDocumentedKeys) {
  std::vector<RequestRecord> recs = {ok_record(0, 0.01, 0.05, 3, {0.02, 0.02})};
  Report rep = make_report(recs, 1.0, parse_slo("ttft_ms=100"));
  rep.prefix_cache_hit_rate = 0.25;
  const auto j = to_json(rep);
  for (const char* k : {"requests_completed", "requests_failed", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms",
                        "request_throughput", "output_throughput", "goodput", "prefix_cache_hit_rate"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    for (const char* s : {"mean", "p50", "p90", "p99"}) EXPECT_TRUE(j[k][s].is_number()) << k << "." << s;
  }
  EXPECT_EQ(j["requests_completed"], 1);
  EXPECT_DOUBLE_EQ(j["goodput"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["prefix_cache_hit_rate"].get<double>(), 0.25);

  const auto empty = to_json(make_report({}, 0, Slo{}));
  EXPECT_TRUE(empty["ttft_ms"]["p99"].is_null());
  EXPECT_TRUE(empty["goodput"].is_null());
  EXPECT_TRUE(empty["prefix_cache_hit_rate"].is_null());
  const std::string table = format_table(rep, "Serving Benchmark Result");
  EXPECT_NE(table.find("Mean TTFT (ms):"), std::string::npos) << table;
  EXPECT_NE(table.find("P99 ITL (ms):"), std::string::npos) << table;
}

TEST(Metrics, PrefixCacheHitRateFromTwoScrapes) {
  const std::string before =
      "# HELP vllm:prefix_cache_hits_total Prefix cache hits\n"
      "# TYPE vllm:prefix_cache_hits_total counter\n"
      "vllm:prefix_cache_hits_total{model_name=\"m\",engine=\"0\"} 100\n"
      "vllm:prefix_cache_hits_total_extra 5\n"
      "vllm:prefix_cache_queries_total{model_name=\"m\",engine=\"0\"} 400\n";
  const std::string after =
      "vllm:prefix_cache_hits_total{model_name=\"m\",engine=\"0\"} 250\n"
      "vllm:prefix_cache_hits_total{model_name=\"m\",engine=\"1\"} 50\n"
      "vllm:prefix_cache_queries_total{model_name=\"m\",engine=\"0\"} 600 1700000000\n"
      "vllm:prefix_cache_queries_total{model_name=\"m\",engine=\"1\"} 200\n";
  EXPECT_DOUBLE_EQ(*prometheus_sum(before, "vllm:prefix_cache_hits_total"), 100);
  EXPECT_DOUBLE_EQ(*prometheus_sum(after, "vllm:prefix_cache_queries_total"), 800);
  EXPECT_DOUBLE_EQ(*prefix_cache_hit_rate(before, after), 0.5);  // 200 / 400
  EXPECT_FALSE(prefix_cache_hit_rate(before, before));           // no queries in between
  EXPECT_FALSE(prefix_cache_hit_rate("", after));
}

}  // namespace
}  // namespace llmd::bench
