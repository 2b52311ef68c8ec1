// Endpoint discovery: the fixed list, a watched file (hot reload, a broken file keeps the last
// good list) and DNS names re-resolved to one endpoint per address.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.hpp"
#include "router/discovery.hpp"

namespace llmd::router {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> addresses(const EndpointSet& s) {
  std::vector<std::string> out;
  for (const auto& e : *s.snapshot()) out.push_back(e->address());
  return out;
}

bool wait_for(const EndpointSet& s, const std::vector<std::string>& want) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (addresses(s) == want) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

void write(const std::filesystem::path& p, const std::string& text) {
  const auto tmp = p.string() + ".tmp";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, p);  // as editors and ConfigMap updates do: whole files
}

TEST(Discovery, WatchedFileIsReloadedAndABrokenOneKeepsTheLastList) {
  const auto dir = std::filesystem::temp_directory_path() / ("llmd_disc_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "endpoints";
  write(file, "10.0.0.1:8000;role=decode\n# a comment\n10.0.0.2:8000\n");
  EndpointSet set;
  DiscoveryConfig c;
  c.fixed = parse_endpoint_list("10.0.0.9:9000");
  c.file = file.string();
  c.interval = 10ms;
  Discovery d(c, set);
  EXPECT_EQ(addresses(set), (std::vector<std::string>{"10.0.0.9:9000", "10.0.0.1:8000", "10.0.0.2:8000"}));
  const auto kept = (*set.snapshot())[1];
  std::this_thread::sleep_for(20ms);  // a later mtime
  write(file, "10.0.0.1:8000;role=decode\n10.0.0.3:8000\n");
  EXPECT_TRUE(wait_for(set, {"10.0.0.9:9000", "10.0.0.1:8000", "10.0.0.3:8000"})) << addresses(set).size();
  EXPECT_EQ((*set.snapshot())[1], kept);  // unchanged endpoints keep their state
  std::this_thread::sleep_for(20ms);
  write(file, "not an endpoint\n");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(addresses(set), (std::vector<std::string>{"10.0.0.9:9000", "10.0.0.1:8000", "10.0.0.3:8000"}));
  d.stop();
  std::filesystem::remove_all(dir);
}

TEST(Discovery, MissingOrBrokenFileAtStartIsAnError) {
  EndpointSet set;
  DiscoveryConfig c;
  c.file = "/nonexistent/llmd/endpoints";
  EXPECT_THROW(Discovery(c, set), Error);
  const auto broken = std::filesystem::temp_directory_path() / ("llmd_disc_bad_" + std::to_string(getpid()));
  std::ofstream(broken) << "10.0.0.1:8000\nnot-an-endpoint\n";
  c.file = broken.string();
  try {
    Discovery d(c, set);
    ADD_FAILURE() << "a broken endpoints file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not-an-endpoint"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(set.snapshot()->empty());  // nothing half-applied
  std::filesystem::remove(broken);
}

TEST(Discovery, DnsNamesBecomeOneEndpointPerAddress) {
  EXPECT_TRUE(resolve_host("no-such-host.invalid").empty());
  const auto local = resolve_host("localhost");
  ASSERT_FALSE(local.empty());
  EndpointSet set;
  DiscoveryConfig c;
  c.dns = parse_endpoint_list("localhost:8000;role=decode");
  c.interval = 10ms;
  Discovery d(c, set);
  const auto snap = set.snapshot();
  ASSERT_EQ(snap->size(), local.size());
  for (std::size_t i = 0; i < local.size(); ++i) {
    EXPECT_EQ((*snap)[i]->host(), local[i]);
    EXPECT_EQ((*snap)[i]->port(), 8000);
    EXPECT_EQ((*snap)[i]->role(), "decode");
  }
}

}  // namespace
}  // namespace llmd::router
