#pragma once
// GGUF v3 writer: metadata of every GgufType and tensors whose bytes come either from memory or from
// a callback that streams them, so a multi-gigabyte model is never held in memory. The layout is
// llama.cpp's: header, metadata, tensor infos, padding to the alignment, then each tensor's data at an
// aligned offset, zero-padded up to the next alignment (after the last tensor too).
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/ggml_type.hpp"
#include "model/gguf.hpp"

namespace llmd::model {

// Where a tensor's bytes go while the file is written. The writer checks that a tensor's callback
// writes exactly the tensor's size, so a short or long fill is an error, not a corrupt file.
class TensorSink {
 public:
  virtual ~TensorSink() = default;
  virtual void write(std::span<const uint8_t> bytes) = 0;
  void write(const void* data, size_t n) { write({static_cast<const uint8_t*>(data), n}); }
};

class GgufWriter {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;
  using Fill = std::function<void(TensorSink&)>;

  // Metadata keeps insertion order; setting a key again replaces its value in place (like gguf_set_*).
  // set() checks that the value's variant matches its type (and its range, for narrow integers).
  void set(std::string_view key, GgufValue value);
  void set_uint8(std::string_view key, uint8_t v);
  void set_int8(std::string_view key, int8_t v);
  void set_uint16(std::string_view key, uint16_t v);
  void set_int16(std::string_view key, int16_t v);
  void set_uint32(std::string_view key, uint32_t v);
  void set_int32(std::string_view key, int32_t v);
  void set_uint64(std::string_view key, uint64_t v);
  void set_int64(std::string_view key, int64_t v);
  void set_float32(std::string_view key, float v);
  void set_float64(std::string_view key, double v);
  void set_bool(std::string_view key, bool v);
  void set_string(std::string_view key, std::string v);
  void set_array(std::string_view key, GgufArray array);
  void set_string_array(std::string_view key, std::span<const std::string> items);
  void set_float32_array(std::string_view key, std::span<const float> items);
  void set_int32_array(std::string_view key, std::span<const int32_t> items);
  // Sets general.alignment (uint32); must be a power of two.
  void set_alignment(uint32_t alignment);

  const GgufValue* find(std::string_view key) const;
  bool remove(std::string_view key);
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  uint32_t alignment() const;

  // dims in ggml order (dims[0] innermost); 1..4 dimensions, none zero, dims[0] a multiple of the
  // type's block size. Throws llmd::Error for a bad shape or a duplicate name.
  void add_tensor(std::string_view name, std::vector<uint64_t> dims, GgmlType type,
                  std::vector<uint8_t> data);
  void add_tensor(std::string_view name, std::vector<uint64_t> dims, GgmlType type, Fill fill);
  size_t tensor_count() const { return tensors_.size(); }
  uint64_t tensor_bytes() const;  // sum of the tensors' sizes, without padding

  // Writes the whole file to PATH.tmp.PID next to `path`, then renames it over `path`: readers see
  // the old file or the complete new one. Throws llmd::Error "PATH: problem"; the temporary is removed.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    GgmlType type;
    uint64_t n_bytes;
    std::vector<uint8_t> data;  // used when fill is empty
    Fill fill;
  };
  void add(std::string_view name, std::vector<uint64_t> dims, GgmlType type, std::vector<uint8_t> data,
           Fill fill);

  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace llmd::model
