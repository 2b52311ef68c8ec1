// `llmd route` refuses bad flags and configs with one line that names the problem.
#include <gtest/gtest.h>

#include <fstream>

#include "cli/cli_test_util.hpp"

namespace llmd::cli_test {
namespace {

TEST(Route, BadFlagsAndConfigsGiveOneErrorLine) {
  TempDir dir;
  const std::string unknown_field = (dir.path() / "unknown_field.yaml").string();
  std::ofstream(unknown_field) << "pluginz: []\n";
  const std::string unknown_type = (dir.path() / "unknown_type.yaml").string();
  std::ofstream(unknown_type) << "plugins:\n- type: teleport-scorer\n";
  const std::string bad_param = (dir.path() / "bad_param.yaml").string();
  std::ofstream(bad_param) << "plugins:\n- type: max-score-picker\n  parameters: {maxNumOfEndpoints: many}\n";

  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"route", "--port", "0"}, "route needs endpoints"},
      {{"route", "--port", "0", "--endpoints", "nohost"}, "endpoint 'nohost'"},
      {{"route", "--port", "0", "--endpoints", "h:99999"}, "port in 1..65535"},
      {{"route", "--port", "0", "--endpoints", "h:80;novalue"}, "label 'novalue'"},
      {{"route", "--port", "0", "--endpoints", "h:80", "--config", unknown_field}, "pluginz: unknown field"},
      {{"route", "--port", "0", "--endpoints", "h:80", "--config", unknown_type},
       "unknown type 'teleport-scorer'"},
      {{"route", "--port", "0", "--endpoints", "h:80", "--config", bad_param},
       "maxNumOfEndpoints must be an integer"},
      {{"route", "--port", "0", "--endpoints", "h:80", "--config", "/nonexistent/epp.yaml"},
       "/nonexistent/epp.yaml"},
      {{"route", "--port", "0", "--endpoints-file", "/nonexistent/endpoints"}, "/nonexistent/endpoints"},
      {{"route", "--port", "0", "--endpoints", "h:80", "--block-size", "0"}, "--block-size"},
  };
  for (const auto& [args, want] : cases) {
    SCOPED_TRACE(want);
    expect_one_error_line(run_llmd(args, dir), want);
  }
}

}  // namespace
}  // namespace llmd::cli_test
