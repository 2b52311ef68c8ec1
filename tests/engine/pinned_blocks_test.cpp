#include "engine/pinned_blocks.hpp"

#include <gtest/gtest.h>

namespace llmd::engine {
namespace {

using namespace std::chrono_literals;
using Clock = PinnedBlocks::Clock;
using Expired = std::vector<std::pair<std::string, std::vector<int32_t>>>;

TEST(PinnedBlocks, TakeReleasesOnceAndCountsBlocks) {
  PinnedBlocks p;
  const auto t0 = Clock::now();
  EXPECT_TRUE(p.pin("a", {1, 2, 3}, t0 + 10s));
  EXPECT_FALSE(p.pin("a", {9}, t0 + 1s));  // a second pin of one id changes nothing
  EXPECT_TRUE(p.pin("b", {4}, t0 + 20s));
  EXPECT_EQ(p.size(), 2u);
  EXPECT_EQ(p.n_blocks(), 4);
  EXPECT_EQ(p.take("a"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(p.take("a"), std::nullopt);  // the decode side saying it twice frees nothing twice
  EXPECT_EQ(p.take("zzz"), std::nullopt);
  EXPECT_EQ(p.n_blocks(), 1);
}

TEST(PinnedBlocks, ExpireInDeadlineOrderSkippingWhatWasTaken) {
  PinnedBlocks p;
  const auto t0 = Clock::now();
  p.pin("late", {1}, t0 + 30s);
  p.pin("early", {2}, t0 + 10s);
  p.pin("taken", {3}, t0 + 5s);
  p.pin("middle", {4, 5}, t0 + 20s);
  ASSERT_TRUE(p.take("taken"));
  EXPECT_EQ(p.next_deadline(), t0 + 10s);  // the taken pin's earlier deadline no longer counts
  Expired out;
  p.take_expired(t0 + 9s, out);
  EXPECT_TRUE(out.empty());
  p.take_expired(t0 + 20s, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].first, "early");
  EXPECT_EQ(out[1].first, "middle");
  EXPECT_EQ(out[1].second, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(p.next_deadline(), t0 + 30s);
  EXPECT_EQ(p.n_blocks(), 1);
  // An id taken and pinned again expires at its new deadline, not its old one.
  ASSERT_TRUE(p.take("late"));
  p.pin("late", {6}, t0 + 40s);
  out.clear();
  p.take_expired(t0 + 35s, out);
  EXPECT_TRUE(out.empty());
  p.take_expired(t0 + 40s, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second, (std::vector<int32_t>{6}));
  EXPECT_EQ(p.next_deadline(), std::nullopt);
  EXPECT_EQ(p.size(), 0u);
}

}  // namespace
}  // namespace llmd::engine
