#include "kv/transfer/wire.hpp"

#include <cstring>
#include <optional>

namespace llmd::kv::transfer::wire {
namespace {

// Appends little-endian fields to a frame whose header is patched with the payload length at the end.
class Writer {
 public:
  Writer(Bytes& out, FrameType type) : out_(out), start_(out.size()) {
    u16(static_cast<uint16_t>(type));
    u16(0);
    u32(0);  // payload_len, set by finish()
  }
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str(std::string_view s) {
    u16(static_cast<uint16_t>(s.size()));
    bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }
  void finish() {
    const uint64_t len = out_.size() - start_ - kFrameHeaderBytes;
    for (int i = 0; i < 4; ++i) out_[start_ + 4 + i] = static_cast<uint8_t>(len >> (8 * i));
  }

 private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes& out_;
  size_t start_;
};

// Reads fields in order; the first field that does not fit sets the error and every later read
// fails too, so a decoder checks once at the end (done()).
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool u8(uint8_t& v) { return get(v, 1); }
  bool u16(uint16_t& v) { return get(v, 2); }
  bool u32(uint32_t& v) { return get(v, 4); }
  bool i32(int32_t& v) {
    uint32_t u = 0;
    if (!get(u, 4)) return false;
    v = static_cast<int32_t>(u);
    return true;
  }
  bool u64(uint64_t& v) { return get(v, 8); }
  bool bytes(std::span<uint8_t> out) {
    if (!take(out.size())) return false;
    std::memcpy(out.data(), b_.data() + pos_ - out.size(), out.size());
    return true;
  }
  // The length is checked against the cap and the bytes left before anything is copied.
  bool str(std::string& out, size_t cap) {
    uint16_t n = 0;
    if (!u16(n)) return false;
    if (n > cap) return fail(WireError::kOverCap);
    if (!take(n)) return false;
    out.assign(reinterpret_cast<const char*>(b_.data() + pos_ - n), n);
    return true;
  }
  size_t left() const { return b_.size() - pos_; }
  bool ok() const { return !err_; }
  bool fail(WireError e) {
    if (!err_) err_ = e;
    return false;
  }
  Status done() const {
    if (err_) return std::unexpected(*err_);
    if (pos_ != b_.size()) return std::unexpected(WireError::kTrailing);
    return {};
  }
  // Marks `n` bytes read; false (kTruncated) when fewer are left.
  bool take(size_t n) {
    if (err_) return false;
    if (n > left()) return fail(WireError::kTruncated);
    pos_ += n;
    return true;
  }

 private:
  template <class T>
  bool get(T& v, int n) {
    if (!take(n)) return false;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x |= uint64_t{b_[pos_ - n + i]} << (8 * i);
    v = static_cast<T>(x);
    return true;
  }

  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  std::optional<WireError> err_;
};

void put_layout(Writer& w, const KvLayout& l) {
  w.u32(l.n_segments);
  w.u64(l.segment_bytes);
  w.u64(l.segment_stride);
  w.u32(static_cast<uint32_t>(l.n_blocks));
  w.u32(static_cast<uint32_t>(l.block_size));
  w.u8(l.dtype);
}

void get_layout(Reader& r, KvLayout& l) {
  r.u32(l.n_segments);
  r.u64(l.segment_bytes);
  r.u64(l.segment_stride);
  r.i32(l.n_blocks);
  r.i32(l.block_size);
  r.u8(l.dtype);
}

// READ and LEASE: u64 xfer_id | str request_id | u32 n | n x u32 block.
Status encode_block_list(FrameType type, uint64_t xfer_id, std::string_view request_id,
                         std::span<const uint32_t> blocks, uint32_t max_blocks, Bytes& out) {
  if (request_id.size() > kMaxRequestId || blocks.size() > max_blocks)
    return std::unexpected(WireError::kOverCap);
  if (blocks.empty()) return std::unexpected(WireError::kBadValue);
  out.reserve(out.size() + kFrameHeaderBytes + 14 + request_id.size() + 4 * blocks.size());
  Writer w(out, type);
  w.u64(xfer_id);
  w.str(request_id);
  w.u32(static_cast<uint32_t>(blocks.size()));
  for (uint32_t b : blocks) w.u32(b);
  w.finish();
  return {};
}

Status decode_block_list(std::span<const uint8_t> payload, uint32_t max_blocks, uint32_t cap,
                         uint64_t& xfer_id, std::string& request_id, std::vector<uint32_t>& blocks) {
  Reader r(payload);
  uint32_t n = 0;
  r.u64(xfer_id);
  r.str(request_id, kMaxRequestId);
  r.u32(n);
  if (!r.ok()) return r.done();
  if (n == 0) return std::unexpected(WireError::kBadValue);
  if (n > max_blocks || n > cap) return std::unexpected(WireError::kOverCap);
  // The count must match the bytes that are there before the list is sized by it.
  if (r.left() != 4 * uint64_t{n})
    return std::unexpected(r.left() < 4 * uint64_t{n} ? WireError::kTruncated : WireError::kTrailing);
  blocks.resize(n);
  for (uint32_t& b : blocks) r.u32(b);
  return r.done();
}

bool known(uint16_t t) {
  switch (static_cast<FrameType>(t)) {
    case FrameType::kHello:
    case FrameType::kAuth:
    case FrameType::kAuthOk:
    case FrameType::kRead:
    case FrameType::kBlock:
    case FrameType::kReadDone:
    case FrameType::kLease:
    case FrameType::kLeaseOk:
    case FrameType::kDone:
    case FrameType::kDoneOk:
    case FrameType::kRelease:
    case FrameType::kUcxInfo:
    case FrameType::kUcxInfoOk:
    case FrameType::kError:
      return true;
  }
  return false;
}

}  // namespace

std::string_view to_string(WireError e) {
  switch (e) {
    case WireError::kTruncated:
      return "truncated payload";
    case WireError::kTrailing:
      return "bytes after the last field";
    case WireError::kUnknownType:
      return "unknown frame type";
    case WireError::kTooLarge:
      return "payload over the frame's cap";
    case WireError::kOverCap:
      return "string or count over its cap";
    case WireError::kBadValue:
      return "bad field value";
    case WireError::kBadLength:
      return "block frame of the wrong length";
  }
  return "unknown";
}

Status encode(const Hello& f, Bytes& out) {
  if (f.engine_id.size() > kMaxEngineId || f.shm_name.size() > kMaxShmName ||
      f.fingerprint.size() > kMaxFingerprint)
    return std::unexpected(WireError::kOverCap);
  Writer w(out, FrameType::kHello);
  w.u32(kMagic);
  w.u16(f.version);
  w.bytes(f.nonce);
  w.str(f.engine_id);
  w.bytes(f.boot_id);
  w.str(f.shm_name);
  w.u8(f.ucx);
  put_layout(w, f.layout);
  w.str(f.fingerprint);
  w.finish();
  return {};
}

void encode(const Auth& f, Bytes& out) {
  Writer w(out, FrameType::kAuth);
  w.bytes(f.nonce);
  w.bytes(f.mac);
  w.finish();
}

void encode(const AuthOk& f, Bytes& out) {
  Writer w(out, FrameType::kAuthOk);
  w.bytes(f.mac);
  w.finish();
}

Status encode(const Read& f, Bytes& out) {
  return encode_block_list(FrameType::kRead, f.xfer_id, f.request_id, f.blocks, kMaxReadBlocks, out);
}

Status encode(const Lease& f, Bytes& out) {
  return encode_block_list(FrameType::kLease, f.xfer_id, f.request_id, f.blocks, kMaxLeaseBlocks, out);
}

Status encode(const LeaseOk& f, Bytes& out) {
  if (f.blocks.size() > kMaxLeaseBlocks) return std::unexpected(WireError::kOverCap);
  if (f.blocks.empty()) return std::unexpected(WireError::kBadValue);
  out.reserve(out.size() + kFrameHeaderBytes + 12 + kLeaseOkEntryBytes * f.blocks.size());
  Writer w(out, FrameType::kLeaseOk);
  w.u64(f.xfer_id);
  w.u32(static_cast<uint32_t>(f.blocks.size()));
  for (const LeasedBlock& b : f.blocks) {
    w.u64(b.key.lo);
    w.u64(b.key.hi);
    w.u64(b.checksum);
  }
  w.finish();
  return {};
}

void encode(const Done& f, Bytes& out) {
  Writer w(out, FrameType::kDone);
  w.u64(f.xfer_id);
  w.finish();
}

void encode(const DoneOk& f, Bytes& out) {
  Writer w(out, FrameType::kDoneOk);
  w.u64(f.xfer_id);
  w.finish();
}

void set_flags(std::span<uint8_t> frame, uint16_t flags) {
  if (frame.size() < kFrameHeaderBytes) return;
  frame[2] = static_cast<uint8_t>(flags);
  frame[3] = static_cast<uint8_t>(flags >> 8);
}

Status encode(const ReadDone& f, Bytes& out) {
  if (f.msg.size() > kMaxMessage) return std::unexpected(WireError::kOverCap);
  Writer w(out, FrameType::kReadDone);
  w.u64(f.xfer_id);
  w.u16(f.status);
  w.str(f.msg);
  w.finish();
  return {};
}

Status encode(const Release& f, Bytes& out) {
  if (f.request_id.size() > kMaxRequestId) return std::unexpected(WireError::kOverCap);
  Writer w(out, FrameType::kRelease);
  w.str(f.request_id);
  w.u8(f.outcome);
  w.finish();
  return {};
}

void encode(const UcxInfo&, Bytes& out) {
  Writer w(out, FrameType::kUcxInfo);
  w.finish();
}

Status encode(const UcxInfoOk& f, Bytes& out) {
  if (f.worker_address.size() > kMaxUcxBlob || f.rkey.size() > kMaxUcxBlob)
    return std::unexpected(WireError::kOverCap);
  Writer w(out, FrameType::kUcxInfoOk);
  w.u64(f.base);
  w.str(f.worker_address);
  w.str(f.rkey);
  w.finish();
  return {};
}

Status encode(const Error& f, Bytes& out) {
  if (f.msg.size() > kMaxMessage) return std::unexpected(WireError::kOverCap);
  Writer w(out, FrameType::kError);
  w.u16(f.code);
  w.str(f.msg);
  w.finish();
  return {};
}

void encode_block_header(const BlockHeader& f, uint64_t block_bytes,
                         std::span<uint8_t, kBlockFrameHeaderBytes> out) {
  uint8_t* p = out.data();
  const auto put = [&p](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) *p++ = static_cast<uint8_t>(v >> (8 * i));
  };
  // payload_len is a u32: a block over 4 GiB - 36 bytes cannot be framed (TransferServer
  // refuses such layouts).
  put(static_cast<uint16_t>(FrameType::kBlock), 2);
  put(0, 2);
  put(kBlockHeaderPayload + block_bytes, 4);
  put(f.xfer_id, 8);
  put(f.index, 4);
  put(f.key.lo, 8);
  put(f.key.hi, 8);
  put(f.checksum, 8);
}

std::expected<FrameHeader, WireError> decode_header(std::span<const uint8_t, kFrameHeaderBytes> bytes) {
  Reader r(bytes);
  uint16_t type = 0;
  FrameHeader h;
  r.u16(type);
  r.u16(h.flags);
  r.u32(h.payload_len);
  if (!known(type)) return std::unexpected(WireError::kUnknownType);
  h.type = static_cast<FrameType>(type);
  if (h.type != FrameType::kBlock && h.payload_len > kMaxControlPayload)
    return std::unexpected(WireError::kTooLarge);
  return h;
}

Status check_block_length(const FrameHeader& h, uint64_t block_bytes) {
  if (h.type != FrameType::kBlock) return std::unexpected(WireError::kUnknownType);
  if (h.payload_len != kBlockHeaderPayload + block_bytes) return std::unexpected(WireError::kBadLength);
  return {};
}

Status decode(std::span<const uint8_t> payload, Hello& out) {
  Reader r(payload);
  uint32_t magic = 0;
  r.u32(magic);
  r.u16(out.version);
  if (!r.ok()) return r.done();
  // Checked before the rest: another version may lay the rest out differently.
  if (magic != kMagic || out.version != kVersion) return std::unexpected(WireError::kBadValue);
  r.bytes(out.nonce);
  r.str(out.engine_id, kMaxEngineId);
  r.bytes(out.boot_id);
  r.str(out.shm_name, kMaxShmName);
  r.u8(out.ucx);
  get_layout(r, out.layout);
  r.str(out.fingerprint, kMaxFingerprint);
  return r.done();
}

Status decode(std::span<const uint8_t> payload, Auth& out) {
  Reader r(payload);
  r.bytes(out.nonce);
  r.bytes(out.mac);
  return r.done();
}

Status decode(std::span<const uint8_t> payload, AuthOk& out) {
  Reader r(payload);
  r.bytes(out.mac);
  return r.done();
}

Status decode(std::span<const uint8_t> payload, uint32_t max_blocks, Read& out) {
  return decode_block_list(payload, max_blocks, kMaxReadBlocks, out.xfer_id, out.request_id, out.blocks);
}

Status decode(std::span<const uint8_t> payload, uint32_t max_blocks, Lease& out) {
  return decode_block_list(payload, max_blocks, kMaxLeaseBlocks, out.xfer_id, out.request_id, out.blocks);
}

Status decode(std::span<const uint8_t> payload, uint32_t max_blocks, LeaseOk& out) {
  Reader r(payload);
  uint32_t n = 0;
  r.u64(out.xfer_id);
  r.u32(n);
  if (!r.ok()) return r.done();
  if (n == 0) return std::unexpected(WireError::kBadValue);
  if (n > max_blocks || n > kMaxLeaseBlocks) return std::unexpected(WireError::kOverCap);
  if (r.left() != kLeaseOkEntryBytes * uint64_t{n})
    return std::unexpected(r.left() < kLeaseOkEntryBytes * uint64_t{n} ? WireError::kTruncated
                                                                       : WireError::kTrailing);
  out.blocks.resize(n);
  for (LeasedBlock& b : out.blocks) {
    r.u64(b.key.lo);
    r.u64(b.key.hi);
    r.u64(b.checksum);
  }
  return r.done();
}

Status decode(std::span<const uint8_t> payload, Done& out) {
  Reader r(payload);
  r.u64(out.xfer_id);
  return r.done();
}

Status decode(std::span<const uint8_t> payload, DoneOk& out) {
  Reader r(payload);
  r.u64(out.xfer_id);
  return r.done();
}

Status decode(std::span<const uint8_t, kBlockHeaderPayload> payload, BlockHeader& out) {
  Reader r(payload);
  r.u64(out.xfer_id);
  r.u32(out.index);
  r.u64(out.key.lo);
  r.u64(out.key.hi);
  r.u64(out.checksum);
  return r.done();
}

Status decode(std::span<const uint8_t> payload, ReadDone& out) {
  Reader r(payload);
  r.u64(out.xfer_id);
  r.u16(out.status);
  r.str(out.msg, kMaxMessage);
  return r.done();
}

Status decode(std::span<const uint8_t> payload, Release& out) {
  Reader r(payload);
  r.str(out.request_id, kMaxRequestId);
  r.u8(out.outcome);
  if (auto st = r.done(); !st) return st;
  if (out.outcome > 2) return std::unexpected(WireError::kBadValue);
  return {};
}

Status decode(std::span<const uint8_t> payload, UcxInfo&) {
  return Reader(payload).done();
}

Status decode(std::span<const uint8_t> payload, UcxInfoOk& out) {
  Reader r(payload);
  r.u64(out.base);
  r.str(out.worker_address, kMaxUcxBlob);
  r.str(out.rkey, kMaxUcxBlob);
  if (auto st = r.done(); !st) return st;
  if (out.worker_address.empty() || out.rkey.empty()) return std::unexpected(WireError::kBadValue);
  return {};
}

Status decode(std::span<const uint8_t> payload, Error& out) {
  Reader r(payload);
  r.u16(out.code);
  r.str(out.msg, kMaxMessage);
  return r.done();
}

}  // namespace llmd::kv::transfer::wire
