#pragma once
// GGUF v2/v3 reader. The file is memory-mapped; metadata is parsed eagerly and every length, count,
// dimension and offset is checked against the file before anything is allocated or read, so a file
// that lies yields an llmd::Error naming the file and the problem, never a crash.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/mapped_file.hpp"
#include "model/ggml_type.hpp"

namespace llmd::model {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufType t);

struct GgufValue;
struct GgufArray {
  GgufType elem_type = GgufType::UINT8;
  std::vector<GgufValue> items;
};

// One metadata value. Integers of every width are held as int64_t or uint64_t (by signedness),
// floats as double; `type` keeps the width the file used.
struct GgufValue {
  GgufType type = GgufType::UINT8;
  std::variant<int64_t, uint64_t, double, bool, std::string, GgufArray> v;

  bool is_integer() const;
  bool is_number() const { return is_integer() || type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;  // any number
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const GgufArray* as_array() const { return std::get_if<GgufArray>(&v); }
  std::optional<bool> as_bool() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the innermost (row length)
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  uint64_t rows() const { return dims.empty() ? 0 : n_elements / dims[0]; }
};

class GgufFile {
 public:
  // Throws llmd::Error "PATH: what is wrong" for anything that is not a well-formed GGUF v2/v3.
  static GgufFile open(const std::string& path);

  const std::string& path() const { return map_.path(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return map_.size(); }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // Typed array getters: nullopt when absent; throw when present with the wrong element type.
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // Throws when absent.
  const GgufTensorInfo& tensor(std::string_view name) const;
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return map_.data() + data_offset_ + t.offset; }

 private:
  explicit GgufFile(MappedFile map) : map_(std::move(map)) {}
  MappedFile map_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace llmd::model
