// ggml block dequantization: bit for bit against gguf-py's numpy dequantizers (fixture written by
// scripts/gen_ggml_fixtures.py from seeded random blocks of every type, and from rows of the SmolLM2 GGUF),
// the Q4_0/Q4_1 nibble helpers against the dequantizer, and the argument checks.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/file_io.h"
#include "core/gguf.h"
#include "core/random.h"
#include "qllm/half.h"
#include "quant/ggml_blocks.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;

const std::string kFixture = std::string(QLLM_SOURCE_DIR) + "/tests/fixtures/gguf/ggml_blocks.json";

std::vector<std::byte> from_hex(const std::string& hex) {
  std::vector<std::byte> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::byte>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

// "3f800000..." (8 hex digits per float, most significant first) -> float bits.
std::vector<uint32_t> bits_from_hex(const std::string& hex) {
  std::vector<uint32_t> out(hex.size() / 8);
  for (size_t i = 0; i < out.size(); ++i) out[i] = std::stoul(hex.substr(8 * i, 8), nullptr, 16);
  return out;
}

// Compares bit patterns; reports the count and the first few mismatches.
void expect_same_bits(const std::vector<float>& got, const std::vector<uint32_t>& expected,
                      const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(got[i]);
    if (bits != expected[i] && ++mismatches <= 5) {
      ADD_FAILURE() << what << " element " << i << ": got " << got[i] << " (0x" << std::hex << bits
                    << "), expected " << std::bit_cast<float>(expected[i]) << " (0x" << expected[i] << ")"
                    << std::dec;
    }
  }
  EXPECT_EQ(mismatches, 0) << what;
}

TEST(GgmlBlocks, BitExactWithGgufPyOnRandomBlocks) {
  const nlohmann::json fixture = read_json_file(kFixture);
  std::set<GgmlType> seen;
  for (const auto& entry : fixture.at("blocks")) {
    const auto type = static_cast<GgmlType>(entry.at("type_id").get<uint32_t>());
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    const auto bytes = from_hex(entry.at("bytes_hex").get<std::string>());
    std::vector<float> out(entry.at("elements").get<size_t>());
    dequantize_ggml(type, bytes, out);
    expect_same_bits(out, bits_from_hex(entry.at("expected_bits").get<std::string>()),
                     std::string(ggml_type_name(type)));
    seen.insert(type);
  }
  for (const GgmlType type :
       {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K,
        GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::F16, GgmlType::BF16}) {
    EXPECT_TRUE(seen.count(type)) << "no fixture blocks for " << ggml_type_name(type);
  }
}

TEST(GgmlBlocks, SmolLM2RowsMatchGgufPy) {
  const std::string shared = testing::shared_dir();
  const std::string path = shared + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (shared.empty() || !std::ifstream(path).good()) GTEST_SKIP() << "SmolLM2 GGUF not found: " << path;
  const nlohmann::json fixture = read_json_file(kFixture).at("smollm2");
  const GgufFile file = GgufFile::open(path);
  ASSERT_EQ(std::filesystem::file_size(path), fixture.at("file_size").get<uint64_t>());
  for (const auto& row : fixture.at("rows")) {
    const GgufTensor& t = file.tensor(row.at("tensor").get<std::string>());
    const GgmlTypeInfo& info = ggml_type_info(t.type);
    const int64_t row_elements = t.shape[0];
    ASSERT_EQ(row_elements, row.at("elements").get<int64_t>());
    const size_t row_bytes = static_cast<size_t>(row_elements / info.block_elements * info.block_bytes);
    const size_t index = row.at("row").get<size_t>();
    std::vector<float> out(static_cast<size_t>(row_elements));
    dequantize_ggml(t.type, t.span().subspan(index * row_bytes, row_bytes), out);
    expect_same_bits(out, bits_from_hex(row.at("expected_bits").get<std::string>()), t.name);
  }
}

std::vector<std::byte> random_blocks(GgmlType type, size_t blocks, Rng& rng) {
  std::vector<std::byte> bytes(blocks * ggml_type_info(type).block_bytes);
  for (auto& b : bytes) b = static_cast<std::byte>(rng.next_u64() & 0xff);
  return bytes;
}

TEST(GgmlBlocks, Q4NibblesReconstructTheDequantizedValues) {
  const uint64_t seed = testing::fresh_seed();
  SCOPED_TRACE(seed);
  Rng rng(seed);
  for (const GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1}) {
    const size_t blocks = 16;
    const auto bytes = random_blocks(type, blocks, rng);
    std::vector<float> dequantized(blocks * 32);
    dequantize_ggml(type, bytes, dequantized);
    const size_t block_bytes = ggml_type_info(type).block_bytes;
    for (size_t b = 0; b < blocks; ++b) {
      const std::byte* block = bytes.data() + b * block_bytes;
      const GgmlQ4Nibbles n = type == GgmlType::Q4_0 ? unpack_q4_0_block(block) : unpack_q4_1_block(block);
      uint16_t d_bits;
      std::memcpy(&d_bits, block, 2);
      EXPECT_EQ(n.d, d_bits);
      const float d = half_bits_to_float(n.d);
      const float m = half_bits_to_float(n.m);
      if (type == GgmlType::Q4_0) {
        EXPECT_EQ(n.m, 0);
      }
      for (int i = 0; i < 32; ++i) {
        ASSERT_LT(n.q[i], 16);
        const float expected =
            type == GgmlType::Q4_0 ? static_cast<float>(n.q[i] - 8) * d : static_cast<float>(n.q[i]) * d + m;
        const float got = dequantized[b * 32 + i];
        EXPECT_TRUE(std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(expected) ||
                    (std::isnan(got) && std::isnan(expected)))
            << ggml_type_name(type) << " block " << b << " element " << i;
      }
    }
  }
  // Element order: element i < 16 is the low nibble of byte i, element i + 16 its high nibble.
  std::vector<std::byte> block(18);
  block[2] = std::byte{0x21};
  block[17] = std::byte{0xf0};
  const GgmlQ4Nibbles n = unpack_q4_0_block(block.data());
  EXPECT_EQ(n.q[0], 1);
  EXPECT_EQ(n.q[16], 2);
  EXPECT_EQ(n.q[15], 0);
  EXPECT_EQ(n.q[31], 15);
}

TEST(GgmlBlocks, FloatTypes) {
  const std::vector<float> values = {1.0f, -2.5f, 0.0f, 65504.0f};
  std::vector<std::byte> f32(values.size() * 4), f16(values.size() * 2), bf16(values.size() * 2);
  std::memcpy(f32.data(), values.data(), f32.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = float_to_half_bits(values[i]);
    const uint16_t b = float_to_bf16_bits(values[i]);
    std::memcpy(f16.data() + 2 * i, &h, 2);
    std::memcpy(bf16.data() + 2 * i, &b, 2);
  }
  std::vector<float> out(values.size());
  dequantize_ggml(GgmlType::F32, f32, out);
  EXPECT_EQ(out, values);
  dequantize_ggml(GgmlType::F16, f16, out);
  EXPECT_EQ(out, values);
  dequantize_ggml(GgmlType::BF16, bf16, out);
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.5f, 0.0f, 65536.0f}));  // 65504 rounds to 2^16 in bf16
}

TEST(GgmlBlocks, ArgumentErrors) {
  std::vector<float> out(256);
  std::vector<std::byte> bytes(84);
  EXPECT_EQ(error_of([&] { dequantize_ggml(GgmlType::Q2_K, bytes, out); }),
            "dequantizing ggml type q2_K is not supported");
  EXPECT_FALSE(can_dequantize_ggml(GgmlType::IQ4_XS));
  EXPECT_TRUE(can_dequantize_ggml(GgmlType::Q6_K));
  std::vector<float> odd(48);
  EXPECT_EQ(error_of([&] { dequantize_ggml(GgmlType::Q4_0, std::vector<std::byte>(36), odd); }),
            "q4_0: 48 elements are not a whole number of 32-element blocks");
  std::vector<float> two_blocks(64);
  EXPECT_EQ(error_of([&] { dequantize_ggml(GgmlType::Q4_0, std::vector<std::byte>(37), two_blocks); }),
            "q4_0: 64 elements need 36 bytes, got 37");
  EXPECT_EQ(error_of([&] { dequantize_ggml(GgmlType::F16, std::vector<std::byte>(127), two_blocks); }),
            "f16: 64 elements need 128 bytes, got 127");
  EXPECT_NO_THROW(dequantize_ggml(GgmlType::Q6_K, {}, {}));
}

}  // namespace
}  // namespace qllm
