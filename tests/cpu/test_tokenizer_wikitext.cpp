// The whole WikiText-2 test text (1.3 MB): the same ids as Hugging Face `tokenizers` (count, SHA-256 of
// the ids as little-endian uint32, first 2000 ids). The encoding time is printed for information only:
// throughput targets belong to the benchmarks, not to unit tests.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/file_io.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/tokenizer_test_support.h"

namespace qllm {
namespace {

// SHA-256 (FIPS 180-4), enough to fingerprint a test's output.
class Sha256 {
 public:
  void update(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      block_[fill_++] = data[i];
      if (fill_ == 64) compress();
    }
    length_ += n;
  }
  std::string hex_digest() {
    const uint64_t bits = length_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    for (int i = 7; i >= 0; --i) {
      const auto byte = static_cast<uint8_t>(bits >> (8 * i));
      update(&byte, 1);
    }
    std::string hex;
    for (const uint32_t word : state_) hex += fmt::format("{:08x}", word);
    return hex;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static constexpr std::array<uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::array<uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t{block_[4 * i]} << 24) | (uint32_t{block_[4 * i + 1]} << 16) |
             (uint32_t{block_[4 * i + 2]} << 8) | block_[4 * i + 3];
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::array<uint32_t, 8> v = state_;
    for (int i = 0; i < 64; ++i) {
      const uint32_t s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
      const uint32_t choose = (v[4] & v[5]) ^ (~v[4] & v[6]);
      const uint32_t t1 = v[7] + s1 + choose + k[i] + w[i];
      const uint32_t s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
      const uint32_t majority = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
      v = {t1 + s0 + majority, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (int i = 0; i < 8; ++i) state_[i] += v[i];
    fill_ = 0;
  }

  std::array<uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t fill_ = 0;
  uint64_t length_ = 0;
};

std::string sha256_u32le(const std::vector<int32_t>& ids) {
  Sha256 sha;
  for (const int32_t id : ids) {
    const auto v = static_cast<uint32_t>(id);
    const uint8_t bytes[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8),
                              static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 24)};
    sha.update(bytes, 4);
  }
  return sha.hex_digest();
}

TEST(TokenizerSha256, KnownDigests) {
  Sha256 empty;
  EXPECT_EQ(empty.hex_digest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.update(reinterpret_cast<const uint8_t*>("abc"), 3);
  EXPECT_EQ(abc.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks: the padding spills into a second one.
  const std::string long_text = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  Sha256 two;
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
  EXPECT_EQ(sha256_u32le(ids), golden["sha256_u32le"].get<std::string>());
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
