#pragma once
// The KV transfer wire format (issue 6 design §4): pure encoders and decoders on byte spans, no I/O.
// Every frame is `u16 type | u16 flags | u32 payload_len | payload`, all integers little-endian;
// strings are `u16 len | bytes`. The decoders read bytes that come from another machine, so each
// checks a length before reading or allocating, rejects payloads with bytes left over, and returns
// its error as a value: a peer can make a decode fail, never crash or over-read.
//
// Frames (the UCX frames of the ucx backend come later):
//   1 HELLO    S->C  u32 magic "LKVT" | u16 version | nonce_s[32] | str engine_id | boot_id[16] |
//                    str shm_name | u8 ucx | layout | str fingerprint
//                    layout = u32 n_segments | u64 segment_bytes | u64 segment_stride | i32 n_blocks |
//                             i32 block_size | u8 dtype
//   2 AUTH     C->S  nonce_c[32] | mac_c[32]
//   3 AUTH_OK  S->C  mac_s[32]
//   4 READ     C->S  u64 xfer_id | str request_id | u32 n | n x u32 remote_block
//   5 BLOCK    S->C  u64 xfer_id | u32 index | key[16] | u64 checksum, then block_bytes raw bytes
//   6 READ_DONE S->C u64 xfer_id | u16 status (0 ok, else an XferError) | str msg
//                    (also the refusal of a LEASE: unknown request, unpinned block)
//   7 LEASE    C->S  as READ: the blocks stay leased (unpin waits) until DONE or the connection ends
//   8 LEASE_OK S->C  u64 xfer_id | u32 n | n x (key[16] | u64 checksum), computed while leased
//   9 DONE     C->S  u64 xfer_id: the reader has copied the blocks; ends the lease
//  10 DONE_OK  S->C  u64 xfer_id: the lease held throughout (without it the copy is not trusted)
//  11 RELEASE  C->S  str request_id | u8 outcome
//  14 ERROR    S->C  u16 code (an XferError) | str msg
//
// On the shm listener's Unix socket AUTH_OK carries flag kFlagFd: the arena's memfd rides on its
// first byte as SCM_RIGHTS ancillary data.
#include <array>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/block_hash.hpp"
#include "kv/transfer/layout.hpp"

namespace llmd::kv::transfer::wire {

enum class FrameType : uint16_t {
  kHello = 1,
  kAuth = 2,
  kAuthOk = 3,
  kRead = 4,
  kBlock = 5,
  kReadDone = 6,
  kLease = 7,
  kLeaseOk = 8,
  kDone = 9,
  kDoneOk = 10,
  kRelease = 11,
  kUcxInfo = 12,
  kUcxInfoOk = 13,
  kError = 14,
};

inline constexpr uint32_t kMagic = 0x54564b4c;  // "LKVT" as bytes on the wire
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr uint32_t kMaxControlPayload = 1 << 20;  // every frame but BLOCK
inline constexpr size_t kMaxEngineId = 64;
inline constexpr size_t kMaxRequestId = 256;
inline constexpr size_t kMaxFingerprint = 256;
inline constexpr size_t kMaxShmName = 108;  // sun_path
inline constexpr size_t kMaxMessage = 1024;
inline constexpr size_t kMaxUcxBlob = 16384;  // a UCX worker address or packed rkey
inline constexpr uint32_t kMaxReadBlocks = 65536;
// LEASE_OK (12 + 24 bytes a block) must fit a control frame.
inline constexpr uint32_t kMaxLeaseBlocks = 32768;
inline constexpr size_t kLeaseOkEntryBytes = 24;
// Frame header flags.
inline constexpr uint16_t kFlagFd = 1;             // a descriptor rides on this frame (Unix sockets only)
inline constexpr size_t kBlockHeaderPayload = 36;  // BLOCK's payload before the raw bytes
inline constexpr size_t kBlockFrameHeaderBytes = kFrameHeaderBytes + kBlockHeaderPayload;

enum class WireError : uint8_t {
  kTruncated,    // the payload ends before a field
  kTrailing,     // bytes left after the last field
  kUnknownType,  // a frame type this side does not speak
  kTooLarge,     // payload_len over the frame's cap
  kOverCap,      // a string or count over its cap
  kBadValue,     // magic, version, zero count, status code ...
  kBadLength,    // a BLOCK frame whose length is not 36 + block_bytes
};
std::string_view to_string(WireError e);

using Nonce = std::array<uint8_t, 32>;
using Mac = std::array<uint8_t, 32>;
using BootId = std::array<uint8_t, 16>;

struct FrameHeader {
  FrameType type = FrameType::kError;
  uint16_t flags = 0;
  uint32_t payload_len = 0;
};

struct Hello {
  uint16_t version = kVersion;
  Nonce nonce{};
  std::string engine_id;
  BootId boot_id{};
  std::string shm_name;
  uint8_t ucx = 0;
  KvLayout layout;
  std::string fingerprint;
};

struct Auth {
  Nonce nonce{};
  Mac mac{};
};

struct AuthOk {
  Mac mac{};
};

struct Read {
  uint64_t xfer_id = 0;
  std::string request_id;
  std::vector<uint32_t> blocks;
};

struct BlockHeader {
  uint64_t xfer_id = 0;
  uint32_t index = 0;
  BlockHash key;
  uint64_t checksum = 0;
};

// LEASE names blocks as READ does.
struct Lease {
  uint64_t xfer_id = 0;
  std::string request_id;
  std::vector<uint32_t> blocks;
};

struct LeasedBlock {
  BlockHash key;
  uint64_t checksum = 0;
};

struct LeaseOk {
  uint64_t xfer_id = 0;
  std::vector<LeasedBlock> blocks;
};

struct Done {
  uint64_t xfer_id = 0;
};

struct DoneOk {
  uint64_t xfer_id = 0;
};

struct ReadDone {
  uint64_t xfer_id = 0;
  uint16_t status = 0;
  std::string msg;
};

struct Release {
  std::string request_id;
  uint8_t outcome = 0;
};

// Asks for what a UCX reader needs (sent after AUTH_OK, to a server whose HELLO offered ucx).
struct UcxInfo {};

// The server's UCX worker address, the packed rkey of its KV region and the region's address in the
// server's memory (the base of remote reads). Opaque bytes from UCX, bounded by kMaxUcxBlob.
struct UcxInfoOk {
  uint64_t base = 0;
  std::string worker_address;
  std::string rkey;
};

struct Error {
  uint16_t code = 0;
  std::string msg;
};

using Bytes = std::vector<uint8_t>;
using Status = std::expected<void, WireError>;

// Encoders append one whole frame (header and payload) to `out`. Those with strings or counts
// refuse values over their caps (kOverCap) and then append nothing.
Status encode(const Hello& f, Bytes& out);
void encode(const Auth& f, Bytes& out);
void encode(const AuthOk& f, Bytes& out);
Status encode(const Read& f, Bytes& out);
Status encode(const Lease& f, Bytes& out);
Status encode(const LeaseOk& f, Bytes& out);
void encode(const Done& f, Bytes& out);
void encode(const DoneOk& f, Bytes& out);
Status encode(const ReadDone& f, Bytes& out);
Status encode(const Release& f, Bytes& out);
void encode(const UcxInfo& f, Bytes& out);
Status encode(const UcxInfoOk& f, Bytes& out);
Status encode(const Error& f, Bytes& out);
// BLOCK's frame header and block header, for a gather write whose next buffers are the raw bytes.
// Sets the flags of the frame that starts at frame[0] (encoders write 0).
void set_flags(std::span<uint8_t> frame, uint16_t flags);
void encode_block_header(const BlockHeader& f, uint64_t block_bytes,
                         std::span<uint8_t, kBlockFrameHeaderBytes> out);

// A frame's 8-byte header: unknown types and control payloads over kMaxControlPayload are errors
// (BLOCK's length is checked against the layout by check_block_length).
std::expected<FrameHeader, WireError> decode_header(std::span<const uint8_t, kFrameHeaderBytes> bytes);
Status check_block_length(const FrameHeader& h, uint64_t block_bytes);

// Payload decoders (the bytes after the frame header, exactly payload_len of them). They fill `out`,
// reusing its capacity.
Status decode(std::span<const uint8_t> payload, Hello& out);
Status decode(std::span<const uint8_t> payload, Auth& out);
Status decode(std::span<const uint8_t> payload, AuthOk& out);
// max_blocks: min(kMaxReadBlocks, layout.n_blocks) of the serving side; n must be in [1, max_blocks].
Status decode(std::span<const uint8_t> payload, uint32_t max_blocks, Read& out);
// max_blocks: min(kMaxLeaseBlocks, layout.n_blocks) of the serving side; n must be in [1, max_blocks].
Status decode(std::span<const uint8_t> payload, uint32_t max_blocks, Lease& out);
// max_blocks: the blocks the reader leased; n must be in [1, max_blocks].
Status decode(std::span<const uint8_t> payload, uint32_t max_blocks, LeaseOk& out);
Status decode(std::span<const uint8_t> payload, Done& out);
Status decode(std::span<const uint8_t> payload, DoneOk& out);
Status decode(std::span<const uint8_t, kBlockHeaderPayload> payload, BlockHeader& out);
Status decode(std::span<const uint8_t> payload, ReadDone& out);
Status decode(std::span<const uint8_t> payload, Release& out);
Status decode(std::span<const uint8_t> payload, UcxInfo& out);
Status decode(std::span<const uint8_t> payload, UcxInfoOk& out);
Status decode(std::span<const uint8_t> payload, Error& out);

}  // namespace llmd::kv::transfer::wire
