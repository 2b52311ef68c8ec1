#include "model/gguf.hpp"

#include <cstring>
#include <limits>

#include "common/error.hpp"

namespace llmd::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr uint32_t kMaxArrayDepth = 4;

// A bounds-checked cursor over the mapped bytes. Every read checks the remaining length first.
class Cursor {
 public:
  Cursor(const std::string& path, std::span<const uint8_t> bytes) : path_(path), bytes_(bytes) {}

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  void need(uint64_t n, const char* what) const {
    if (n > bytes_.size() - pos_)
      fail("{}: truncated {} at byte {} (needs {} bytes, {} left)", path_, what, pos_, n,
           bytes_.size() - pos_);
  }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

 private:
  const std::string& path_;
  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
};

// The smallest encoding of one element of a type, to bound counts before allocating for them.
uint64_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
    case GgufType::STRING:
      return 8;
    case GgufType::ARRAY:
      return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::FLOAT64);
}

GgufValue read_value(Cursor& c, const std::string& path, GgufType type, const std::string& key,
                     uint32_t depth) {
  GgufValue out;
  out.type = type;
  switch (type) {
    case GgufType::UINT8:
      out.v = uint64_t{c.read<uint8_t>("uint8 value")};
      break;
    case GgufType::INT8:
      out.v = int64_t{c.read<int8_t>("int8 value")};
      break;
    case GgufType::UINT16:
      out.v = uint64_t{c.read<uint16_t>("uint16 value")};
      break;
    case GgufType::INT16:
      out.v = int64_t{c.read<int16_t>("int16 value")};
      break;
    case GgufType::UINT32:
      out.v = uint64_t{c.read<uint32_t>("uint32 value")};
      break;
    case GgufType::INT32:
      out.v = int64_t{c.read<int32_t>("int32 value")};
      break;
    case GgufType::UINT64:
      out.v = c.read<uint64_t>("uint64 value");
      break;
    case GgufType::INT64:
      out.v = c.read<int64_t>("int64 value");
      break;
    case GgufType::FLOAT32:
      out.v = double{c.read<float>("float32 value")};
      break;
    case GgufType::FLOAT64:
      out.v = c.read<double>("float64 value");
      break;
    case GgufType::BOOL: {
      const uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) fail("{}: metadata '{}': bool value {} is neither 0 nor 1", path, key, b);
      out.v = b != 0;
      break;
    }
    case GgufType::STRING:
      out.v = c.read_string("string value");
      break;
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        fail("{}: metadata '{}': arrays nested deeper than {}", path, key, kMaxArrayDepth);
      const uint32_t et = c.read<uint32_t>("array element type");
      if (!valid_type(et)) fail("{}: metadata '{}': unknown array element type {}", path, key, et);
      const uint64_t n = c.read<uint64_t>("array length");
      const auto elem = static_cast<GgufType>(et);
      if (n > c.remaining() / min_encoded_size(elem))
        fail("{}: metadata '{}': array of {} elements does not fit in the {} bytes left", path, key, n,
             c.remaining());
      GgufArray arr;
      arr.elem_type = elem;
      arr.items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) arr.items.push_back(read_value(c, path, elem, key, depth + 1));
      out.v = std::move(arr);
      break;
    }
  }
  return out;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::string_view names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                               "int32",  "float32", "bool",   "string", "array",
                                               "uint64", "int64",   "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : "unknown";
}

bool GgufValue::is_integer() const {
  return std::holds_alternative<int64_t>(v) || std::holds_alternative<uint64_t>(v);
}

std::optional<int64_t> GgufValue::as_int() const {
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  return std::nullopt;
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f(MappedFile{path});
  Cursor c(path, f.map_.bytes());
  if (f.map_.size() < 4 || c.read<uint32_t>("magic") != kMagic) fail("{}: not a GGUF file (bad magic)", path);
  f.version_ = c.read<uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3)
    fail("{}: unsupported GGUF version {} (supported: 2, 3)", path, f.version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key/value needs >= 13 bytes and a tensor info >= 24: bound the counts by what is left.
  if (n_kv > c.remaining() / 13) fail("{}: metadata count {} does not fit in the file", path, n_kv);
  if (n_tensors > c.remaining() / 24) fail("{}: tensor count {} does not fit in the file", path, n_tensors);

  f.kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    const uint32_t t = c.read<uint32_t>("metadata value type");
    if (!valid_type(t)) fail("{}: metadata '{}': unknown value type {}", path, key, t);
    GgufValue value = read_value(c, path, static_cast<GgufType>(t), key, 0);
    if (!f.kv_index_.emplace(key, f.kv_.size()).second) fail("{}: duplicate metadata key '{}'", path, key);
    f.kv_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    const auto al = a->as_int();
    if (!al || *al <= 0 || (*al & (*al - 1)) != 0 || *al > (1 << 20))
      fail("{}: general.alignment must be a power of two, got {}", path,
           al ? std::to_string(*al) : "a non-integer");
    f.alignment_ = static_cast<uint32_t>(*al);
  }

  f.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name");
    const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("{}: tensor '{}': {} dimensions (must be 1..{})", path, t.name, n_dims, kMaxDims);
    t.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / t.n_elements)
        fail("{}: tensor '{}': dimension {} = {} is zero or overflows", path, t.name, d, dim);
      t.n_elements *= dim;
      t.dims.push_back(dim);
    }
    const uint32_t type = c.read<uint32_t>("tensor type");
    const auto traits = ggml_type_traits(type);
    if (!traits) fail("{}: tensor '{}': unknown tensor type {}", path, t.name, type);
    t.type = static_cast<GgmlType>(type);
    if (t.dims[0] % traits->block_size != 0)
      fail("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", path, t.name,
           t.dims[0], traits->name, traits->block_size);
    if (t.n_elements / traits->block_size > std::numeric_limits<uint64_t>::max() / traits->type_size)
      fail("{}: tensor '{}': size in bytes overflows", path, t.name);
    t.n_bytes = t.n_elements / traits->block_size * traits->type_size;
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.offset % f.alignment_ != 0)
      fail("{}: tensor '{}': offset {} is not aligned to {}", path, t.name, t.offset, f.alignment_);
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second)
      fail("{}: duplicate tensor '{}'", path, t.name);
    f.tensors_.push_back(std::move(t));
  }

  f.data_offset_ = (c.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  const uint64_t data_size = f.map_.size() >= f.data_offset_ ? f.map_.size() - f.data_offset_ : 0;
  if (n_tensors > 0 && f.data_offset_ > f.map_.size())
    fail("{}: truncated: tensor data would start at byte {} past the end ({} bytes)", path, f.data_offset_,
         f.map_.size());
  for (const auto& t : f.tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset)
      fail("{}: tensor '{}': data [{}, {}) runs past the end of the file ({} data bytes)", path, t.name,
           t.offset, t.offset + t.n_bytes, data_size);
  }
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto i = v->as_int();
  if (!i) fail("{}: metadata '{}' should be an integer, is {}", path(), key, gguf_type_name(v->type));
  return i;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto d = v->as_float();
  if (!d) fail("{}: metadata '{}' should be a number, is {}", path(), key, gguf_type_name(v->type));
  return d;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  auto b = v->as_bool();
  if (!b) fail("{}: metadata '{}' should be a bool, is {}", path(), key, gguf_type_name(v->type));
  return b;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  const std::string* s = v->as_string();
  if (!s) fail("{}: metadata '{}' should be a string, is {}", path(), key, gguf_type_name(v->type));
  return *s;
}

namespace {
const GgufArray* typed_array(const GgufFile& f, std::string_view key, const char* want) {
  const GgufValue* v = f.find(key);
  if (!v) return nullptr;
  const GgufArray* a = v->as_array();
  if (!a)
    fail("{}: metadata '{}' should be an array of {}, is {}", f.path(), key, want, gguf_type_name(v->type));
  return a;
}
}  // namespace

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufArray* a = typed_array(*this, key, "strings");
  if (!a) return std::nullopt;
  if (a->elem_type != GgufType::STRING)
    fail("{}: metadata '{}' should hold strings, holds {}", path(), key, gguf_type_name(a->elem_type));
  std::vector<std::string> out;
  out.reserve(a->items.size());
  for (const auto& it : a->items) out.push_back(*it.as_string());
  return out;
}

std::optional<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  const GgufArray* a = typed_array(*this, key, "numbers");
  if (!a) return std::nullopt;
  std::vector<float> out;
  out.reserve(a->items.size());
  for (const auto& it : a->items) {
    auto d = it.as_float();
    if (!d)
      fail("{}: metadata '{}' should hold numbers, holds {}", path(), key, gguf_type_name(a->elem_type));
    out.push_back(static_cast<float>(*d));
  }
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufArray* a = typed_array(*this, key, "integers");
  if (!a) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(a->items.size());
  for (const auto& it : a->items) {
    auto i = it.as_int();
    if (!i)
      fail("{}: metadata '{}' should hold integers, holds {}", path(), key, gguf_type_name(a->elem_type));
    out.push_back(*i);
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail("{}: missing tensor '{}'", path(), name);
  return *t;
}

}  // namespace llmd::model
