#include "model/gguf_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <variant>

#include <fmt/format.h>

#include "common/error.hpp"

namespace llmd::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kVersion = 3;
constexpr uint32_t kMaxDims = 4;
constexpr size_t kBufferSize = 4 << 20;

bool is_power_of_two(uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

// Checks the value's variant against its declared type, recursively, so write() can encode blindly.
void check_value(std::string_view key, const GgufValue& v, uint32_t depth) {
  auto bad = [&](std::string_view why) {
    fail("GGUF metadata '{}': {} value {}", key, gguf_type_name(v.type), why);
  };
  auto check_signed = [&](int64_t lo, int64_t hi) {
    const auto* i = std::get_if<int64_t>(&v.v);
    if (!i) bad("must hold a signed integer");
    if (*i < lo || *i > hi) bad(fmt::format("{} out of range", *i));
  };
  auto check_unsigned = [&](uint64_t hi) {
    const auto* u = std::get_if<uint64_t>(&v.v);
    if (!u) bad("must hold an unsigned integer");
    if (*u > hi) bad(fmt::format("{} out of range", *u));
  };
  switch (v.type) {
    case GgufType::UINT8:
      return check_unsigned(UINT8_MAX);
    case GgufType::UINT16:
      return check_unsigned(UINT16_MAX);
    case GgufType::UINT32:
      return check_unsigned(UINT32_MAX);
    case GgufType::UINT64:
      return check_unsigned(UINT64_MAX);
    case GgufType::INT8:
      return check_signed(INT8_MIN, INT8_MAX);
    case GgufType::INT16:
      return check_signed(INT16_MIN, INT16_MAX);
    case GgufType::INT32:
      return check_signed(INT32_MIN, INT32_MAX);
    case GgufType::INT64:
      return check_signed(INT64_MIN, INT64_MAX);
    case GgufType::FLOAT32:
    case GgufType::FLOAT64:
      if (!std::holds_alternative<double>(v.v)) bad("must hold a floating-point number");
      return;
    case GgufType::BOOL:
      if (!std::holds_alternative<bool>(v.v)) bad("must hold a bool");
      return;
    case GgufType::STRING:
      if (!std::holds_alternative<std::string>(v.v)) bad("must hold a string");
      return;
    case GgufType::ARRAY: {
      const auto* a = std::get_if<GgufArray>(&v.v);
      if (!a) bad("must hold an array");
      // The reader accepts arrays nested 4 deep; write nothing it would refuse.
      if (depth >= 3 && a->elem_type == GgufType::ARRAY) bad("nests arrays too deeply");
      for (const auto& item : a->items) {
        if (item.type != a->elem_type)
          fail("GGUF metadata '{}': array of {} holds a {}", key, gguf_type_name(a->elem_type),
               gguf_type_name(item.type));
        check_value(key, item, depth + 1);
      }
      return;
    }
  }
  fail("GGUF metadata '{}': unknown value type {}", key, static_cast<uint32_t>(v.type));
}

// Buffered writes to a file descriptor, counting bytes so tensor offsets can be checked.
class FileOut final : public TensorSink {
 public:
  FileOut(const std::string& path, int fd) : path_(path), fd_(fd) { buf_.reserve(kBufferSize); }

  using TensorSink::write;
  void write(std::span<const uint8_t> bytes) override {
    written_ += bytes.size();
    if (buf_.size() + bytes.size() > kBufferSize) flush();
    if (bytes.size() >= kBufferSize) {
      write_all(bytes.data(), bytes.size());
    } else {
      buf_.insert(buf_.end(), bytes.begin(), bytes.end());
    }
  }
  template <class T>
  void put(T v) {
    write(&v, sizeof v);
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    write(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static constexpr uint8_t zeros[256] = {};
    while (written_ % alignment != 0)
      write(zeros, std::min<uint64_t>(sizeof zeros, alignment - written_ % alignment));
  }
  void flush() {
    write_all(buf_.data(), buf_.size());
    buf_.clear();
  }
  uint64_t written() const { return written_; }

 private:
  void write_all(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("{}: write failed: {}", path_, std::strerror(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  const std::string& path_;
  int fd_;
  std::vector<uint8_t> buf_;
  uint64_t written_ = 0;
};

// Counts what a tensor's fill writes, and refuses to go past the tensor's size.
class CountingSink final : public TensorSink {
 public:
  CountingSink(FileOut& out, const std::string& path, const std::string& tensor, uint64_t expected)
      : out_(out), path_(path), tensor_(tensor), expected_(expected) {}
  using TensorSink::write;
  void write(std::span<const uint8_t> bytes) override {
    if (bytes.size() > expected_ - count_)
      fail("{}: tensor '{}': fill wrote more than its {} bytes", path_, tensor_, expected_);
    count_ += bytes.size();
    out_.write(bytes);
  }
  uint64_t count() const { return count_; }

 private:
  FileOut& out_;
  const std::string& path_;
  const std::string& tensor_;
  uint64_t expected_;
  uint64_t count_ = 0;
};

void put_value(FileOut& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::UINT8:
      return out.put(static_cast<uint8_t>(std::get<uint64_t>(v.v)));
    case GgufType::UINT16:
      return out.put(static_cast<uint16_t>(std::get<uint64_t>(v.v)));
    case GgufType::UINT32:
      return out.put(static_cast<uint32_t>(std::get<uint64_t>(v.v)));
    case GgufType::UINT64:
      return out.put(std::get<uint64_t>(v.v));
    case GgufType::INT8:
      return out.put(static_cast<int8_t>(std::get<int64_t>(v.v)));
    case GgufType::INT16:
      return out.put(static_cast<int16_t>(std::get<int64_t>(v.v)));
    case GgufType::INT32:
      return out.put(static_cast<int32_t>(std::get<int64_t>(v.v)));
    case GgufType::INT64:
      return out.put(std::get<int64_t>(v.v));
    case GgufType::FLOAT32:
      return out.put(static_cast<float>(std::get<double>(v.v)));
    case GgufType::FLOAT64:
      return out.put(std::get<double>(v.v));
    case GgufType::BOOL:
      return out.put(static_cast<uint8_t>(std::get<bool>(v.v) ? 1 : 0));
    case GgufType::STRING:
      return out.put_string(std::get<std::string>(v.v));
    case GgufType::ARRAY: {
      const auto& a = std::get<GgufArray>(v.v);
      out.put(static_cast<uint32_t>(a.elem_type));
      out.put<uint64_t>(a.items.size());
      for (const auto& item : a.items) put_value(out, item);
      return;
    }
  }
}

GgufValue make(GgufType t, auto v) {
  GgufValue out;
  out.type = t;
  out.v = v;
  return out;
}

}  // namespace

void GgufWriter::set(std::string_view key, GgufValue value) {
  check_value(key, value, 0);
  if (key == "general.alignment") {
    const auto* u = std::get_if<uint64_t>(&value.v);
    if (value.type != GgufType::UINT32 || !is_power_of_two(*u))
      fail("GGUF metadata 'general.alignment' must be a uint32 power of two");
  }
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(std::string(key), std::move(value));
}

void GgufWriter::set_uint8(std::string_view key, uint8_t v) {
  set(key, make(GgufType::UINT8, uint64_t{v}));
}
void GgufWriter::set_int8(std::string_view key, int8_t v) {
  set(key, make(GgufType::INT8, int64_t{v}));
}
void GgufWriter::set_uint16(std::string_view key, uint16_t v) {
  set(key, make(GgufType::UINT16, uint64_t{v}));
}
void GgufWriter::set_int16(std::string_view key, int16_t v) {
  set(key, make(GgufType::INT16, int64_t{v}));
}
void GgufWriter::set_uint32(std::string_view key, uint32_t v) {
  set(key, make(GgufType::UINT32, uint64_t{v}));
}
void GgufWriter::set_int32(std::string_view key, int32_t v) {
  set(key, make(GgufType::INT32, int64_t{v}));
}
void GgufWriter::set_uint64(std::string_view key, uint64_t v) {
  set(key, make(GgufType::UINT64, v));
}
void GgufWriter::set_int64(std::string_view key, int64_t v) {
  set(key, make(GgufType::INT64, v));
}
void GgufWriter::set_float32(std::string_view key, float v) {
  set(key, make(GgufType::FLOAT32, double{v}));
}
void GgufWriter::set_float64(std::string_view key, double v) {
  set(key, make(GgufType::FLOAT64, v));
}
void GgufWriter::set_bool(std::string_view key, bool v) {
  set(key, make(GgufType::BOOL, v));
}
void GgufWriter::set_string(std::string_view key, std::string v) {
  set(key, make(GgufType::STRING, std::move(v)));
}
void GgufWriter::set_array(std::string_view key, GgufArray array) {
  set(key, make(GgufType::ARRAY, std::move(array)));
}

void GgufWriter::set_string_array(std::string_view key, std::span<const std::string> items) {
  GgufArray a{GgufType::STRING, {}};
  a.items.reserve(items.size());
  for (const auto& s : items) a.items.push_back(make(GgufType::STRING, s));
  set_array(key, std::move(a));
}

void GgufWriter::set_float32_array(std::string_view key, std::span<const float> items) {
  GgufArray a{GgufType::FLOAT32, {}};
  a.items.reserve(items.size());
  for (float f : items) a.items.push_back(make(GgufType::FLOAT32, double{f}));
  set_array(key, std::move(a));
}

void GgufWriter::set_int32_array(std::string_view key, std::span<const int32_t> items) {
  GgufArray a{GgufType::INT32, {}};
  a.items.reserve(items.size());
  for (int32_t i : items) a.items.push_back(make(GgufType::INT32, int64_t{i}));
  set_array(key, std::move(a));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  if (!is_power_of_two(alignment)) fail("GGUF alignment {} is not a power of two", alignment);
  set_uint32("general.alignment", alignment);
}

const GgufValue* GgufWriter::find(std::string_view key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

bool GgufWriter::remove(std::string_view key) {
  auto it = std::find_if(kv_.begin(), kv_.end(), [&](const auto& kv) { return kv.first == key; });
  if (it == kv_.end()) return false;
  kv_.erase(it);
  return true;
}

uint32_t GgufWriter::alignment() const {
  const GgufValue* a = find("general.alignment");
  return a ? static_cast<uint32_t>(std::get<uint64_t>(a->v)) : kDefaultAlignment;
}

void GgufWriter::add_tensor(std::string_view name, std::vector<uint64_t> dims, GgmlType type,
                            std::vector<uint8_t> data) {
  add(name, std::move(dims), type, std::move(data), {});
}

void GgufWriter::add_tensor(std::string_view name, std::vector<uint64_t> dims, GgmlType type, Fill fill) {
  if (!fill) fail("GGUF tensor '{}': empty fill callback", name);
  add(name, std::move(dims), type, {}, std::move(fill));
}

void GgufWriter::add(std::string_view name, std::vector<uint64_t> dims, GgmlType type,
                     std::vector<uint8_t> data, Fill fill) {
  const auto traits = ggml_type_traits(static_cast<uint32_t>(type));
  if (!traits) fail("GGUF tensor '{}': unknown ggml type {}", name, static_cast<uint32_t>(type));
  if (dims.empty() || dims.size() > kMaxDims)
    fail("GGUF tensor '{}': {} dimensions (must be 1..{})", name, dims.size(), kMaxDims);
  uint64_t n = 1;
  for (uint64_t d : dims) {
    if (d == 0 || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / n)
      fail("GGUF tensor '{}': dimension {} is zero or overflows", name, d);
    n *= d;
  }
  if (dims[0] % traits->block_size != 0)
    fail("GGUF tensor '{}': row length {} is not a multiple of the {} block size {}", name, dims[0],
         traits->name, traits->block_size);
  if (n / traits->block_size > std::numeric_limits<uint64_t>::max() / traits->type_size)
    fail("GGUF tensor '{}': byte size overflows", name);
  const uint64_t n_bytes = n / traits->block_size * traits->type_size;
  if (!fill && data.size() != n_bytes)
    fail("GGUF tensor '{}': {} bytes given, shape {} of {} needs {}", name, data.size(), n, traits->name,
         n_bytes);
  for (const auto& t : tensors_)
    if (t.name == name) fail("GGUF tensor '{}' added twice", name);
  tensors_.push_back(
      Tensor{std::string(name), std::move(dims), type, n_bytes, std::move(data), std::move(fill)});
}

uint64_t GgufWriter::tensor_bytes() const {
  uint64_t sum = 0;
  for (const auto& t : tensors_) sum += t.n_bytes;
  return sum;
}

void GgufWriter::write(const std::string& path) const {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", path, std::strerror(errno));
  bool closed = false;
  try {
    FileOut out(path, fd);
    const uint64_t align = alignment();
    out.put(kMagic);
    out.put(kVersion);
    out.put<uint64_t>(tensors_.size());
    out.put<uint64_t>(kv_.size());
    for (const auto& [key, value] : kv_) {
      out.put_string(key);
      out.put(static_cast<uint32_t>(value.type));
      put_value(out, value);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      out.put_string(t.name);
      out.put(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) out.put(d);
      out.put(static_cast<uint32_t>(t.type));
      out.put(offset);
      offset += (t.n_bytes + align - 1) / align * align;
    }
    out.pad_to(align);
    const uint64_t data_start = out.written();
    offset = 0;
    for (const auto& t : tensors_) {
      if (out.written() != data_start + offset)
        fail("{}: internal error: tensor '{}' misplaced", path, t.name);
      if (t.fill) {
        CountingSink sink(out, path, t.name, t.n_bytes);
        t.fill(sink);
        if (sink.count() != t.n_bytes)
          fail("{}: tensor '{}': fill wrote {} of its {} bytes", path, t.name, sink.count(), t.n_bytes);
      } else {
        out.write(t.data);
      }
      out.pad_to(align);
      offset += (t.n_bytes + align - 1) / align * align;
    }
    out.flush();
    // Data reaches the disk before the name points at it, so a crash never leaves a torn file named PATH.
    if (::fsync(fd) != 0) fail("{}: fsync failed: {}", path, std::strerror(errno));
    closed = true;  // even a failed close releases the fd: never close it twice
    if (::close(fd) != 0) fail("{}: close failed: {}", path, std::strerror(errno));
  } catch (...) {
    if (!closed) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename {} into place: {}", path, tmp, std::strerror(err));
  }
}

}  // namespace llmd::model
