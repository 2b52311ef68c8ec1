#pragma once
// One request's state on the engine thread: its tokens, how many of them have KV in the cache,
// its block table, and the keys of its full blocks.
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/block_hash.hpp"
#include "engine/request.hpp"
#include "engine/sampler.hpp"

namespace llmd::engine {

struct Sequence {
  uint64_t id = 0;
  RequestSpec spec;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t n_prompt = 0;
  int32_t n_computed = 0;  // leading tokens whose KV is in the cache
  int32_t n_cached = 0;    // prompt tokens served by the prefix cache at (last) admission
  std::vector<int32_t> blocks;
  BlockHash root;                 // h[-1]: model fingerprint and cache salt
  std::vector<BlockHash> hashes;  // keys of the leading full blocks known so far
  int32_t n_committed = 0;        // leading full blocks registered with the prefix cache
  std::unique_ptr<Sampler> sampler;
  int32_t n_preemptions = 0;

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t n_generated() const { return n_tokens() - n_prompt; }
  int32_t n_uncomputed() const { return n_tokens() - n_computed; }
};

}  // namespace llmd::engine
