#include "model/gguf_writer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "common/error.hpp"
#include "model/gguf.hpp"

namespace llmd::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A scratch folder per test process (ctest runs tests in parallel), removed afterwards.
class GgufWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("llmd-gguf-writer-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start = 0) {
  std::vector<uint8_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

TEST_F(GgufWriterTest, MetadataOfEveryTypeRoundTrips) {
  GgufWriter w;
  w.set_uint8("u8", 200);
  w.set_int8("i8", -100);
  w.set_uint16("u16", 60000);
  w.set_int16("i16", -30000);
  w.set_uint32("u32", 4000000000u);
  w.set_int32("i32", -2000000000);
  w.set_uint64("u64", 18000000000000000000ull);
  w.set_int64("i64", -9000000000000000000ll);
  w.set_float32("f32", 0.5f);
  w.set_float64("f64", 1.0 / 3.0);
  w.set_bool("yes", true);
  w.set_bool("no", false);
  w.set_string("s", "h\xc3\xa9llo");
  w.set_string("empty", "");
  const std::vector<std::string> strs = {"a", "", "\xe2\x96\x81the"};
  w.set_string_array("strs", strs);
  const std::vector<float> floats = {1.5f, -2.0f};
  w.set_float32_array("floats", floats);
  const std::vector<int32_t> ints = {1, -2, 3};
  w.set_int32_array("ints", ints);
  GgufArray u8s{GgufType::UINT8, {}};
  for (uint64_t i : {1u, 2u, 255u}) u8s.items.push_back(GgufValue{GgufType::UINT8, i});
  w.set_array("u8s", u8s);
  GgufArray nested{GgufType::ARRAY, {GgufValue{GgufType::ARRAY, u8s}, GgufValue{GgufType::ARRAY, u8s}}};
  w.set_array("nested", nested);
  w.set_array("no_items", GgufArray{GgufType::INT64, {}});
  w.write(path("m.gguf"));

  const GgufFile f = GgufFile::open(path("m.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.find("general.alignment"), nullptr);  // the default is not written, as llama.cpp does
  ASSERT_EQ(f.metadata().size(), w.metadata().size());
  for (size_t i = 0; i < f.metadata().size(); ++i) {
    EXPECT_EQ(f.metadata()[i].first, w.metadata()[i].first);  // order kept
    EXPECT_EQ(f.metadata()[i].second.type, w.metadata()[i].second.type) << f.metadata()[i].first;
  }
  EXPECT_EQ(f.get_int("u8"), 200);
  EXPECT_EQ(f.get_int("i8"), -100);
  EXPECT_EQ(f.get_int("u16"), 60000);
  EXPECT_EQ(f.get_int("i16"), -30000);
  EXPECT_EQ(f.get_int("u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("i32"), -2000000000);
  EXPECT_EQ(std::get<uint64_t>(f.find("u64")->v), 18000000000000000000ull);
  EXPECT_EQ(f.get_int("i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_float("f32"), 0.5);
  EXPECT_EQ(f.get_float("f64"), 1.0 / 3.0);
  EXPECT_EQ(f.get_bool("yes"), true);
  EXPECT_EQ(f.get_bool("no"), false);
  EXPECT_EQ(f.get_string("s"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_string("empty"), "");
  EXPECT_EQ(f.get_string_array("strs"), strs);
  EXPECT_EQ(f.get_float_array("floats"), floats);
  EXPECT_EQ(f.get_int_array("ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_int_array("u8s"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f.find("u8s")->as_array()->elem_type, GgufType::UINT8);
  const GgufArray* n = f.find("nested")->as_array();
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->items.size(), 2u);
  EXPECT_EQ(n->items[1].as_array()->items[2].as_int(), 255);
  EXPECT_TRUE(f.find("no_items")->as_array()->items.empty());
  EXPECT_EQ(f.find("no_items")->as_array()->elem_type, GgufType::INT64);
}

TEST_F(GgufWriterTest, SettingAKeyAgainReplacesItInPlace) {
  GgufWriter w;
  w.set_uint32("a", 1);
  w.set_string("b", "x");
  w.set_string("a", "now a string");
  ASSERT_EQ(w.metadata().size(), 2u);
  EXPECT_EQ(w.metadata()[0].first, "a");
  EXPECT_EQ(*w.find("a")->as_string(), "now a string");
  EXPECT_TRUE(w.remove("b"));
  EXPECT_FALSE(w.remove("b"));
  EXPECT_EQ(w.metadata().size(), 1u);
}

TEST_F(GgufWriterTest, TensorsFromBytesAndFromCallbacksRoundTrip) {
  GgufWriter w;
  w.set_string("general.architecture", "test");
  const auto a = iota_bytes(4 * 3 * 5);  // F32 [3, 5]
  const auto b = iota_bytes(2 * 34, 7);  // Q8_0 [64]: 2 blocks
  w.add_tensor("a", {3, 5}, GgmlType::F32, a);
  w.add_tensor("b", {64}, GgmlType::Q8_0, b);
  w.add_tensor("c", {32, 2, 3, 1}, GgmlType::Q4_0, [](TensorSink& s) {
    for (int row = 0; row < 6; ++row) {
      const auto r = iota_bytes(18, static_cast<uint8_t>(row * 18));
      s.write(r.data(), r.size());
    }
  });
  w.add_tensor("d", {1}, GgmlType::I8, std::vector<uint8_t>{42});
  EXPECT_EQ(w.tensor_count(), 4u);
  EXPECT_EQ(w.tensor_bytes(), a.size() + b.size() + 108 + 1);
  w.write(path("t.gguf"));

  const GgufFile f = GgufFile::open(path("t.gguf"));
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  const auto& ta = f.tensor("a");
  EXPECT_EQ(ta.dims, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(ta.type, GgmlType::F32);
  EXPECT_EQ(std::memcmp(f.tensor_data(ta), a.data(), a.size()), 0);
  const auto& tb = f.tensor("b");
  EXPECT_EQ(tb.type, GgmlType::Q8_0);
  EXPECT_EQ(tb.n_bytes, b.size());
  EXPECT_EQ(std::memcmp(f.tensor_data(tb), b.data(), b.size()), 0);
  const auto& tc = f.tensor("c");
  EXPECT_EQ(tc.dims, (std::vector<uint64_t>{32, 2, 3, 1}));
  EXPECT_EQ(tc.rows(), 6u);
  EXPECT_EQ(std::memcmp(f.tensor_data(tc), iota_bytes(108).data(), 108), 0);
  EXPECT_EQ(f.tensor_data(f.tensor("d"))[0], 42);
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;
  // Tensors are packed in order, each on the next aligned offset; the file ends padded too.
  EXPECT_EQ(tb.offset, 64u);
  EXPECT_EQ(tc.offset, 160u);  // b: 68 bytes padded to 96
  EXPECT_EQ(f.file_size() % 32, 0u);
}

TEST_F(GgufWriterTest, AlignmentIsHonoured) {
  for (uint32_t align : {1u, 8u, 64u, 4096u}) {
    GgufWriter w;
    w.set_alignment(align);
    EXPECT_EQ(w.alignment(), align);
    w.add_tensor("x", {3}, GgmlType::F32, iota_bytes(12));
    w.add_tensor("y", {5}, GgmlType::F16, iota_bytes(10));
    w.write(path("a.gguf"));
    const GgufFile f = GgufFile::open(path("a.gguf"));
    EXPECT_EQ(f.alignment(), align);
    EXPECT_EQ(f.get_int("general.alignment"), align);
    EXPECT_EQ(f.data_offset() % align, 0u);
    EXPECT_EQ(f.tensor("y").offset, (12 + align - 1) / align * align);
    EXPECT_EQ(f.tensor_data(f.tensor("y"))[9], 9);
  }
}

TEST_F(GgufWriterTest, LargeStreamedTensorCrossesBufferBoundaries) {
  // Odd-sized writes straddle the writer's buffer, and one write is bigger than the buffer.
  constexpr uint64_t kCols = 1024, kRows = 3000;  // 12 MB of F32
  GgufWriter w;
  w.add_tensor("big", {kCols, kRows}, GgmlType::F32, [&](TensorSink& s) {
    std::vector<uint8_t> chunk;
    uint64_t done = 0;
    const uint64_t total = kCols * kRows * 4;
    for (uint64_t piece = 7; done < total; piece = piece * 3 % 9000001 + 1) {
      const uint64_t n = std::min(piece, total - done);
      chunk.resize(n);
      for (uint64_t i = 0; i < n; ++i) chunk[i] = static_cast<uint8_t>((done + i) * 31 >> 3);
      s.write(chunk);
      done += n;
    }
  });
  w.write(path("big.gguf"));
  const GgufFile f = GgufFile::open(path("big.gguf"));
  const uint8_t* p = f.tensor_data(f.tensor("big"));
  for (uint64_t i = 0; i < kCols * kRows * 4; i += 4093)
    ASSERT_EQ(p[i], static_cast<uint8_t>(i * 31 >> 3)) << i;
}

TEST_F(GgufWriterTest, ShortOrLongFillIsAnErrorAndLeavesNoFile) {
  for (int extra : {-1, 1}) {
    GgufWriter w;
    w.add_tensor("t", {8}, GgmlType::F32,
                 [extra](TensorSink& s) { s.write(iota_bytes(static_cast<size_t>(32 + extra))); });
    try {
      w.write(path("bad.gguf"));
      FAIL() << "no error for a fill of " << 32 + extra << " bytes";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("bad.gguf"));
      EXPECT_THAT(e.what(), HasSubstr("tensor 't'"));
    }
    EXPECT_FALSE(fs::exists(path("bad.gguf")));
    EXPECT_TRUE(fs::is_empty(dir_)) << "temporary file left behind";
  }
}

TEST_F(GgufWriterTest, FailedWriteKeepsTheOldFile) {
  GgufWriter good;
  good.set_string("v", "old");
  good.write(path("m.gguf"));
  const std::string before = read_all(path("m.gguf"));

  GgufWriter bad;
  bad.set_string("v", "new");
  bad.add_tensor("t", {4}, GgmlType::F32, [](TensorSink&) { throw Error("generator failed"); });
  EXPECT_THROW(bad.write(path("m.gguf")), Error);
  EXPECT_EQ(read_all(path("m.gguf")), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1);

  GgufWriter next;
  next.set_string("v", "new");
  next.write(path("m.gguf"));  // replaces the existing file
  EXPECT_EQ(GgufFile::open(path("m.gguf")).get_string("v"), "new");
}

TEST_F(GgufWriterTest, UnwritablePathNamesThePath) {
  GgufWriter w;
  const std::string p = path("no/such/dir/m.gguf");
  try {
    w.write(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
    EXPECT_THAT(e.what(), HasSubstr("cannot create"));
  }
}

TEST_F(GgufWriterTest, RejectsBadTensors) {
  GgufWriter w;
  w.add_tensor("t", {32}, GgmlType::F32, iota_bytes(128));
  auto fill = [](TensorSink&) {};
  EXPECT_THROW(w.add_tensor("t", {32}, GgmlType::F32, iota_bytes(128)), Error);  // duplicate
  EXPECT_THROW(w.add_tensor("e", {}, GgmlType::F32, fill), Error);
  EXPECT_THROW(w.add_tensor("e", {1, 1, 1, 1, 1}, GgmlType::F32, fill), Error);
  EXPECT_THROW(w.add_tensor("e", {4, 0}, GgmlType::F32, fill), Error);
  EXPECT_THROW(w.add_tensor("e", {1ull << 40, 1ull << 40}, GgmlType::F32, fill), Error);  // overflows
  EXPECT_THROW(w.add_tensor("e", {1ull << 62}, GgmlType::F32, fill), Error);              // bytes overflow
  EXPECT_THROW(w.add_tensor("e", {33}, GgmlType::Q8_0, fill), Error);                     // not whole blocks
  EXPECT_THROW(w.add_tensor("e", {32}, GgmlType::F32, iota_bytes(127)), Error);           // wrong byte count
  EXPECT_THROW(w.add_tensor("e", {32}, static_cast<GgmlType>(99), fill), Error);
  EXPECT_THROW(w.add_tensor("e", {32}, GgmlType::F32, GgufWriter::Fill{}), Error);
  EXPECT_EQ(w.tensor_count(), 1u);
}

TEST_F(GgufWriterTest, RejectsValuesThatDoNotMatchTheirType) {
  GgufWriter w;
  EXPECT_THROW(w.set("k", GgufValue{GgufType::UINT8, uint64_t{256}}), Error);
  EXPECT_THROW(w.set("k", GgufValue{GgufType::INT8, int64_t{-129}}), Error);
  EXPECT_THROW(w.set("k", GgufValue{GgufType::UINT32, int64_t{1}}), Error);  // signedness
  EXPECT_THROW(w.set("k", GgufValue{GgufType::STRING, 1.0}), Error);
  EXPECT_THROW(w.set("k", GgufValue{GgufType::BOOL, uint64_t{1}}), Error);
  GgufArray mixed{GgufType::UINT8,
                  {GgufValue{GgufType::UINT8, uint64_t{1}}, GgufValue{GgufType::INT8, int64_t{1}}}};
  EXPECT_THROW(w.set_array("k", mixed), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.set_string("general.alignment", "32"), Error);
  EXPECT_TRUE(w.metadata().empty());
}

}  // namespace
}  // namespace llmd::model
