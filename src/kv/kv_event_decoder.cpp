#include "kv/kv_event_decoder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <limits>
#include <msgpack.hpp>

#include "common/block_hash.hpp"

namespace llmd::kv {

namespace {

using Kind = KvEventBatch::Kind;

// The msgpack types as the visitor sees them, for type checks and error messages.
enum class Type : uint8_t { kNil, kBool, kUint, kInt, kFloat, kStr, kBin, kExt, kArray, kMap };

const char* type_name(Type t) {
  switch (t) {
    case Type::kNil:
      return "nil";
    case Type::kBool:
      return "bool";
    case Type::kUint:
    case Type::kInt:
      return "int";
    case Type::kFloat:
      return "float";
    case Type::kStr:
      return "str";
    case Type::kBin:
      return "bin";
    case Type::kExt:
      return "ext";
    case Type::kArray:
      return "array";
    case Type::kMap:
      return "map";
  }
  return "?";
}

struct Value {
  Type type = Type::kNil;
  uint64_t u = 0;            // kUint
  int64_t i = 0;             // kInt (always negative: msgpack-cxx reports non-negative values as kUint)
  double f = 0;              // kFloat
  std::string_view bytes{};  // kStr, kBin, kExt
};

// What an open array (or map) is, by where it sits.
enum class Role : uint8_t { kRoot, kEvents, kEvent, kHashes, kTokens, kSkip };

// Where the value being visited sits: the field of the format it must be.
enum class Field : uint8_t {
  kRoot,       // the whole payload: an array
  kTs,         // payload[0]
  kEventList,  // payload[1]
  kDpRank,     // payload[2]
  kEvent,      // payload[1][i]
  kTag,        // event[0]
  kHashList,   // BlockStored[1], BlockRemoved[1]
  kParent,     // BlockStored[2]
  kTokenList,  // BlockStored[3]
  kBlockSize,  // BlockStored[4]
  kLoraId,     // BlockStored[5]
  kMedium,     // BlockStored[6], BlockRemoved[2]
  kHash,       // an element of a hash list
  kToken,      // an element of token_ids
  kIgnored,    // anything else: fields past the known ones, unknown events' fields, their contents
};

struct FieldInfo {
  const char* name;
  const char* expected;  // what a value there must be, for error messages
};

FieldInfo info(Field f) {
  switch (f) {
    case Field::kRoot:
      return {"payload", "an array"};
    case Field::kTs:
      return {"timestamp", "a float"};
    case Field::kEventList:
      return {"events", "an array"};
    case Field::kDpRank:
      return {"dp_rank", "nil or an int32 >= 0"};
    case Field::kEvent:
      return {"event", "an array"};
    case Field::kTag:
      return {"event tag", "a str"};
    case Field::kHashList:
      return {"block_hashes", "an array"};
    case Field::kParent:
      return {"parent_block_hash", "nil, a 16-byte bin or an int"};
    case Field::kTokenList:
      return {"token_ids", "an array"};
    case Field::kBlockSize:
      return {"block_size", "a positive int32"};
    case Field::kLoraId:
      return {"lora_id", "nil or an int"};
    case Field::kMedium:
      return {"medium", "nil or a str"};
    case Field::kHash:
      return {"block hash", "a 16-byte bin or an int"};
    case Field::kToken:
      return {"token id", "an int >= 0"};
    case Field::kIgnored:
      return {"ignored field", "anything"};
  }
  return {"?", "?"};
}

// Fields each known event must carry (tag included); later ones may be absent (omit_defaults).
constexpr uint32_t kStoredMinFields = 5;
constexpr uint32_t kRemovedMinFields = 2;
// The visitor's level stack is fixed-size so that parsing allocates nothing; config.max_depth is
// clamped to it.
constexpr uint32_t kMaxDepthCap = 32;

enum class EventState : uint8_t { kStored, kRemoved, kCleared, kUnknown, kNoTag };

std::optional<uint64_t> hash_lo(const Value& v) {
  switch (v.type) {
    case Type::kBin: {
      const auto h =
          from_wire_bytes(std::span(reinterpret_cast<const uint8_t*>(v.bytes.data()), v.bytes.size()));
      if (!h) return std::nullopt;
      return h->lo;
    }
    case Type::kUint:
      return v.u;
    case Type::kInt:
      return static_cast<uint64_t>(v.i);  // two's complement, as a Python int hash
    default:
      return std::nullopt;
  }
}

}  // namespace

// msgpack-cxx's visitor interface (msgpack::null_visitor lists it). Every callback returns false
// to stop the parse, with the reason in `error`.
struct KvEventDecoder::Visitor {
  struct Level {
    Role role;
    uint32_t size;
    int64_t idx;  // the item being visited; -1 before the first
  };

  KvEventDecoder& d;
  uint32_t max_depth;
  std::string error;
  std::array<Level, kMaxDepthCap> stack{};
  uint32_t depth = 0;
  KvEvent* ev = nullptr;
  EventState state = EventState::kNoTag;

  Visitor(KvEventDecoder& decoder)
      : d(decoder), max_depth(std::min(decoder.config_.max_depth, kMaxDepthCap)) {}

  bool fail(std::string reason) {
    if (error.empty()) error = std::move(reason);
    return false;
  }
  bool wrong(Field f, Type got) {
    return fail(fmt::format("{}: expected {}, got {}", info(f).name, info(f).expected, type_name(got)));
  }

  Field field() const {
    if (depth == 0) return Field::kRoot;
    const Level& l = stack[depth - 1];
    switch (l.role) {
      case Role::kRoot:
        switch (l.idx) {
          case 0:
            return Field::kTs;
          case 1:
            return Field::kEventList;
          case 2:
            return Field::kDpRank;
          default:
            return Field::kIgnored;
        }
      case Role::kEvents:
        return Field::kEvent;
      case Role::kEvent:
        if (l.idx == 0) return Field::kTag;
        switch (state) {
          case EventState::kStored:
            switch (l.idx) {
              case 1:
                return Field::kHashList;
              case 2:
                return Field::kParent;
              case 3:
                return Field::kTokenList;
              case 4:
                return Field::kBlockSize;
              case 5:
                return Field::kLoraId;
              case 6:
                return Field::kMedium;
              default:
                return Field::kIgnored;
            }
          case EventState::kRemoved:
            switch (l.idx) {
              case 1:
                return Field::kHashList;
              case 2:
                return Field::kMedium;
              default:
                return Field::kIgnored;
            }
          default:
            return Field::kIgnored;
        }
      case Role::kHashes:
        return Field::kHash;
      case Role::kTokens:
        return Field::kToken;
      case Role::kSkip:
        return Field::kIgnored;
    }
    return Field::kIgnored;
  }

  bool push(Role role, uint32_t size) {
    if (depth >= max_depth) return fail(fmt::format("nested deeper than {} levels", max_depth));
    stack[depth++] = Level{role, size, -1};
    return true;
  }

  bool begin_event(uint32_t size) {
    if (size == 0) return fail("event: empty array");
    if (d.n_events_ == d.events_.size()) d.events_.emplace_back();
    ev = &d.events_[d.n_events_];
    ev->kind = Kind::kCleared;
    ev->hashes.clear();
    ev->parent.reset();
    ev->block_size = 0;
    ev->token_count = 0;
    ev->medium.clear();
    state = EventState::kNoTag;
    return true;
  }

  bool end_event(uint32_t size) {
    const uint32_t need = state == EventState::kStored    ? kStoredMinFields
                          : state == EventState::kRemoved ? kRemovedMinFields
                                                          : 1;
    if (size < need) {
      return fail(fmt::format("{}: {} fields, needs at least {}",
                              state == EventState::kStored ? "BlockStored" : "BlockRemoved", size, need));
    }
    if (state == EventState::kUnknown) {
      ++d.message_.unknown_events;  // the slot is reused by the next event
    } else {
      ++d.n_events_;
    }
    ev = nullptr;
    return true;
  }

  bool container(Type t, uint32_t size) {
    const Field f = field();
    if (t == Type::kMap) {
      if (f != Field::kIgnored) return wrong(f, t);  // the format has no maps
      return push(Role::kSkip, size);
    }
    switch (f) {
      case Field::kRoot:
        return push(Role::kRoot, size);
      case Field::kEventList:
        return push(Role::kEvents, size);
      case Field::kEvent:
        return begin_event(size) && push(Role::kEvent, size);
      case Field::kHashList:
        return push(Role::kHashes, size);
      case Field::kTokenList:
        return push(Role::kTokens, size);
      case Field::kIgnored:
        return push(Role::kSkip, size);
      default:
        return wrong(f, t);
    }
  }

  bool value(const Value& v) {
    const Field f = field();
    const Type t = v.type;
    switch (f) {
      case Field::kRoot:
        return wrong(f, t);
      case Field::kTs:
        if (t == Type::kFloat) {
          d.message_.ts = v.f;
        } else if (t == Type::kUint) {
          d.message_.ts = static_cast<double>(v.u);
        } else {
          return wrong(f, t);
        }
        return true;
      case Field::kEventList:
      case Field::kEvent:
      case Field::kHashList:
      case Field::kTokenList:
        return wrong(f, t);
      case Field::kDpRank:
        if (t == Type::kNil) return true;
        if (t != Type::kUint) return wrong(f, t);
        if (v.u > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
          return fail(fmt::format("dp_rank: {} is out of range", v.u));
        d.message_.dp_rank = static_cast<int32_t>(v.u);
        return true;
      case Field::kTag:
        if (t != Type::kStr) return wrong(f, t);
        if (v.bytes == "BlockStored") {
          state = EventState::kStored;
          ev->kind = Kind::kStored;
        } else if (v.bytes == "BlockRemoved") {
          state = EventState::kRemoved;
          ev->kind = Kind::kRemoved;
        } else if (v.bytes == "AllBlocksCleared") {
          state = EventState::kCleared;
          ev->kind = Kind::kCleared;
        } else {
          state = EventState::kUnknown;
        }
        return true;
      case Field::kParent:
        if (t == Type::kNil) return true;
        if (auto h = hash_lo(v)) {
          ev->parent = *h;
          return true;
        }
        return wrong(f, t);
      case Field::kBlockSize:
        if (t != Type::kUint) return wrong(f, t);
        if (v.u == 0 || v.u > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
          return fail(fmt::format("block_size: {} is out of range", v.u));
        ev->block_size = static_cast<int32_t>(v.u);
        return true;
      case Field::kLoraId:
        if (t == Type::kNil || t == Type::kUint || t == Type::kInt) return true;
        return wrong(f, t);
      case Field::kMedium:
        if (t == Type::kNil) return true;
        if (t != Type::kStr) return wrong(f, t);
        if (v.bytes.size() > d.config_.max_medium_bytes)
          return fail(
              fmt::format("medium: {} bytes, more than {}", v.bytes.size(), d.config_.max_medium_bytes));
        ev->medium.assign(v.bytes);
        return true;
      case Field::kHash:
        if (auto h = hash_lo(v)) {
          ev->hashes.push_back(*h);
          return true;
        }
        if (t == Type::kBin) return fail(fmt::format("block hash: {} bytes, expected 16", v.bytes.size()));
        return wrong(f, t);
      case Field::kToken:
        if (t != Type::kUint) return wrong(f, t);
        ++ev->token_count;
        return true;
      case Field::kIgnored:
        return true;
    }
    return true;
  }

  // --- msgpack visitor interface ---
  bool visit_nil() { return value({.type = Type::kNil}); }
  bool visit_boolean(bool) { return value({.type = Type::kBool}); }
  bool visit_positive_integer(uint64_t v) { return value({.type = Type::kUint, .u = v}); }
  bool visit_negative_integer(int64_t v) { return value({.type = Type::kInt, .i = v}); }
  bool visit_float32(float v) { return value({.type = Type::kFloat, .f = v}); }
  bool visit_float64(double v) { return value({.type = Type::kFloat, .f = v}); }
  bool visit_str(const char* p, uint32_t n) { return value({.type = Type::kStr, .bytes = {p, n}}); }
  bool visit_bin(const char* p, uint32_t n) { return value({.type = Type::kBin, .bytes = {p, n}}); }
  bool visit_ext(const char* p, uint32_t n) { return value({.type = Type::kExt, .bytes = {p, n}}); }
  bool start_array(uint32_t n) { return container(Type::kArray, n); }
  bool start_array_item() {
    ++stack[depth - 1].idx;
    return true;
  }
  bool end_array_item() { return true; }
  bool end_array() {
    const Level l = stack[--depth];
    if (l.role == Role::kRoot && l.size < 2)
      return fail(fmt::format("payload: {} elements, needs [timestamp, events]", l.size));
    if (l.role == Role::kEvent) return end_event(l.size);
    return true;
  }
  bool start_map(uint32_t n) { return container(Type::kMap, n); }
  bool start_map_key() { return true; }
  bool end_map_key() { return true; }
  bool start_map_value() { return true; }
  bool end_map_value() { return true; }
  bool end_map() {
    --depth;
    return true;
  }
  void parse_error(size_t, size_t error_offset) {
    fail(fmt::format("invalid msgpack at byte {}", error_offset));
  }
  void insufficient_bytes(size_t, size_t error_offset) {
    fail(fmt::format("payload truncated at byte {}", error_offset));
  }
  bool referenced() const { return false; }
  void set_referenced(bool) {}
};

std::expected<uint64_t, std::string> decode_sequence(std::string_view frame) {
  if (frame.size() != 8)
    return std::unexpected(fmt::format("sequence frame: {} bytes, expected 8", frame.size()));
  uint64_t seq = 0;
  for (char c : frame) seq = (seq << 8) | static_cast<uint8_t>(c);
  return seq;
}

std::optional<KvTopic> parse_topic(std::string_view topic) {
  const size_t a = topic.find('@');
  if (a == std::string_view::npos) return std::nullopt;
  const size_t b = topic.find('@', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  return KvTopic{topic.substr(0, a), topic.substr(a + 1, b - a - 1), topic.substr(b + 1)};
}

KvEventDecoder::KvEventDecoder(KvEventDecoderConfig config) : config_(config) {}

std::expected<void, std::string> KvEventDecoder::decode(std::span<const std::string_view> frames) {
  if (frames.size() != 3)
    return std::unexpected(fmt::format("{} frames, expected 3 (topic, sequence, payload)", frames.size()));
  const auto seq = decode_sequence(frames[1]);
  if (!seq) return std::unexpected(seq.error());
  message_.topic.assign(frames[0]);
  message_.seq = *seq;
  return decode_payload(frames[2]);
}

std::expected<void, std::string> KvEventDecoder::decode_payload(std::string_view payload) {
  message_.ts = 0;
  message_.dp_rank.reset();
  message_.unknown_events = 0;
  message_.events = {};
  n_events_ = 0;
  if (payload.size() > config_.max_payload_bytes) {
    return std::unexpected(fmt::format("payload: {} bytes, more than the limit of {}", payload.size(),
                                       config_.max_payload_bytes));
  }
  if (payload.empty()) return std::unexpected("empty payload");
  Visitor v(*this);
  size_t off = 0;
  bool ok = false;
  try {
    ok = msgpack::parse(payload.data(), payload.size(), off, v);
  } catch (const std::exception& e) {  // bad_alloc from the output vectors; msgpack-cxx's own checks
    return std::unexpected(fmt::format("payload: {}", e.what()));
  }
  if (!ok) {
    n_events_ = 0;
    return std::unexpected(v.error.empty() ? std::string("invalid msgpack") : std::move(v.error));
  }
  if (off != payload.size()) {
    n_events_ = 0;
    return std::unexpected(fmt::format("payload: {} trailing bytes", payload.size() - off));
  }
  message_.events = {events_.data(), n_events_};
  return {};
}

}  // namespace llmd::kv
