#pragma once
// A read-only memory map of a whole file. Model weights are used straight from the map, so a
// multi-gigabyte GGUF costs page cache, not heap.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace llmd {

class MappedFile {
 public:
  // Throws llmd::Error naming the path when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace llmd
