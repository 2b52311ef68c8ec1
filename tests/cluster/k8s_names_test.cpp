// Kubernetes' name, label and quantity rules as the spec parser applies them.
#include <gtest/gtest.h>

#include "cluster/k8s_names.hpp"

namespace llmd::cluster {
namespace {

TEST(K8sNames, Dns1123) {
  EXPECT_TRUE(is_dns1123_label("demo"));
  EXPECT_TRUE(is_dns1123_label("a-1"));
  EXPECT_TRUE(is_dns1123_label(std::string(63, 'a')));
  EXPECT_FALSE(is_dns1123_label(std::string(64, 'a')));
  EXPECT_FALSE(is_dns1123_label(""));
  EXPECT_FALSE(is_dns1123_label("Demo"));
  EXPECT_FALSE(is_dns1123_label("-a"));
  EXPECT_FALSE(is_dns1123_label("a-"));
  EXPECT_FALSE(is_dns1123_label("a_b"));
  EXPECT_FALSE(is_dns1123_label("a.b"));
  EXPECT_TRUE(is_dns1123_subdomain("a.b-c.d"));
  EXPECT_FALSE(is_dns1123_subdomain("a..b"));
  EXPECT_FALSE(is_dns1123_subdomain("a."));
}

TEST(K8sNames, Labels) {
  EXPECT_TRUE(is_label_key("llm-d.ai/role"));
  EXPECT_TRUE(is_label_key("zone"));
  EXPECT_TRUE(is_label_key("nvidia.com/gpu.product"));
  EXPECT_FALSE(is_label_key("Bad_Prefix/x"));
  EXPECT_FALSE(is_label_key("a/"));
  EXPECT_FALSE(is_label_key("-x"));
  EXPECT_TRUE(is_label_value(""));
  EXPECT_TRUE(is_label_value("NVIDIA-H100-80GB-HBM3"));
  EXPECT_FALSE(is_label_value("a b"));
  EXPECT_FALSE(is_label_value(std::string(64, 'a')));
}

TEST(K8sNames, Quantities) {
  EXPECT_EQ(parse_quantity("2"), 2.0);
  EXPECT_EQ(parse_quantity("500m"), 0.5);
  EXPECT_EQ(parse_quantity("1.5"), 1.5);
  EXPECT_EQ(parse_quantity(".5"), 0.5);
  EXPECT_EQ(parse_quantity("4Gi"), 4294967296.0);
  EXPECT_EQ(parse_quantity("512Mi"), 536870912.0);
  EXPECT_EQ(parse_quantity("1k"), 1000.0);
  EXPECT_EQ(parse_quantity("1M"), 1e6);
  EXPECT_EQ(parse_quantity("1E"), 1e18);
  EXPECT_EQ(parse_quantity("1e3"), 1000.0);
  EXPECT_EQ(parse_quantity("1E+3"), 1000.0);
  EXPECT_EQ(parse_quantity("+2"), 2.0);
  EXPECT_EQ(parse_quantity("-2"), -2.0);
  EXPECT_EQ(parse_quantity("0"), 0.0);
  for (const char* bad : {"", "4GB", "4gi", "Gi", "1.2.3", "m", "1 Gi", "1e", "1e1.5", "0x10", "abc", "."}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parse_quantity(bad));
  }
}

}  // namespace
}  // namespace llmd::cluster
