#include "kv/kv_event_batch.hpp"

#include <bit>
#include <msgpack.hpp>

#include "common/error.hpp"

namespace llmd::kv {

void KvEventBatch::add_stored(std::span<const BlockHash> hashes, const BlockHash* parent,
                              std::span<const int32_t> token_ids, int32_t block_size) {
  if (hashes.empty()) return;
  if (token_ids.size() != hashes.size() * static_cast<size_t>(block_size)) {
    fail("BlockStored of {} blocks of {} tokens carries {} token ids", hashes.size(), block_size,
         token_ids.size());
  }
  const bool continues = !events_.empty() && events_.back().kind == Kind::kStored &&
                         events_.back().block_size == block_size && parent != nullptr &&
                         *parent == hashes_.back();
  if (!continues) {
    Event e;
    e.kind = Kind::kStored;
    e.has_parent = parent != nullptr;
    e.block_size = block_size;
    e.hash_begin = static_cast<uint32_t>(hashes_.size());
    e.token_begin = static_cast<uint32_t>(tokens_.size());
    if (parent) e.parent = *parent;
    events_.push_back(e);
  }
  hashes_.insert(hashes_.end(), hashes.begin(), hashes.end());
  tokens_.insert(tokens_.end(), token_ids.begin(), token_ids.end());
  events_.back().hash_count += static_cast<uint32_t>(hashes.size());
  events_.back().token_count += static_cast<uint32_t>(token_ids.size());
  weight_ += hashes.size();
}

void KvEventBatch::add_removed(std::span<const BlockHash> hashes) {
  if (hashes.empty()) return;
  if (events_.empty() || events_.back().kind != Kind::kRemoved) {
    Event e;
    e.kind = Kind::kRemoved;
    e.hash_begin = static_cast<uint32_t>(hashes_.size());
    events_.push_back(e);
  }
  hashes_.insert(hashes_.end(), hashes.begin(), hashes.end());
  events_.back().hash_count += static_cast<uint32_t>(hashes.size());
  weight_ += hashes.size();
}

void KvEventBatch::add_cleared() {
  Event e;
  e.kind = Kind::kCleared;
  events_.push_back(e);
  weight_ += 1;
}

void KvEventBatch::clear() {
  events_.clear();
  hashes_.clear();
  tokens_.clear();
  weight_ = 0;
}

namespace {

struct StringStream {
  std::string& s;
  void write(const char* p, size_t n) { s.append(p, n); }
};
using Packer = msgpack::packer<StringStream>;

void pack_hash(Packer& pk, const BlockHash& h) {
  const auto b = to_wire_bytes(h);
  pk.pack_bin(static_cast<uint32_t>(b.size()));
  pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
}

void pack_str(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// msgpack-cxx 4 packs a double with an integral value as an integer; vLLM's ts is always a float64
// on the wire, so write the 0xcb form directly.
void pack_float64(StringStream& stream, double v) {
  const auto bits = std::bit_cast<uint64_t>(v);
  char b[9];
  b[0] = static_cast<char>(0xcb);
  for (int i = 0; i < 8; ++i) b[1 + i] = static_cast<char>(bits >> (8 * (7 - i)));
  stream.write(b, sizeof b);
}

}  // namespace

void encode_payload(const KvEventBatch& batch, double ts, std::optional<int32_t> dp_rank,
                    std::string_view medium, std::string& out) {
  out.clear();
  StringStream stream{out};
  Packer pk(stream);
  pk.pack_array(dp_rank ? 3 : 2);
  pack_float64(stream, ts);
  pk.pack_array(static_cast<uint32_t>(batch.events().size()));
  for (const auto& e : batch.events()) {
    switch (e.kind) {
      case KvEventBatch::Kind::kStored: {
        pk.pack_array(7);
        pack_str(pk, "BlockStored");
        const auto hashes = batch.hashes(e);
        pk.pack_array(static_cast<uint32_t>(hashes.size()));
        for (const auto& h : hashes) pack_hash(pk, h);
        if (e.has_parent) {
          pack_hash(pk, e.parent);
        } else {
          pk.pack_nil();
        }
        const auto tokens = batch.tokens(e);
        pk.pack_array(static_cast<uint32_t>(tokens.size()));
        for (int32_t t : tokens) pk.pack_int32(t);
        pk.pack_int32(e.block_size);
        pk.pack_nil();  // lora_id
        pack_str(pk, medium);
        break;
      }
      case KvEventBatch::Kind::kRemoved: {
        pk.pack_array(3);
        pack_str(pk, "BlockRemoved");
        const auto hashes = batch.hashes(e);
        pk.pack_array(static_cast<uint32_t>(hashes.size()));
        for (const auto& h : hashes) pack_hash(pk, h);
        pack_str(pk, medium);
        break;
      }
      case KvEventBatch::Kind::kCleared:
        pk.pack_array(1);
        pack_str(pk, "AllBlocksCleared");
        break;
    }
  }
  if (dp_rank) pk.pack_int32(*dp_rank);
}

std::string encode_sequence(uint64_t seq) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(seq >> (8 * (7 - i)));
  return s;
}

}  // namespace llmd::kv
