#include "kv/transfer/wire.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace llmd::kv::transfer::wire {
namespace {

KvLayout layout_160m() {
  return {.n_segments = 24,
          .segment_bytes = 24 << 10,
          .segment_stride = 64ull * (24 << 10),
          .n_blocks = 64,
          .block_size = 16,
          .dtype = 0};
}

// Splits an encoded frame into its header and payload, checking the header's length.
std::pair<FrameHeader, std::vector<uint8_t>> split(const Bytes& frame) {
  EXPECT_GE(frame.size(), kFrameHeaderBytes);
  const auto h = decode_header(std::span<const uint8_t, kFrameHeaderBytes>(frame.data(), kFrameHeaderBytes));
  EXPECT_TRUE(h.has_value());
  EXPECT_EQ(h->payload_len, frame.size() - kFrameHeaderBytes);
  return {*h, std::vector<uint8_t>(frame.begin() + kFrameHeaderBytes, frame.end())};
}

template <class T>
void fill(T& a, uint8_t first) {
  for (auto& x : a) x = first++;
}

TEST(TransferWire, HelloRoundTrip) {
  Hello in;
  fill(in.nonce, 1);
  in.engine_id = "0123456789abcdef0123456789abcdef";
  fill(in.boot_id, 100);
  in.shm_name = "llmd-kvt/x";
  in.ucx = 1;
  in.layout = layout_160m();
  in.fingerprint = "llama:123456";
  Bytes f;
  ASSERT_TRUE(encode(in, f));
  const auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kHello);
  EXPECT_EQ(f[0], 1);  // little-endian type
  EXPECT_EQ(std::memcmp(p.data(), "LKVT", 4), 0);
  Hello out;
  ASSERT_TRUE(decode(p, out));
  EXPECT_EQ(out.version, kVersion);
  EXPECT_EQ(out.nonce, in.nonce);
  EXPECT_EQ(out.engine_id, in.engine_id);
  EXPECT_EQ(out.boot_id, in.boot_id);
  EXPECT_EQ(out.shm_name, in.shm_name);
  EXPECT_EQ(out.ucx, 1);
  EXPECT_EQ(out.layout, in.layout);
  EXPECT_EQ(out.fingerprint, in.fingerprint);
}

TEST(TransferWire, AuthAndAuthOkRoundTrip) {
  Auth a;
  fill(a.nonce, 3);
  fill(a.mac, 77);
  Bytes f;
  encode(a, f);
  auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kAuth);
  Auth a2;
  ASSERT_TRUE(decode(p, a2));
  EXPECT_EQ(a2.nonce, a.nonce);
  EXPECT_EQ(a2.mac, a.mac);

  AuthOk ok;
  fill(ok.mac, 9);
  f.clear();
  encode(ok, f);
  auto [h2, p2] = split(f);
  EXPECT_EQ(h2.type, FrameType::kAuthOk);
  AuthOk ok2;
  ASSERT_TRUE(decode(p2, ok2));
  EXPECT_EQ(ok2.mac, ok.mac);
}

TEST(TransferWire, ReadRoundTripAndExactLength) {
  const Read in{.xfer_id = 0x1122334455667788, .request_id = "cmpl-42", .blocks = {7, 0, 65535}};
  Bytes f;
  ASSERT_TRUE(encode(in, f));
  const auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kRead);
  EXPECT_EQ(p.size(), 8 + 2 + in.request_id.size() + 4 + 4 * in.blocks.size());
  Read out;
  ASSERT_TRUE(decode(p, 65536, out));
  EXPECT_EQ(out.xfer_id, in.xfer_id);
  EXPECT_EQ(out.request_id, in.request_id);
  EXPECT_EQ(out.blocks, in.blocks);
}

TEST(TransferWire, BlockHeaderRoundTrip) {
  const BlockHeader in{.xfer_id = 5, .index = 3, .key = {0xaaaa, 0xbbbb}, .checksum = 0xdeadbeef};
  std::array<uint8_t, kBlockFrameHeaderBytes> buf;
  encode_block_header(in, 589824, buf);
  const auto h = decode_header(std::span<const uint8_t, kFrameHeaderBytes>(buf.data(), kFrameHeaderBytes));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->type, FrameType::kBlock);
  EXPECT_TRUE(check_block_length(*h, 589824));
  EXPECT_EQ(check_block_length(*h, 589823).error(), WireError::kBadLength);
  BlockHeader out;
  ASSERT_TRUE(decode(
      std::span<const uint8_t, kBlockHeaderPayload>(buf.data() + kFrameHeaderBytes, kBlockHeaderPayload),
      out));
  EXPECT_EQ(out.xfer_id, 5u);
  EXPECT_EQ(out.index, 3u);
  EXPECT_EQ(out.key, in.key);
  EXPECT_EQ(out.checksum, in.checksum);
}

TEST(TransferWire, ReadDoneReleaseErrorRoundTrip) {
  Bytes f;
  ASSERT_TRUE(encode(ReadDone{.xfer_id = 9, .status = 6, .msg = "bad block"}, f));
  auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kReadDone);
  ReadDone d;
  ASSERT_TRUE(decode(p, d));
  EXPECT_EQ(d.xfer_id, 9u);
  EXPECT_EQ(d.status, 6);
  EXPECT_EQ(d.msg, "bad block");

  f.clear();
  ASSERT_TRUE(encode(Release{.request_id = "r1", .outcome = 2}, f));
  auto [h2, p2] = split(f);
  EXPECT_EQ(h2.type, FrameType::kRelease);
  Release r;
  ASSERT_TRUE(decode(p2, r));
  EXPECT_EQ(r.request_id, "r1");
  EXPECT_EQ(r.outcome, 2);

  f.clear();
  ASSERT_TRUE(encode(Error{.code = 2, .msg = "wrong secret"}, f));
  auto [h3, p3] = split(f);
  EXPECT_EQ(h3.type, FrameType::kError);
  Error e;
  ASSERT_TRUE(decode(p3, e));
  EXPECT_EQ(e.code, 2);
  EXPECT_EQ(e.msg, "wrong secret");
}

// Every proper prefix of a payload is kTruncated, and one byte more is kTrailing. The prefix is
// copied into a buffer of exactly its size so that a read past it would be caught by ASan.
template <class F>
void check_prefixes_and_extra(const std::vector<uint8_t>& p, F decode_fn) {
  for (size_t n = 0; n < p.size(); ++n) {
    const std::vector<uint8_t> cut(p.begin(), p.begin() + n);
    const auto st = decode_fn(std::span<const uint8_t>(cut));
    ASSERT_FALSE(st) << "prefix " << n;
    EXPECT_EQ(st.error(), WireError::kTruncated) << "prefix " << n;
  }
  std::vector<uint8_t> extra = p;
  extra.push_back(0);
  const auto st = decode_fn(std::span<const uint8_t>(extra));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error(), WireError::kTrailing);
}

TEST(TransferWire, TruncatedAndExtraBytesAreErrors) {
  Bytes f;
  Hello hello;
  hello.engine_id = "e";
  hello.layout = layout_160m();
  hello.fingerprint = "fp";
  ASSERT_TRUE(encode(hello, f));
  Hello h;
  check_prefixes_and_extra(split(f).second, [&](auto s) { return decode(s, h); });

  f.clear();
  encode(Auth{}, f);
  Auth a;
  check_prefixes_and_extra(split(f).second, [&](auto s) { return decode(s, a); });

  f.clear();
  ASSERT_TRUE(encode(Read{.xfer_id = 1, .request_id = "abc", .blocks = {1, 2, 3}}, f));
  Read r;
  check_prefixes_and_extra(split(f).second, [&](auto s) { return decode(s, 100, r); });

  f.clear();
  ASSERT_TRUE(encode(ReadDone{.xfer_id = 1, .status = 0, .msg = "ok"}, f));
  ReadDone d;
  check_prefixes_and_extra(split(f).second, [&](auto s) { return decode(s, d); });

  f.clear();
  ASSERT_TRUE(encode(Release{.request_id = "x", .outcome = 0}, f));
  Release rel;
  check_prefixes_and_extra(split(f).second, [&](auto s) { return decode(s, rel); });

  f.clear();
  ASSERT_TRUE(encode(Error{.code = 1, .msg = "m"}, f));
  Error e;
  check_prefixes_and_extra(split(f).second, [&](auto s) { return decode(s, e); });
}

// READ's payload by hand: u64 xfer | str id | u32 n | the given block bytes.
std::vector<uint8_t> read_payload(uint32_t n, size_t listed) {
  std::vector<uint8_t> p(8, 0);
  p.push_back(1);
  p.push_back(0);
  p.push_back('r');
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(n >> (8 * i)));
  p.resize(p.size() + 4 * listed, 0);
  return p;
}

TEST(TransferWire, ReadCountsAreChecked) {
  Read r;
  EXPECT_EQ(decode(read_payload(0, 0), 100, r).error(), WireError::kBadValue);     // n = 0
  EXPECT_EQ(decode(read_payload(101, 101), 100, r).error(), WireError::kOverCap);  // over the layout's blocks
  EXPECT_EQ(decode(read_payload(65537, 0), 1 << 20, r).error(), WireError::kOverCap);
  // A huge n with a short payload fails before the list is sized.
  EXPECT_EQ(decode(read_payload(0xffffffff, 1), 0xffffffff, r).error(), WireError::kOverCap);
  EXPECT_EQ(decode(read_payload(3, 2), 100, r).error(), WireError::kTruncated);
  EXPECT_EQ(decode(read_payload(3, 4), 100, r).error(), WireError::kTrailing);
  EXPECT_TRUE(decode(read_payload(3, 3), 100, r));
  EXPECT_EQ(r.blocks.size(), 3u);
  // The encoder refuses what the decoder would.
  Bytes f;
  EXPECT_EQ(encode(Read{.xfer_id = 1, .request_id = "r", .blocks = {}}, f).error(), WireError::kBadValue);
  EXPECT_EQ(encode(Read{.xfer_id = 1, .request_id = "r", .blocks = std::vector<uint32_t>(65537)}, f).error(),
            WireError::kOverCap);
  EXPECT_TRUE(f.empty());
}

TEST(TransferWire, StringsOverTheirCapsAreErrors) {
  Bytes f;
  EXPECT_EQ(
      encode(Read{.xfer_id = 1, .request_id = std::string(kMaxRequestId + 1, 'x'), .blocks = {1}}, f).error(),
      WireError::kOverCap);
  Hello big;
  big.engine_id = std::string(kMaxEngineId + 1, 'e');
  EXPECT_EQ(encode(big, f).error(), WireError::kOverCap);
  EXPECT_TRUE(f.empty());

  // By hand: a request id of 257 bytes, all present.
  std::vector<uint8_t> p(8, 0);
  p.push_back((kMaxRequestId + 1) & 0xff);
  p.push_back((kMaxRequestId + 1) >> 8);
  p.resize(p.size() + kMaxRequestId + 1, 'x');
  p.insert(p.end(), {1, 0, 0, 0, 0, 0, 0, 0});
  Read r;
  EXPECT_EQ(decode(p, 100, r).error(), WireError::kOverCap);

  // A fingerprint claiming 65535 bytes in a short HELLO.
  Hello h;
  h.layout = layout_160m();
  ASSERT_TRUE(encode(h, f));
  std::vector<uint8_t> hp = split(f).second;
  hp[hp.size() - 2] = 0xff;
  hp[hp.size() - 1] = 0xff;
  Hello out;
  EXPECT_EQ(decode(hp, out).error(), WireError::kOverCap);
}

TEST(TransferWire, HelloWithOtherMagicOrVersionIsRefused) {
  Bytes f;
  Hello h;
  ASSERT_TRUE(encode(h, f));
  std::vector<uint8_t> p = split(f).second;
  Hello out;
  auto bad = p;
  bad[0] ^= 1;
  EXPECT_EQ(decode(bad, out).error(), WireError::kBadValue);
  bad = p;
  bad[4] = 2;
  EXPECT_EQ(decode(bad, out).error(), WireError::kBadValue);
}

TEST(TransferWire, HeadersOfUnknownTypesOrOversizedControlFramesAreErrors) {
  const auto header = [](uint16_t type, uint32_t len) {
    std::array<uint8_t, kFrameHeaderBytes> b{};
    b[0] = type & 0xff;
    b[1] = type >> 8;
    for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<uint8_t>(len >> (8 * i));
    return decode_header(b);
  };
  EXPECT_EQ(header(0, 0).error(), WireError::kUnknownType);
  EXPECT_EQ(header(15, 0).error(), WireError::kUnknownType);                   // not spoken by this version
  EXPECT_TRUE(header(7, 0));                                                   // LEASE
  EXPECT_EQ(header(8, kMaxControlPayload + 1).error(), WireError::kTooLarge);  // LEASE_OK is a control frame
  EXPECT_EQ(header(0xffff, 0).error(), WireError::kUnknownType);
  EXPECT_EQ(header(4, kMaxControlPayload + 1).error(), WireError::kTooLarge);
  EXPECT_TRUE(header(4, kMaxControlPayload));
  EXPECT_TRUE(header(5, 0xffffffff));  // BLOCK: checked against the layout instead
  const auto block = header(5, 100);
  EXPECT_EQ(check_block_length(*block, 100).error(), WireError::kBadLength);
  EXPECT_TRUE(check_block_length(*block, 100 - kBlockHeaderPayload));
}

TEST(TransferWire, ReleaseWithUnknownOutcomeIsRefused) {
  Bytes f;
  ASSERT_TRUE(encode(Release{.request_id = "x", .outcome = 3}, f));
  Release r;
  EXPECT_EQ(decode(split(f).second, r).error(), WireError::kBadValue);
}

TEST(TransferWire, LeaseRoundTripAndCounts) {
  const Lease in{.xfer_id = 77, .request_id = "cmpl-7", .blocks = {3, 0, 9}};
  Bytes f;
  ASSERT_TRUE(encode(in, f));
  const auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kLease);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(p.size(), 8 + 2 + in.request_id.size() + 4 + 4 * in.blocks.size());
  Lease out;
  ASSERT_TRUE(decode(p, 100, out));
  EXPECT_EQ(out.xfer_id, 77u);
  EXPECT_EQ(out.request_id, "cmpl-7");
  EXPECT_EQ(out.blocks, in.blocks);
  check_prefixes_and_extra(p, [&](auto s) { return decode(s, 100, out); });

  // Same payload shape as READ, with LEASE's own cap (LEASE_OK must fit a control frame).
  EXPECT_EQ(decode(read_payload(0, 0), 100, out).error(), WireError::kBadValue);
  EXPECT_EQ(decode(read_payload(4, 4), 3, out).error(), WireError::kOverCap);
  EXPECT_EQ(decode(read_payload(kMaxLeaseBlocks + 1, 0), 1 << 20, out).error(), WireError::kOverCap);
  EXPECT_EQ(decode(read_payload(0xffffffff, 1), 0xffffffff, out).error(), WireError::kOverCap);
  EXPECT_EQ(decode(read_payload(3, 2), 100, out).error(), WireError::kTruncated);
  EXPECT_TRUE(decode(read_payload(3, 3), 100, out));
  f.clear();
  EXPECT_EQ(encode(Lease{.xfer_id = 1, .request_id = "r", .blocks = {}}, f).error(), WireError::kBadValue);
  EXPECT_EQ(
      encode(Lease{.xfer_id = 1, .request_id = "r", .blocks = std::vector<uint32_t>(kMaxLeaseBlocks + 1)}, f)
          .error(),
      WireError::kOverCap);
  EXPECT_TRUE(f.empty());
}

TEST(TransferWire, LeaseOkRoundTripAndCounts) {
  LeaseOk in{.xfer_id = 5, .blocks = {{{1, 2}, 0x1111}, {{3, 4}, 0x2222}}};
  Bytes f;
  ASSERT_TRUE(encode(in, f));
  const auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kLeaseOk);
  EXPECT_EQ(p.size(), 12 + kLeaseOkEntryBytes * 2);
  LeaseOk out;
  ASSERT_TRUE(decode(p, 2, out));
  EXPECT_EQ(out.xfer_id, 5u);
  ASSERT_EQ(out.blocks.size(), 2u);
  EXPECT_EQ(out.blocks[1].key, (BlockHash{3, 4}));
  EXPECT_EQ(out.blocks[1].checksum, 0x2222u);
  check_prefixes_and_extra(p, [&](auto s) { return decode(s, 2, out); });
  // More entries than the reader leased, zero entries, a count the bytes do not back.
  EXPECT_EQ(decode(p, 1, out).error(), WireError::kOverCap);
  std::vector<uint8_t> zero(p.begin(), p.begin() + 12);
  zero[8] = zero[9] = zero[10] = zero[11] = 0;
  EXPECT_EQ(decode(zero, 2, out).error(), WireError::kBadValue);
  std::vector<uint8_t> huge(p.begin(), p.begin() + 12);
  huge[8] = huge[9] = huge[10] = huge[11] = 0xff;
  EXPECT_EQ(decode(huge, 0xffffffff, out).error(), WireError::kOverCap);
  std::vector<uint8_t> short_list(p.begin(), p.end() - 1);
  EXPECT_EQ(decode(short_list, 2, out).error(), WireError::kTruncated);
  f.clear();
  EXPECT_EQ(encode(LeaseOk{.xfer_id = 1, .blocks = {}}, f).error(), WireError::kBadValue);
  EXPECT_TRUE(f.empty());
  // The largest LEASE_OK fits a control frame.
  LeaseOk big{.xfer_id = 1, .blocks = std::vector<LeasedBlock>(kMaxLeaseBlocks)};
  ASSERT_TRUE(encode(big, f));
  EXPECT_LE(f.size() - kFrameHeaderBytes, kMaxControlPayload);
}

TEST(TransferWire, DoneAndDoneOkRoundTrip) {
  Bytes f;
  encode(Done{.xfer_id = 0x0102030405060708}, f);
  auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kDone);
  Done d;
  ASSERT_TRUE(decode(p, d));
  EXPECT_EQ(d.xfer_id, 0x0102030405060708u);
  check_prefixes_and_extra(p, [&](auto s) { return decode(s, d); });

  f.clear();
  encode(DoneOk{.xfer_id = 9}, f);
  auto [h2, p2] = split(f);
  EXPECT_EQ(h2.type, FrameType::kDoneOk);
  DoneOk ok;
  ASSERT_TRUE(decode(p2, ok));
  EXPECT_EQ(ok.xfer_id, 9u);
  check_prefixes_and_extra(p2, [&](auto s) { return decode(s, ok); });
}

TEST(TransferWire, FlagsAreSetOnTheHeaderOnly) {
  Bytes f;
  encode(AuthOk{}, f);
  set_flags(f, kFlagFd);
  const auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kAuthOk);
  EXPECT_EQ(h.flags, kFlagFd);
  AuthOk ok;
  EXPECT_TRUE(decode(p, ok));
}

TEST(TransferWire, UcxInfoRoundTripAndCaps) {
  Bytes f;
  encode(UcxInfo{}, f);
  auto [h, p] = split(f);
  EXPECT_EQ(h.type, FrameType::kUcxInfo);
  UcxInfo req;
  EXPECT_TRUE(decode(p, req));
  const uint8_t extra[1] = {0};
  EXPECT_EQ(decode(extra, req).error(), WireError::kTrailing);

  const UcxInfoOk in{.base = 0x7f0012345000, .worker_address = std::string("\0\1addr", 6), .rkey = "rk"};
  f.clear();
  ASSERT_TRUE(encode(in, f));
  auto [h2, p2] = split(f);
  EXPECT_EQ(h2.type, FrameType::kUcxInfoOk);
  EXPECT_EQ(p2.size(), 8 + 2 + 6 + 2 + 2);
  UcxInfoOk out;
  ASSERT_TRUE(decode(p2, out));
  EXPECT_EQ(out.base, in.base);
  EXPECT_EQ(out.worker_address, in.worker_address);
  EXPECT_EQ(out.rkey, in.rkey);
  EXPECT_EQ(decode(std::span<const uint8_t>(p2).first(p2.size() - 1), out).error(), WireError::kTruncated);

  // Empty blobs are no UCX endpoint; blobs over the cap are refused on both sides.
  f.clear();
  ASSERT_TRUE(encode(UcxInfoOk{.base = 1, .worker_address = "a", .rkey = ""}, f));
  EXPECT_EQ(decode(split(f).second, out).error(), WireError::kBadValue);
  f.clear();
  UcxInfoOk big{.base = 1, .worker_address = std::string(kMaxUcxBlob + 1, 'x'), .rkey = "r"};
  EXPECT_EQ(encode(big, f).error(), WireError::kOverCap);
  EXPECT_TRUE(f.empty());
  // A peer that claims a longer blob than the cap is refused before the bytes are looked at.
  Bytes hostile = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  EXPECT_EQ(decode(hostile, out).error(), WireError::kOverCap);
}

}  // namespace
}  // namespace llmd::kv::transfer::wire
