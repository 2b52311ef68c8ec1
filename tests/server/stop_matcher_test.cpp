#include "server/stop_matcher.hpp"

#include <gtest/gtest.h>

namespace llmd::server {
namespace {

std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += m.push(p);
  return out;
}

TEST(StopMatcher, StopsAtTheFirstStopStringAcrossPieces) {
  StopMatcher m({"\n\n", "END"});
  EXPECT_EQ(feed(m, {"Hello", " wor", "ld E", "N", "D and more"}), "Hello world ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("ignored"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, HoldsBackOnlyWhatCouldStillMatch) {
  StopMatcher m({"stop here"});
  EXPECT_EQ(m.push("a sto"), "a ");  // "sto" may begin "stop here"
  EXPECT_EQ(m.push("ry"), "story");  // it did not
  EXPECT_EQ(m.push(" st"), " ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.flush(), "st");  // generation ended for another reason: nothing is lost
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"cd", "b"});
  EXPECT_EQ(m.push("abcd"), "a");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_EQ(feed(m, {"x", "y"}), "xy");
  EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace llmd::server
