#include "model/gguf.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "model/gguf_writer.hpp"

namespace llmd::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// GGUF bytes assembled by hand, so the reader can be fed files that no writer would make.
class Bytes {
 public:
  template <class T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b_.insert(b_.end(), p, p + sizeof v);
    return *this;
  }
  Bytes& str(std::string_view s) {
    put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return put<uint32_t>(0x46554747).put(version).put(n_tensors).put(n_kv);
  }
  Bytes& kv_u32(std::string_view key, uint32_t v) { return str(key).put<uint32_t>(4).put(v); }
  Bytes& kv_str(std::string_view key, std::string_view v) { return str(key).put<uint32_t>(8).str(v); }
  Bytes& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(d);
    return put(type).put(offset);
  }
  Bytes& pad_to(size_t align) {
    while (b_.size() % align) b_.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b_.resize(b_.size() + n);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

class GgufReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("llmd-gguf-reader-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::vector<uint8_t>& b, size_t n, const std::string& name = "f.gguf") {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(n));
    return p;
  }
  std::string write(const Bytes& b) { return write(b.bytes(), b.bytes().size()); }

  // Opening must fail with an llmd::Error that names the file and the problem.
  void expect_rejected(const Bytes& b, const std::string& problem) {
    const std::string p = write(b);
    try {
      GgufFile::open(p);
      ADD_FAILURE() << "accepted a file that should fail with: " << problem;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(p));
      EXPECT_THAT(e.what(), HasSubstr(problem));
    }
  }

  fs::path dir_;
};

// One F32 tensor "w" of shape [4, 2] after a single key, laid out as the spec says.
Bytes valid_file() {
  Bytes b;
  b.header(1, 2).kv_str("general.architecture", "llama").kv_u32("answer", 42);
  b.tensor("w", {4, 2}, 0, 0).pad_to(32);
  for (int i = 0; i < 8; ++i) b.put<float>(static_cast<float>(i) * 0.5f);
  return b;
}

TEST_F(GgufReaderTest, ReadsAHandBuiltFile) {
  const GgufFile f = GgufFile::open(write(valid_file()));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("answer"), 42);
  EXPECT_EQ(f.find("answer")->type, GgufType::UINT32);
  EXPECT_EQ(f.find("missing"), nullptr);
  ASSERT_EQ(f.tensors().size(), 1u);
  const GgufTensorInfo& t = f.tensor("w");
  EXPECT_EQ(t.dims, (std::vector<uint64_t>{4, 2}));
  EXPECT_EQ(t.n_elements, 8u);
  EXPECT_EQ(t.n_bytes, 32u);
  EXPECT_EQ(t.rows(), 2u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  float v;
  std::memcpy(&v, f.tensor_data(t) + 7 * 4, 4);
  EXPECT_EQ(v, 3.5f);
  EXPECT_THROW(f.tensor("nope"), Error);
  EXPECT_THROW(f.get_int("general.architecture"), Error);  // wrong type is an error, not a zero
}

TEST_F(GgufReaderTest, Version2IsAccepted) {
  Bytes b;
  b.header(0, 1, 2).kv_u32("k", 1);
  EXPECT_EQ(GgufFile::open(write(b)).version(), 2u);
}

TEST_F(GgufReaderTest, RejectsBadMagic) {
  Bytes b;
  b.put<uint32_t>(0x58554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0);  // "GGUX"
  expect_rejected(b, "bad magic");
  expect_rejected(Bytes{}, "bad magic");  // empty file
}

TEST_F(GgufReaderTest, RejectsUnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    Bytes b;
    b.header(0, 0, v);
    expect_rejected(b, "unsupported GGUF version " + std::to_string(v));
  }
}

TEST_F(GgufReaderTest, EveryTruncationIsAnErrorNeverACrash) {
  // A file with metadata of every kind and several tensors, cut at every length short of its end.
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_uint8("u8", 1);
  w.set_int16("i16", -2);
  w.set_float64("f64", 0.25);
  w.set_bool("b", true);
  const std::vector<std::string> toks = {"<s>", "a",
                                         "\xe2\x96\x81"
                                         "b"};
  w.set_string_array("tokenizer.ggml.tokens", toks);
  const std::vector<float> scores = {0, -1, -2};
  w.set_float32_array("tokenizer.ggml.scores", scores);
  w.add_tensor("a", {8, 2}, GgmlType::F32, std::vector<uint8_t>(64, 1));
  w.add_tensor("b", {32}, GgmlType::Q8_0, std::vector<uint8_t>(34, 2));
  w.add_tensor("c", {3}, GgmlType::F16, std::vector<uint8_t>(6, 3));
  const std::string full = (dir_ / "full.gguf").string();
  w.write(full);
  const GgufFile f = GgufFile::open(full);
  const GgufTensorInfo& last = f.tensors().back();
  const uint64_t data_end = f.data_offset() + last.offset + last.n_bytes;  // the rest is padding
  std::ifstream in(full, std::ios::binary);
  const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
  ASSERT_GE(bytes.size(), data_end);

  for (size_t n = 0; n < data_end; ++n) {
    const std::string p = write(bytes, n, "cut.gguf");
    try {
      GgufFile::open(p);
      ADD_FAILURE() << "a file cut to " << n << " of " << data_end << " bytes was accepted";
    } catch (const Error& e) {
      ASSERT_THAT(e.what(), HasSubstr(p)) << n;
    }
  }
  // Cutting only the trailing padding leaves a complete file.
  EXPECT_NO_THROW(GgufFile::open(write(bytes, data_end, "cut.gguf")));
}

TEST_F(GgufReaderTest, RejectsStringLengthPastTheEnd) {
  Bytes b;
  b.header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1000).zeros(10);
  expect_rejected(b, "truncated string value");
  Bytes key;
  key.header(0, 1).put<uint64_t>(~0ull).zeros(20);  // the key's own length
  expect_rejected(key, "truncated metadata key");
}

TEST_F(GgufReaderTest, RejectsHugeArrayCounts) {
  for (uint64_t n : {uint64_t{1} << 40, ~uint64_t{0}, uint64_t{1} << 61}) {
    Bytes b;
    b.header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(n).zeros(16);
    expect_rejected(b, "metadata 'arr': array of");
  }
  Bytes strs;  // strings need 8 bytes each at least
  strs.header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(5).zeros(32);
  expect_rejected(strs, "does not fit");
}

TEST_F(GgufReaderTest, RejectsHugeKeyAndTensorCounts) {
  Bytes kv;
  kv.header(0, 1ull << 60).zeros(64);
  expect_rejected(kv, "metadata count");
  Bytes t;
  t.header(1ull << 60, 0).zeros(64);
  expect_rejected(t, "tensor count");
}

TEST_F(GgufReaderTest, RejectsUnknownValueTypes) {
  Bytes b;
  b.header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0);
  expect_rejected(b, "unknown value type 13");
  Bytes a;
  a.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(0);
  expect_rejected(a, "unknown array element type 77");
  Bytes bad_bool;
  bad_bool.header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2);
  expect_rejected(bad_bool, "neither 0 nor 1");
}

TEST_F(GgufReaderTest, RejectsBadDimensionCounts) {
  for (uint32_t n : {0u, 5u, 0xffffffffu}) {
    Bytes b;
    b.header(1, 0).str("t").put<uint32_t>(n).put<uint64_t>(4).put<uint32_t>(0).put<uint64_t>(0).zeros(64);
    expect_rejected(b, "tensor 't': " + std::to_string(n) + " dimensions");
  }
}

TEST_F(GgufReaderTest, RejectsOverflowingOrZeroDimensions) {
  Bytes b;
  b.header(1, 0).tensor("t", {1ull << 32, 1ull << 32}, 0, 0).pad_to(32).zeros(64);
  expect_rejected(b, "tensor 't': dimension 1");
  Bytes z;
  z.header(1, 0).tensor("t", {4, 0}, 0, 0).pad_to(32).zeros(64);
  expect_rejected(z, "is zero or overflows");
}

TEST_F(GgufReaderTest, RejectsElementCountsWhoseByteSizeOverflows) {
  // 2^62 F32 elements fit in int64 but their 2^64 bytes wrap to 0 in uint64: must not pass as an
  // empty tensor that fits in the file.
  Bytes b;
  b.header(1, 0).tensor("t", {1ull << 62}, 0, 0).pad_to(32).zeros(64);
  expect_rejected(b, "tensor 't'");
}

TEST_F(GgufReaderTest, RejectsUnknownTensorTypes) {
  for (uint32_t type : {4u, 5u, 99u}) {  // 4 and 5 were Q4_2/Q4_3, removed from ggml
    Bytes b;
    b.header(1, 0).tensor("t", {32}, type, 0).pad_to(32).zeros(256);
    expect_rejected(b, "unknown tensor type " + std::to_string(type));
  }
  Bytes blocks;
  blocks.header(1, 0).tensor("t", {33}, 8, 0).pad_to(32).zeros(256);  // Q8_0 rows are whole blocks
  expect_rejected(blocks, "not a multiple of the Q8_0 block size");
}

TEST_F(GgufReaderTest, RejectsMisalignedOffsets) {
  Bytes b;
  b.header(1, 0).tensor("t", {4}, 0, 4).pad_to(32).zeros(64);
  expect_rejected(b, "offset 4 is not aligned to 32");
}

TEST_F(GgufReaderTest, RejectsDataPastTheEnd) {
  Bytes b;
  b.header(2, 0).tensor("a", {4}, 0, 0).tensor("b", {16}, 0, 32).pad_to(32).zeros(32 + 63);
  expect_rejected(b, "tensor 'b': data [32, 96) runs past the end");
  Bytes far;
  far.header(1, 0).tensor("a", {4}, 0, 1ull << 62).pad_to(32).zeros(32);
  expect_rejected(far, "runs past the end");
  Bytes no_data;  // tensor infos end exactly where the data section should start: nothing follows
  no_data.header(1, 0).tensor("a", {4}, 0, 0);
  expect_rejected(no_data, "truncated");
}

TEST_F(GgufReaderTest, RejectsDuplicates) {
  Bytes b;
  b.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  expect_rejected(b, "duplicate metadata key 'k'");
  Bytes t;
  t.header(2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).pad_to(32).zeros(64);
  expect_rejected(t, "duplicate tensor 't'");
}

TEST_F(GgufReaderTest, RejectsBadAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 1u << 21}) {
    Bytes b;
    b.header(0, 1).kv_u32("general.alignment", a);
    expect_rejected(b, "general.alignment must be a power of two, got " + std::to_string(a));
  }
  Bytes s;
  s.header(0, 1).kv_str("general.alignment", "32");
  expect_rejected(s, "general.alignment must be a power of two, got a non-integer");
}

TEST_F(GgufReaderTest, HonoursAlignmentKey) {
  Bytes b;
  b.header(1, 1).kv_u32("general.alignment", 64).tensor("t", {4}, 0, 0).pad_to(64).zeros(16);
  const GgufFile f = GgufFile::open(write(b));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
}

TEST_F(GgufReaderTest, MissingFileNamesThePath) {
  const std::string p = (dir_ / "absent.gguf").string();
  try {
    GgufFile::open(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
  }
}

TEST(GgufStories, OpensTheSharedModel) {
  const GgufFile f = GgufFile::open(LLMD_SHARED_DIR "/models/stories260K.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 48u);
  EXPECT_EQ(f.data_offset(), 14176u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens")->size(), 512u);
  const GgufTensorInfo& emb = f.tensor("token_embd.weight");
  EXPECT_EQ(emb.dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(emb.type, GgmlType::F32);
  uint64_t end = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    end = std::max(end, f.data_offset() + t.offset + t.n_bytes);
  }
  EXPECT_LE(end, f.file_size());
}

}  // namespace
}  // namespace llmd::model
