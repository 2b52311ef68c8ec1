// The production KV-events decoder against the encoder's real output, vLLM's other shapes (int
// hashes, omitted trailing fields, unknown events), and hostile bytes: every malformed payload must
// be an error with a one-line reason, never a crash or a huge allocation (run under ASan too).
#include "kv/kv_event_decoder.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <msgpack.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kv/kv_event_batch.hpp"

namespace llmd::kv {
namespace {

using Kind = KvEventBatch::Kind;

std::vector<int32_t> iota_tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// A payload built by hand, for shapes our encoder never writes.
struct Packed {
  std::string bytes;
  void write(const char* p, size_t n) { bytes.append(p, n); }
};
using Packer = msgpack::packer<Packed>;

void str(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}
void bin(Packer& pk, size_t n, char fill = 'h') {
  const std::string b(n, fill);
  pk.pack_bin(static_cast<uint32_t>(n));
  pk.pack_bin_body(b.data(), static_cast<uint32_t>(n));
}
void hash16(Packer& pk, const BlockHash& h) {
  const auto b = to_wire_bytes(h);
  pk.pack_bin(16);
  pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), 16);
}

// A payload holding one event written by `event` (which packs the whole event array).
template <class F>
std::string one_event(F event) {
  Packed out;
  Packer pk(out);
  pk.pack_array(2);
  pk.pack_double(1.5);
  pk.pack_array(1);
  event(pk);
  return out.bytes;
}

std::string encoded_sample(std::optional<int32_t> dp_rank = 7, std::string_view medium = "CPU") {
  const BlockHash h0{0x1111, 0xa}, h1{0x2222, 0xb}, h2{0x3333, 0xc}, other{0x4444, 0xd};
  KvEventBatch batch;
  const auto t = iota_tokens(0, 12);
  batch.add_stored(std::span(&h0, 1), nullptr, std::span(t).first(4), 4);
  batch.add_stored(std::span(&h1, 1), &h0, std::span(t).subspan(4, 4), 4);  // coalesced with h0
  batch.add_stored(std::span(&h2, 1), &other, std::span(t).subspan(8, 4), 4);
  batch.add_removed(std::span(&h0, 1));
  batch.add_cleared();
  std::string payload;
  encode_payload(batch, 1234.25, dp_rank, medium, payload);
  return payload;
}

TEST(KvEventDecoder, DecodesTheEncodersOutput) {
  const std::string payload = encoded_sample();
  const std::string topic = "kv@10.0.0.1:8000@llama";
  const std::string seq = encode_sequence(0x0102030405060708ULL);
  const std::string_view frames[] = {topic, seq, payload};
  KvEventDecoder d;
  const auto ok = d.decode(frames);
  ASSERT_TRUE(ok) << ok.error();
  const KvEventMessage& m = d.message();
  EXPECT_EQ(m.topic, topic);
  EXPECT_EQ(m.seq, 0x0102030405060708ULL);
  EXPECT_EQ(m.ts, 1234.25);
  EXPECT_EQ(m.dp_rank, 7);
  EXPECT_EQ(m.unknown_events, 0u);
  ASSERT_EQ(m.events.size(), 4u);

  EXPECT_EQ(m.events[0].kind, Kind::kStored);
  EXPECT_EQ(m.events[0].hashes, (std::vector<uint64_t>{0x1111, 0x2222}));
  EXPECT_FALSE(m.events[0].parent);
  EXPECT_EQ(m.events[0].block_size, 4);
  EXPECT_EQ(m.events[0].token_count, 8u);
  EXPECT_EQ(m.events[0].medium, "CPU");

  EXPECT_EQ(m.events[1].kind, Kind::kStored);
  EXPECT_EQ(m.events[1].hashes, (std::vector<uint64_t>{0x3333}));
  EXPECT_EQ(m.events[1].parent, 0x4444u);
  EXPECT_EQ(m.events[1].token_count, 4u);

  EXPECT_EQ(m.events[2].kind, Kind::kRemoved);
  EXPECT_EQ(m.events[2].hashes, (std::vector<uint64_t>{0x1111}));
  EXPECT_EQ(m.events[2].medium, "CPU");

  EXPECT_EQ(m.events[3].kind, Kind::kCleared);
  EXPECT_TRUE(m.events[3].hashes.empty());

  // Without a dp_rank the payload has two elements.
  ASSERT_TRUE(d.decode_payload(encoded_sample(std::nullopt, "GPU")));
  EXPECT_FALSE(d.message().dp_rank);
  EXPECT_EQ(d.message().events[0].medium, "GPU");
}

TEST(KvEventDecoder, ReusesEventStorageAcrossMessages) {
  std::vector<BlockHash> many(1000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = {i + 1, 0};
  KvEventBatch big;
  const auto t = iota_tokens(0, 1000);
  big.add_stored(many, nullptr, t, 1);
  std::string payload;
  encode_payload(big, 1.0, std::nullopt, "GPU", payload);
  KvEventDecoder d;
  ASSERT_TRUE(d.decode_payload(payload));
  ASSERT_EQ(d.message().events[0].hashes.size(), 1000u);
  EXPECT_EQ(d.message().events[0].hashes[999], 1000u);
  const uint64_t* storage = d.message().events[0].hashes.data();

  ASSERT_TRUE(d.decode_payload(encoded_sample()));
  EXPECT_EQ(d.message().events.size(), 4u);
  EXPECT_EQ(d.message().events[0].hashes.data(), storage);  // same buffer, no new allocation
  EXPECT_GE(d.message().events[0].hashes.capacity(), 1000u);
}

TEST(KvEventDecoder, AcceptsIntHashesOmittedFieldsAndUnknownEvents) {
  Packed out;
  Packer pk(out);
  pk.pack_array(4);  // a fourth payload element from some future version: ignored
  pk.pack_double(2.5);
  pk.pack_array(5);
  // vLLM's int hashes; no lora_id/medium (msgspec omit_defaults).
  pk.pack_array(5);
  str(pk, "BlockStored");
  pk.pack_array(2);
  pk.pack_uint64(7);
  pk.pack_int64(-1);
  pk.pack_uint64(5);  // parent as an int
  pk.pack_array(4);
  for (int i = 0; i < 4; ++i) pk.pack_uint32(i);
  pk.pack_uint32(2);
  // An event this decoder does not know, with nested content and a map: skipped and counted.
  pk.pack_array(3);
  str(pk, "SomeFutureEvent");
  pk.pack_map(1);
  str(pk, "k");
  pk.pack_array(1);
  pk.pack_nil();
  bin(pk, 3);
  // BlockRemoved with a nil medium.
  pk.pack_array(3);
  str(pk, "BlockRemoved");
  pk.pack_array(1);
  hash16(pk, {0xabc, 0xdef});
  pk.pack_nil();
  pk.pack_array(4);  // a known event with fields past the ones we read
  str(pk, "AllBlocksCleared");
  pk.pack_true();
  str(pk, "x");
  pk.pack_map(0);
  // A second BlockStored whose medium is nil.
  pk.pack_array(7);
  str(pk, "BlockStored");
  pk.pack_array(0);
  pk.pack_nil();
  pk.pack_array(0);
  pk.pack_uint32(16);
  pk.pack_uint32(3);  // lora_id
  pk.pack_nil();
  pk.pack_nil();  // dp_rank nil
  pk.pack_array(0);

  KvEventDecoder d;
  const auto ok = d.decode_payload(out.bytes);
  ASSERT_TRUE(ok) << ok.error();
  const auto& m = d.message();
  EXPECT_EQ(m.unknown_events, 1u);
  EXPECT_FALSE(m.dp_rank);
  ASSERT_EQ(m.events.size(), 4u);
  EXPECT_EQ(m.events[0].hashes, (std::vector<uint64_t>{7, ~uint64_t{0}}));
  EXPECT_EQ(m.events[0].parent, 5u);
  EXPECT_EQ(m.events[0].block_size, 2);
  EXPECT_EQ(m.events[0].medium, "");
  EXPECT_EQ(m.events[1].kind, Kind::kRemoved);
  EXPECT_EQ(m.events[1].hashes, (std::vector<uint64_t>{0xabc}));
  EXPECT_EQ(m.events[1].medium, "");
  EXPECT_EQ(m.events[2].kind, Kind::kCleared);
  EXPECT_EQ(m.events[3].kind, Kind::kStored);
  EXPECT_TRUE(m.events[3].hashes.empty());
}

TEST(KvEventDecoder, TruncationAtEveryByteIsAnError) {
  const std::string payload = encoded_sample();
  KvEventDecoder d;
  for (size_t n = 0; n < payload.size(); ++n) {
    const auto r = d.decode_payload(std::string_view(payload).substr(0, n));
    EXPECT_FALSE(r) << "prefix of " << n << " bytes decoded";
  }
  EXPECT_TRUE(d.decode_payload(payload));
  const auto trailing = d.decode_payload(payload + '\x00');
  ASSERT_FALSE(trailing);
  EXPECT_NE(trailing.error().find("trailing"), std::string::npos) << trailing.error();
}

std::string raw(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

// [1.5 (float64)] as the first bytes of a two-element payload.
std::string ts_prefix() {
  return raw({0x92, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0});
}

TEST(KvEventDecoder, MalformedPayloadsAreErrors) {
  struct Case {
    const char* name;
    std::string payload;
  };
  const std::string long_medium(100, 'm');
  // [ts, [], nil, [[[...]]]]: the ignored fourth element nested 100 deep.
  std::string deep = raw({0x94, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x90, 0xc0});
  for (int i = 0; i < 100; ++i) deep += raw({0x91});
  deep += raw({0xc0});

  const std::vector<Case> cases = {
      {"empty", ""},
      {"invalid byte 0xc1", raw({0xc1})},
      {"root is an int", raw({0x05})},
      {"root is a map", raw({0x80})},
      {"root has one element", raw({0x91, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0})},
      {"timestamp is a str", raw({0x92, 0xa1, 'x', 0x90})},
      {"timestamp is an array", raw({0x92, 0x90, 0x90})},
      {"events is a map", ts_prefix() + raw({0x80})},
      {"events is nil", ts_prefix() + raw({0xc0})},
      {"event is an int", ts_prefix() + raw({0x91, 0x01})},
      {"event is empty", ts_prefix() + raw({0x91, 0x90})},
      {"tag is an int", ts_prefix() + raw({0x91, 0x91, 0x01})},
      {"tag is an array", ts_prefix() + raw({0x91, 0x91, 0x90})},
      {"dp_rank is a str", raw({0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0xa1, 'x'})},
      {"dp_rank too large", raw({0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0xce, 0xff, 0xff, 0xff, 0xff})},
      {"BlockStored with 4 fields", one_event([](Packer& pk) {
         pk.pack_array(4);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(0);
       })},
      {"BlockRemoved without hashes", one_event([](Packer& pk) {
         pk.pack_array(1);
         str(pk, "BlockRemoved");
       })},
      {"hashes is a bin", one_event([](Packer& pk) {
         pk.pack_array(3);
         str(pk, "BlockRemoved");
         bin(pk, 16);
         pk.pack_nil();
       })},
      {"hash of 15 bytes", one_event([](Packer& pk) {
         pk.pack_array(3);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         bin(pk, 15);
         pk.pack_nil();
       })},
      {"hash of 17 bytes", one_event([](Packer& pk) {
         pk.pack_array(3);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         bin(pk, 17);
         pk.pack_nil();
       })},
      {"hash of 32 bytes", one_event([](Packer& pk) {
         pk.pack_array(2);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         bin(pk, 32);
       })},
      {"hash is a str", one_event([](Packer& pk) {
         pk.pack_array(2);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         str(pk, "0123456789abcdef");
       })},
      {"hash is nil", one_event([](Packer& pk) {
         pk.pack_array(2);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         pk.pack_nil();
       })},
      {"hash is a float", one_event([](Packer& pk) {
         pk.pack_array(2);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         pk.pack_double(1.5);
       })},
      {"hash is an array", one_event([](Packer& pk) {
         pk.pack_array(2);
         str(pk, "BlockRemoved");
         pk.pack_array(1);
         pk.pack_array(0);
       })},
      {"parent is a str", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         str(pk, "p");
         pk.pack_array(0);
         pk.pack_uint32(16);
       })},
      {"token_ids is a map", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_map(0);
         pk.pack_uint32(16);
       })},
      {"token id is a str", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(1);
         str(pk, "t");
         pk.pack_uint32(16);
       })},
      {"token id is negative", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(1);
         pk.pack_int32(-3);
         pk.pack_uint32(16);
       })},
      {"block_size is 0", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(0);
         pk.pack_uint32(0);
       })},
      {"block_size is negative", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(0);
         pk.pack_int32(-16);
       })},
      {"block_size is a str", one_event([](Packer& pk) {
         pk.pack_array(5);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(0);
         str(pk, "16");
       })},
      {"lora_id is a str", one_event([](Packer& pk) {
         pk.pack_array(6);
         str(pk, "BlockStored");
         pk.pack_array(0);
         pk.pack_nil();
         pk.pack_array(0);
         pk.pack_uint32(16);
         str(pk, "lora");
       })},
      {"medium is an int", one_event([](Packer& pk) {
         pk.pack_array(3);
         str(pk, "BlockRemoved");
         pk.pack_array(0);
         pk.pack_uint32(1);
       })},
      {"medium is too long", one_event([&](Packer& pk) {
         pk.pack_array(3);
         str(pk, "BlockRemoved");
         pk.pack_array(0);
         str(pk, long_medium);
       })},
      // Declared lengths far past the bytes present: must fail fast without allocating them.
      {"array32 of 2^32-1 events", ts_prefix() + raw({0xdd, 0xff, 0xff, 0xff, 0xff})},
      {"array32 of 2^32-1 hashes",
       ts_prefix() + raw({0x91, 0x92, 0xac}) + "BlockRemoved" + raw({0xdd, 0xff, 0xff, 0xff, 0xff})},
      {"nested huge arrays", raw({0xdd, 0xff, 0xff, 0xff, 0xff, 0xcb, 0,    0,    0,    0,    0,    0,
                                  0,    0,    0xdd, 0xff, 0xff, 0xff, 0xff, 0xdd, 0xff, 0xff, 0xff, 0xff})},
      {"bin32 of 4 GiB", ts_prefix() + raw({0x91, 0x92, 0xac}) + "BlockRemoved" +
                             raw({0x91, 0xc6, 0xff, 0xff, 0xff, 0xff, 'a'})},
      {"str32 of 4 GiB tag", ts_prefix() + raw({0x91, 0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, 'B'})},
      {"map32 of 2^32-1 pairs in an ignored field",
       raw({0x94, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0xc0, 0xdf, 0xff, 0xff, 0xff, 0xff})},
      {"nesting 100 deep", deep},
  };
  KvEventDecoder d;
  for (const Case& c : cases) {
    const auto r = d.decode_payload(c.payload);
    ASSERT_FALSE(r) << c.name << " decoded";
    EXPECT_FALSE(r.error().empty()) << c.name;
    EXPECT_EQ(r.error().find('\n'), std::string::npos) << c.name << ": " << r.error();
  }
  // And the decoder still works afterwards.
  EXPECT_TRUE(d.decode_payload(encoded_sample()));
}

TEST(KvEventDecoder, PayloadSizeLimit) {
  const std::string payload = encoded_sample();
  KvEventDecoder d({.max_payload_bytes = payload.size() - 1});
  const auto r = d.decode_payload(payload);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("limit"), std::string::npos) << r.error();
  KvEventDecoder fits({.max_payload_bytes = payload.size()});
  EXPECT_TRUE(fits.decode_payload(payload));
}

TEST(KvEventDecoder, Frames) {
  const std::string payload = encoded_sample();
  KvEventDecoder d;
  const std::string_view two[] = {"kv@a@b", payload};
  EXPECT_FALSE(d.decode(two));
  const std::string_view short_seq[] = {"kv@a@b", "1234567", payload};
  const auto r = d.decode(short_seq);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("sequence"), std::string::npos) << r.error();

  EXPECT_EQ(decode_sequence(encode_sequence(0)), 0u);
  EXPECT_EQ(decode_sequence(encode_sequence(~uint64_t{0})), ~uint64_t{0});
  EXPECT_EQ(decode_sequence(std::string("\x00\x00\x00\x00\x00\x00\x01\x02", 8)), 0x102u);
  EXPECT_FALSE(decode_sequence("123456789"));

  const auto t = parse_topic("kv@10.0.0.1:8000@meta-llama/Llama-3@x");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->prefix, "kv");
  EXPECT_EQ(t->host_port, "10.0.0.1:8000");
  EXPECT_EQ(t->model, "meta-llama/Llama-3@x");
  EXPECT_FALSE(parse_topic("kv-events"));
  EXPECT_FALSE(parse_topic("kv@host"));
}

// Random corruption of a real payload: whatever it decodes to, it must not crash (ASan checks
// the memory side).
TEST(KvEventDecoder, SurvivesRandomCorruption) {
  const std::string good = encoded_sample();
  std::mt19937 rng(12345);
  KvEventDecoder d;
  size_t decoded = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string p = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) p[rng() % p.size()] = static_cast<char>(rng());
    if (rng() % 4 == 0) p.resize(rng() % p.size());
    if (d.decode_payload(p)) ++decoded;
  }
  EXPECT_LT(decoded, 20000u);  // most corruptions are caught; the rest decode to something valid
}

}  // namespace
}  // namespace llmd::kv
