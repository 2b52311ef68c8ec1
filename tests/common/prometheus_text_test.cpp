// The Prometheus text reader the router's scraper and llmd bench use.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/prometheus_text.hpp"

namespace llmd::prometheus {
namespace {

TEST(PrometheusText, ReadsSamplesLabelsAndSpecialValues) {
  const std::string text =
      "# HELP vllm:num_requests_waiting Waiting.\n"
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 3.0\n"
      "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"1024\",note=\"a,b}\\\"c\"} 1\n"
      "plain 2 1700000000000\n"
      "inf_one +Inf\r\n"
      "\n";
  std::vector<Sample> got;
  EXPECT_EQ(parse(text, [&](const Sample& s) { got.push_back(s); }), 0u);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].name, "vllm:num_requests_waiting");
  EXPECT_EQ(got[0].value, 3.0);
  EXPECT_EQ(label(got[0].labels, "engine"), "0");
  EXPECT_EQ(label(got[1].labels, "num_gpu_blocks"), "1024");
  EXPECT_EQ(label(got[1].labels, "note"), "a,b}\\\"c");  // escapes kept as written
  EXPECT_FALSE(label(got[1].labels, "absent"));
  EXPECT_EQ(got[2].value, 2);  // the timestamp is not the value
  EXPECT_TRUE(std::isinf(got[3].value));
}

TEST(PrometheusText, CountsMalformedLinesAndGoesOn) {
  const std::string text = "ok 1\n{nope} 1\nx{a=\"1\" 2\nname\nv notanumber\n9bad 1\nlast 5\n";
  std::vector<double> values;
  EXPECT_EQ(parse(text, [&](const Sample& s) { values.push_back(s.value); }), 5u);
  EXPECT_EQ(values, (std::vector<double>{1, 5}));
}

}  // namespace
}  // namespace llmd::prometheus
