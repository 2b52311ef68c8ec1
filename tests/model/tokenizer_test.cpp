#include "model/tokenizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/gguf_writer.hpp"
#include "model/pretokenizer.hpp"
#include "model/unicode.hpp"

namespace llmd::model {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kShared = LLMD_SHARED_DIR;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

const Tokenizer& vocab(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    const auto f = GgufFile::open(kShared + "/tokenizers/ggml-vocab-" + name + ".gguf");
    it = cache.emplace(name, Tokenizer::from_gguf(f)).first;
  }
  return it->second;
}

const Tokenizer& stories() {
  static const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(kShared + "/models/stories260K.gguf"));
  return tok;
}

// The texts of NAME.inp (separated as llama.cpp's test-tokenizer-0 separates them) and the ids of
// NAME.out, one line per text.
struct Vectors {
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
};

Vectors read_vectors(const std::string& name) {
  const std::string base = kShared + "/tokenizers/ggml-vocab-" + name + ".gguf";
  const std::string raw = read_file(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  Vectors v;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      v.texts.push_back(raw.substr(pos));
      break;
    }
    v.texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::istringstream out(read_file(base + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    v.ids.push_back(std::move(ids));
  }
  return v;
}

class TokenizerVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVectors, ReproducesEveryLine) {
  const Tokenizer& tok = vocab(GetParam());
  const Vectors v = read_vectors(GetParam());
  ASSERT_EQ(v.texts.size(), 46u);
  ASSERT_EQ(v.texts.size(), v.ids.size());
  for (size_t i = 0; i < v.texts.size(); ++i) {
    EXPECT_EQ(tok.encode(v.texts[i], false), v.ids[i])
        << GetParam() << " text " << i << ": '" << v.texts[i] << "'";
  }
}

TEST_P(TokenizerVectors, DecodeRoundTripsTheTexts) {
  const Tokenizer& tok = vocab(GetParam());
  const Vectors v = read_vectors(GetParam());
  for (size_t i = 0; i < v.texts.size(); ++i) {
    const auto ids = tok.encode(v.texts[i], false);
    EXPECT_EQ(tok.decode(ids), v.texts[i]) << GetParam() << " text " << i;
    // Streaming gives the same text, one token at a time.
    StreamDecoder d(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    streamed += d.finish();
    EXPECT_EQ(streamed, v.texts[i]) << GetParam() << " text " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerVectors,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder",
                                           "starcoder", "falcon"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

TEST(TokenizerLoad, ReadsKindsAndSpecialTokens) {
  EXPECT_EQ(vocab("llama-spm").model(), "llama");
  EXPECT_EQ(vocab("llama-spm").size(), 32000);
  EXPECT_EQ(vocab("llama-spm").bos(), 1);
  EXPECT_EQ(vocab("llama-spm").eos(), 2);
  EXPECT_TRUE(vocab("llama-spm").add_bos());
  EXPECT_TRUE(vocab("llama-spm").is_eog(2));
  EXPECT_TRUE(vocab("llama-spm").is_control(1));
  EXPECT_FALSE(vocab("llama-spm").is_control(1000));
  EXPECT_EQ(vocab("gpt-2").model(), "gpt2");
  EXPECT_EQ(vocab("gpt-2").pre(), "gpt-2");
  EXPECT_FALSE(vocab("gpt-2").add_bos());
  EXPECT_EQ(vocab("gpt-2").eos(), 50256);
  EXPECT_TRUE(vocab("gpt-2").is_eog(50256));
  EXPECT_TRUE(vocab("deepseek-coder").add_bos());
  EXPECT_EQ(vocab("deepseek-coder").bos(), 32013);
  // Phi-3: <|end|> ends a turn too.
  EXPECT_TRUE(vocab("phi-3").is_eog(32007));
  EXPECT_TRUE(vocab("phi-3").is_eog(32000));
  EXPECT_FALSE(vocab("phi-3").is_eog(32001));
  // As in llama.cpp, fill-in-the-middle tokens found by their text become control tokens.
  EXPECT_EQ(vocab("deepseek-coder").token_text(32016),
            "<\xEF\xBD\x9C"
            "fim\xE2\x96\x81"
            "begin\xEF\xBD\x9C>");
  EXPECT_TRUE(vocab("deepseek-coder").is_control(32016));
}

TEST(TokenizerEncode, AddsSpecialTokensWhenAsked) {
  EXPECT_THAT(stories().encode("Once upon a time", true), ElementsAre(1, 403, 407, 261, 378));
  EXPECT_THAT(stories().encode("Once upon a time", false), ElementsAre(403, 407, 261, 378));
  EXPECT_THAT(stories().encode("", true), ElementsAre(1));
  EXPECT_TRUE(stories().encode("", false).empty());
  // gpt-2 adds no BOS unless the file asks; deepseek's files ask.
  EXPECT_EQ(vocab("gpt-2").encode("Hello", true), vocab("gpt-2").encode("Hello", false));
  EXPECT_EQ(vocab("deepseek-llm").encode("Hello", true).front(), 100000);
}

TEST(TokenizerEncode, ParsesSpecialTokensOnlyWhenAsked) {
  const Tokenizer& tok = vocab("gpt-2");
  const auto parsed = tok.encode("a<|endoftext|>b", false, true);
  EXPECT_THAT(parsed, ElementsAre(tok.encode("a", false)[0], 50256, tok.encode("b", false)[0]));
  const auto plain = tok.encode("a<|endoftext|>b", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_EQ(tok.decode(plain), "a<|endoftext|>b");
  EXPECT_EQ(tok.decode(parsed), "ab");
  EXPECT_EQ(tok.decode(parsed, false), "a<|endoftext|>b");

  // SentencePiece: the raw text after a special token gets the space prefix again.
  const Tokenizer& spm = vocab("llama-spm");
  const auto ids = spm.encode("Hello</s>world", false, true);
  std::vector<int32_t> want = spm.encode("Hello", false);
  want.push_back(2);
  for (int32_t id : spm.encode("world", false)) want.push_back(id);
  EXPECT_EQ(ids, want);
}

TEST(TokenizerEncode, UserDefinedTokensAreAlwaysSplitOut) {
  // deepseek-coder's '<|EOT|>' is user-defined: recognised even without parse_special.
  const Tokenizer& tok = vocab("deepseek-coder");
  const auto eot = tok.find_token("<|EOT|>");
  ASSERT_TRUE(eot.has_value());
  const auto ids = tok.encode("x<|EOT|>y", false, false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *eot), 1);
  EXPECT_EQ(tok.token_to_piece(*eot), "<|EOT|>");
}

TEST(TokenizerEncode, Phi3SpecialTokensEatFollowingWhitespace) {
  const Tokenizer& tok = vocab("phi-3");
  const auto a = tok.encode("<|user|>\nHi<|end|>\n", false, true);
  const auto b = tok.encode("<|user|>Hi<|end|>", false, true);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.front(), 32010);
  EXPECT_EQ(a.back(), 32007);
}

TEST(TokenizerEncode, MalformedUtf8DoesNotCrash) {
  const std::string bad = "ok \xff\xfe \xe2\x82 \xc0\x80 \xed\xa0\x80 \xf8\x88\x80\x80\x80 end\xe2";
  for (const char* name :
       {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder", "starcoder", "falcon"}) {
    const auto ids = vocab(name).encode(bad, true, true);
    EXPECT_FALSE(ids.empty()) << name;
    const std::string text = vocab(name).decode(ids);
    EXPECT_NE(text.find("ok"), std::string::npos) << name;
  }
  // SentencePiece keeps raw bytes through byte fallback.
  const auto ids = vocab("llama-spm").encode("\xff", false);
  EXPECT_EQ(vocab("llama-spm").token_to_piece(ids.back()), "\xff");
}

TEST(TokenizerDecode, TokenToPiece) {
  const Tokenizer& spm = stories();
  EXPECT_EQ(spm.token_to_piece(403), " Once");
  EXPECT_EQ(spm.token_to_piece(1), "");
  EXPECT_EQ(spm.token_to_piece(1, true), "<s>");
  EXPECT_EQ(spm.token_to_piece(13), "\n");  // <0x0A>
  EXPECT_EQ(spm.token_to_piece(-1), "");
  EXPECT_EQ(spm.token_to_piece(1 << 30), "");
  const Tokenizer& bpe = vocab("gpt-2");
  EXPECT_EQ(bpe.token_to_piece(bpe.encode(" Hello", false)[0]), " Hello");
  EXPECT_EQ(bpe.token_to_piece(50256), "");
  EXPECT_EQ(bpe.token_to_piece(50256, true), "<|endoftext|>");
}

TEST(TokenizerDecode, LeadingSpaceRule) {
  const Tokenizer& tok = stories();
  const auto ids = tok.encode("Once upon a time", true);
  // As llama_detokenize: a leading BOS that is skipped keeps the next token's space.
  EXPECT_EQ(tok.decode(ids), " Once upon a time");
  EXPECT_EQ(tok.decode(ids, false), "<s> Once upon a time");
  EXPECT_EQ(tok.decode(std::span(ids).subspan(1)), "Once upon a time");
}

TEST(TokenizerDecode, GoldenCompletions) {
  const Tokenizer& tok = stories();
  const auto golden = nlohmann::json::parse(read_file(kShared + "/models/stories260K.golden.json"));
  ASSERT_FALSE(golden.empty());
  for (const auto& g : golden) {
    const auto prompt_ids = g.at("prompt_tokens").get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(g.at("prompt").get<std::string>(), true), prompt_ids);
    const auto ids = g.at("completion_tokens").get<std::vector<int32_t>>();
    const std::string want = g.at("completion").get<std::string>();
    EXPECT_EQ(tok.decode(ids), want);
    StreamDecoder d(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    streamed += d.finish();
    EXPECT_EQ(streamed, want);
  }
}

TEST(TokenizerStream, HoldsBackSplitCharacters) {
  const Tokenizer& tok = stories();
  // "€" is E2 82 AC, here arriving as three byte tokens <0xE2> <0x82> <0xAC>.
  std::vector<int32_t> bytes;
  for (const char* name : {"<0xE2>", "<0x82>", "<0xAC>"}) bytes.push_back(tok.find_token(name).value_or(-1));
  ASSERT_THAT(bytes, ::testing::Each(::testing::Ge(0)));
  EXPECT_EQ(tok.token_to_piece(bytes[0]), "\xE2");
  StreamDecoder d(tok);
  EXPECT_EQ(d.push(tok.encode("a", false).back()), "a");
  EXPECT_EQ(d.push(bytes[0]), "");
  EXPECT_EQ(d.push(bytes[1]), "");
  EXPECT_EQ(d.push(bytes[2]), "\xE2\x82\xAC");
  EXPECT_EQ(d.finish(), "");

  // Cut short: the leftover becomes one U+FFFD, as decode gives.
  StreamDecoder cut(tok);
  std::string s = cut.push(bytes[0]);
  s += cut.push(bytes[1]);
  EXPECT_EQ(s, "");
  s += cut.finish();
  EXPECT_EQ(s, "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{bytes[0], bytes[1]}), s);

  // A byte that cannot continue the sequence: U+FFFD now, then the byte's own fate.
  StreamDecoder bad(tok);
  std::string t = bad.push(bytes[0]);
  t += bad.push(tok.encode("a", false).back());
  EXPECT_EQ(t, "\xEF\xBF\xBD a");
}

TEST(TokenizerStream, MatchesDecodeOnEveryPrefixSplit) {
  const Tokenizer& tok = vocab("gpt-2");
  const auto ids = tok.encode("Hola 🦙 señor, ¿qué tal? 你好 — 😶‍🌫️", false);
  std::string streamed;
  StreamDecoder d(tok);
  for (int32_t id : ids) {
    const std::string part = d.push(id);
    std::string valid;
    EXPECT_EQ(unicode::append_valid_utf8(valid, part, true), part.size());
    EXPECT_EQ(valid, part) << "pushed text must be well-formed";
    streamed += part;
  }
  streamed += d.finish();
  EXPECT_EQ(streamed, tok.decode(ids));
  EXPECT_EQ(streamed, "Hola 🦙 señor, ¿qué tal? 你好 — 😶‍🌫️");
}

TEST(TokenizerStream, HeldEosMatchesDecode) {
  // A vocab that appends EOS drops a trailing EOS in decode; the stream must agree.
  const Tokenizer& tok = stories();
  const std::vector<int32_t> ids = {403, 2, 407};
  StreamDecoder d(tok);
  std::string s;
  for (int32_t id : ids) s += d.push(id);
  s += d.finish();
  EXPECT_EQ(s, tok.decode(ids));
}

TEST(TokenizerUnicode, Categories) {
  using unicode::Category;
  EXPECT_EQ(unicode::category('a'), Category::Letter);
  EXPECT_EQ(unicode::category(0x4E00), Category::Letter);
  EXPECT_EQ(unicode::category('7'), Category::Number);
  EXPECT_EQ(unicode::category(0x00BD), Category::Number);  // ½
  EXPECT_EQ(unicode::category('!'), Category::Punctuation);
  EXPECT_EQ(unicode::category('$'), Category::Symbol);
  EXPECT_EQ(unicode::category(0x0301), Category::Mark);
  EXPECT_EQ(unicode::category(0x00A0), Category::Separator);
  EXPECT_EQ(unicode::category(0x0000), Category::Other);
  EXPECT_EQ(unicode::category(0x0378), Category::Unassigned);
  EXPECT_EQ(unicode::category(0x110000), Category::Unassigned);
  EXPECT_TRUE(unicode::is_whitespace(0x3000));
  EXPECT_TRUE(unicode::is_whitespace(0x85));
  EXPECT_FALSE(unicode::is_whitespace(0x1C));
  EXPECT_FALSE(unicode::is_whitespace(0x200B));
}

std::vector<std::string> split(PreType type, std::string_view text) {
  std::vector<uint32_t> cps;
  unicode::decode_utf8_lenient(text, cps);
  std::vector<CpRange> pieces, scratch;
  pretokenize(type, cps, pieces, scratch);
  std::vector<std::string> out;
  for (const CpRange r : pieces) {
    std::string s;
    for (uint32_t i = r.begin; i < r.end; ++i) unicode::append_utf8(s, cps[i]);
    out.push_back(s);
  }
  return out;
}

TEST(TokenizerPre, Llama3AndQwen2Splits) {
  // Digits in threes (Llama 3) or ones (Qwen 2); a non-letter may lead a word; line breaks and
  // the whitespace before them stay together; case-insensitive contractions.
  EXPECT_THAT(split(PreType::Llama3, "Hello world 12345 it'S\tok"),
              ElementsAre("Hello", " world", " ", "123", "45", " it", "'S", "\tok"));
  EXPECT_THAT(split(PreType::Qwen2, "x 123"), ElementsAre("x", " ", "1", "2", "3"));
  EXPECT_THAT(split(PreType::Llama3, "a  \n\n  b"), ElementsAre("a", "  \n\n", " ", " b"));
  EXPECT_THAT(split(PreType::Llama3, "end.  "), ElementsAre("end", ".", "  "));
  EXPECT_THAT(split(PreType::Llama3, " ?!\n\nx"), ElementsAre(" ?!\n\n", "x"));
}

TEST(TokenizerPre, Gpt2Splits) {
  EXPECT_THAT(split(PreType::Gpt2, "Hello  world's 42!!\n x"),
              ElementsAre("Hello", " ", " world", "'s", " 42", "!!", "\n", " x"));
  EXPECT_THAT(split(PreType::Gpt2, "a   "), ElementsAre("a", "   "));
}

TEST(TokenizerPre, LongInputsAreLinear) {
  // Long runs used to be the quadratic cases of naive matchers.
  const std::string spaces(200000, ' ');
  const std::string digits(200000, '7');
  for (PreType t : {PreType::Default, PreType::Gpt2, PreType::Llama3, PreType::Qwen2, PreType::DeepseekLlm,
                    PreType::DeepseekCoder, PreType::Starcoder, PreType::Falcon}) {
    const auto start = std::chrono::steady_clock::now();
    split(t, spaces + "x" + spaces);
    split(t, digits);
    split(t, "\n" + spaces + "\n" + spaces + "y");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << static_cast<int>(t);
  }
}

// A megabyte of mixed text round-trips through every kind of vocab (speed is measured by
// benchmarks, not asserted here: a loaded CI machine must not fail a correct tokenizer).
TEST(TokenizerLargeInput, MegabyteRoundTrips) {
  const Vectors v = read_vectors("gpt-2");
  std::string text;
  while (text.size() < (1u << 20)) {
    for (const auto& t : v.texts) text += t + "\n";
  }
  for (const char* name : {"llama-spm", "gpt-2", "deepseek-llm", "starcoder"}) {
    const Tokenizer& tok = vocab(name);
    const auto ids = tok.encode(text, false);
    EXPECT_EQ(tok.decode(ids), text) << name;
  }
}

// --- malformed vocabularies -----------------------------------------------------------------

class TokenizerBadFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() / ("llmd_tok_" + std::to_string(getpid()) + ".gguf")).string();
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
    w_.set_string("tokenizer.ggml.model", "gpt2");
    w_.set_string("tokenizer.ggml.pre", "gpt-2");
    w_.set_string_array("tokenizer.ggml.tokens", tokens);
    std::vector<std::string> merges = {"a b"};
    w_.set_string_array("tokenizer.ggml.merges", merges);
    w_.set_uint32("tokenizer.ggml.bos_token_id", 1);
    w_.set_uint32("tokenizer.ggml.eos_token_id", 2);
  }
  void TearDown() override { fs::remove(path_); }

  Tokenizer load() {
    w_.write(path_);
    return Tokenizer::from_gguf(GgufFile::open(path_));
  }
  void expect_error(std::string_view what) {
    try {
      load();
      ADD_FAILURE() << "no error, wanted: " << what;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(path_));
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  }

  std::string path_;
  GgufWriter w_;
};

TEST_F(TokenizerBadFile, AGoodSmallVocabLoads) {
  const Tokenizer tok = load();
  EXPECT_THAT(tok.encode("ab", false), ElementsAre(5));
  EXPECT_THAT(tok.encode("ba", false), ElementsAre(4, 3));
}

TEST_F(TokenizerBadFile, Llama3StyleVocabKeepsWholeWordTokens) {
  // Llama 3's pre type skips the merges when the whole word is a token, and adds BOS by default.
  w_.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{"<s>", "a", "b", "c", "abc"});
  w_.set_string_array("tokenizer.ggml.merges", std::vector<std::string>{});
  w_.set_uint32("tokenizer.ggml.bos_token_id", 0);
  w_.set_uint32("tokenizer.ggml.eos_token_id", 0);
  EXPECT_THAT(load().encode("abc", false), ElementsAre(1, 2, 3));
  w_.set_string("tokenizer.ggml.pre", "llama-bpe");
  const Tokenizer tok = load();
  EXPECT_TRUE(tok.add_bos());
  EXPECT_THAT(tok.encode("abc", true), ElementsAre(0, 4));
}

TEST_F(TokenizerBadFile, SpacePrefixFollowsTheKey) {
  w_.set_string("tokenizer.ggml.model", "llama");
  w_.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>", "</s>",
                                                                        "\xE2\x96\x81"
                                                                        "a",
                                                                        "a"});
  w_.set_int32_array("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 1, 1});
  EXPECT_THAT(load().encode("a", true), ElementsAre(1, 3));
  EXPECT_EQ(load().decode(std::vector<int32_t>{3, 3}), "a a");
  w_.set_bool("tokenizer.ggml.add_space_prefix", false);
  EXPECT_THAT(load().encode("a", true), ElementsAre(1, 4));
  EXPECT_EQ(load().decode(std::vector<int32_t>{3, 3}), " a a");
}

TEST_F(TokenizerBadFile, MissingModel) {
  w_.remove("tokenizer.ggml.model");
  expect_error("tokenizer.ggml.model");
}

TEST_F(TokenizerBadFile, UnknownModel) {
  w_.set_string("tokenizer.ggml.model", "bert");
  expect_error("'bert'");
}

TEST_F(TokenizerBadFile, UnknownPreTokenizer) {
  w_.set_string("tokenizer.ggml.pre", "no-such-pre");
  expect_error("no-such-pre");
}

TEST_F(TokenizerBadFile, EmptyTokenList) {
  w_.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{});
  expect_error("tokenizer.ggml.tokens");
}

TEST_F(TokenizerBadFile, TokensOfWrongType) {
  w_.set_float32_array("tokenizer.ggml.tokens", std::vector<float>{1.0f});
  expect_error("tokenizer.ggml.tokens");
}

TEST_F(TokenizerBadFile, DuplicateToken) {
  w_.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{"a", "b", "a"});
  expect_error("duplicate token 'a'");
}

TEST_F(TokenizerBadFile, ShortScoresAndTypes) {
  w_.set_float32_array("tokenizer.ggml.scores", std::vector<float>{0.0f, 1.0f});
  expect_error("tokenizer.ggml.scores");
  w_.remove("tokenizer.ggml.scores");
  w_.set_int32_array("tokenizer.ggml.token_type", std::vector<int32_t>{1, 1});
  expect_error("tokenizer.ggml.token_type");
}

TEST_F(TokenizerBadFile, BadMerges) {
  w_.set_string_array("tokenizer.ggml.merges", std::vector<std::string>{"a c"});
  expect_error("merge 0 ('a c')");
  w_.set_string_array("tokenizer.ggml.merges", std::vector<std::string>{"ab"});
  expect_error("merge 0 ('ab')");
  w_.remove("tokenizer.ggml.merges");
  expect_error("tokenizer.ggml.merges");
}

TEST_F(TokenizerBadFile, SpecialIdOutOfRange) {
  w_.set_uint32("tokenizer.ggml.eos_token_id", 6);
  expect_error("tokenizer.ggml.eos_token_id = 6 is out of range");
}

TEST_F(TokenizerBadFile, AddBosWithoutBos) {
  w_.remove("tokenizer.ggml.bos_token_id");  // the gpt2 default, 11, is past this vocab
  w_.set_bool("tokenizer.ggml.add_bos_token", true);
  expect_error("add_bos_token");
}

TEST_F(TokenizerBadFile, BadByteToken) {
  w_.set_string("tokenizer.ggml.model", "llama");
  w_.set_int32_array("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 6, 1, 1});
  expect_error("token 3 is typed as a byte");
}

}  // namespace
}  // namespace llmd::model
