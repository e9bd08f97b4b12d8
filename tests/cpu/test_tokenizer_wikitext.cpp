// The whole WikiText-2 test text (1.3 MB): the same ids as Hugging Face `tokenizers` (count, SHA-256 of
// the ids as little-endian uint32, first 2000 ids). The encoding time is printed for information only:
// throughput targets belong to the benchmarks, not to unit tests.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/file_io.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/tokenizer_test_support.h"

namespace qllm {
namespace {

TEST(TokenizerSha256, KnownDigests) {
  testing::Sha256 empty;
  EXPECT_EQ(empty.hex_digest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  testing::Sha256 abc;
  abc.update(reinterpret_cast<const uint8_t*>("abc"), 3);
  EXPECT_EQ(abc.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks: the padding spills into a second one.
  const std::string long_text = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  testing::Sha256 two;
  two.update(reinterpret_cast<const uint8_t*>(long_text.data()), long_text.size());
  EXPECT_EQ(two.hex_digest(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

class TokenizerWikiText : public ::testing::TestWithParam<testing::GoldenTokenizer> {};

TEST_P(TokenizerWikiText, SameIdsAsHuggingFace) {
  const std::string dir = testing::shared_tokenizer_dir(GetParam().folder);
  QLLM_SKIP_WITHOUT_SHARED(dir);
  const nlohmann::json golden = testing::load_golden(GetParam().name)["wikitext"];
  const std::string text = read_text_file(testing::shared_dir() + "/" + golden["file"].get<std::string>());
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir);

  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tokenizer.encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ TIMING   ] %s: WikiText-2 test, %zu bytes -> %zu ids in %.3f s (%.2f MB/s)\n",
              GetParam().name, text.size(), ids.size(), seconds, text.size() / seconds / 1e6);

  EXPECT_EQ(ids.size(), golden["count"].get<size_t>());
  const auto first = golden["first_ids"].get<std::vector<int32_t>>();
  ASSERT_FALSE(first.empty()) << "no \"first_ids\" in the " << GetParam().name << " fixture";
  ASSERT_GE(ids.size(), first.size());
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(first.size())), first);
  EXPECT_EQ(testing::sha256_u32le(ids), golden["sha256_u32le"].get<std::string>());
  EXPECT_EQ(tokenizer.decode(ids, false), text);
}

INSTANTIATE_TEST_SUITE_P(Shared, TokenizerWikiText, ::testing::ValuesIn(testing::kGoldenTokenizers),
                         [](const auto& info) {
                           std::string name = info.param.name;
                           std::erase(name, '-');
                           return name;
                         });

}  // namespace
}  // namespace qllm
