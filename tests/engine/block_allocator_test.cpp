#include "engine/block_allocator.hpp"

#include <gtest/gtest.h>

#include <set>

#include "common/error.hpp"

namespace llmd::engine {
namespace {

TEST(BlockAllocator, HandsOutEveryBlockOnceThenRunsOut) {
  BlockAllocator a(8);
  std::set<int32_t> seen;
  for (int i = 0; i < 8; ++i) {
    auto b = a.allocate();
    ASSERT_TRUE(b);
    EXPECT_TRUE(seen.insert(*b).second);
    EXPECT_EQ(a.ref_count(*b), 1);
  }
  EXPECT_EQ(a.n_free(), 0);
  EXPECT_FALSE(a.allocate());
}

TEST(BlockAllocator, SharedBlockIsFreedByItsLastHolder) {
  BlockAllocator a(2);
  const int32_t b = *a.allocate();
  a.ref(b);
  a.release(b);
  EXPECT_EQ(a.n_free(), 1);
  a.release(b);
  EXPECT_EQ(a.n_free(), 2);
  EXPECT_THROW(a.release(b), Error);
  EXPECT_THROW(a.ref(b), Error);
}

}  // namespace
}  // namespace llmd::engine
