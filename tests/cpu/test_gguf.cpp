// GGUF reader: every metadata value type (v2 and v3), typed getters and their errors, alignment, tensor
// infos, one test per malformation, truncation at every byte, random corruption, and the real SmolLM2 file
// when ../shared has it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/gguf.h"
#include "core/random.h"
#include "qllm/error.h"
#include "tests/cpu/gguf_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::ByteWriter;
using testing::error_of;
using testing::GgufBuilder;
using testing::GgufTestTensor;

std::vector<std::byte> filled_bytes(size_t n, uint8_t first) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>(first + i);
  return out;
}

GgufFile parse(const std::vector<std::byte>& bytes) {
  return GgufFile::parse(bytes, "test.gguf");
}

// Expects parsing to fail with a message that contains every fragment.
void expect_parse_error(const std::vector<std::byte>& bytes, std::initializer_list<std::string> fragments) {
  const std::string message = error_of([&] { parse(bytes); });
  for (const std::string& fragment : fragments) {
    EXPECT_NE(message.find(fragment), std::string::npos)
        << "message '" << message << "' lacks '" << fragment << "'";
  }
}

// A file with one metadata value of every type, a nested array, and three tensors of different types.
GgufBuilder every_value_type_file(uint32_t version) {
  GgufBuilder b;
  b.version = version;
  b.kv<uint8_t>("u8", 200)
      .kv<int8_t>("i8", -100)
      .kv<uint16_t>("u16", 60000)
      .kv<int16_t>("i16", -30000)
      .kv<uint32_t>("u32", 4000000000u)
      .kv<int32_t>("i32", -2000000000)
      .kv<float>("f32", 1.5f)
      .kv<bool>("bool", true)
      .kv_string("string", "héllo")
      .kv<uint64_t>("u64", 1ull << 60)
      .kv<int64_t>("i64", -(1ll << 60))
      .kv<double>("f64", 0.1)
      .kv_array<uint8_t>("a.u8", {1, 2, 255})
      .kv_array<int8_t>("a.i8", {-1, 2})
      .kv_array<uint16_t>("a.u16", {65535})
      .kv_array<int16_t>("a.i16", {-5, 5})
      .kv_array<uint32_t>("a.u32", {7, 8, 9})
      .kv_array<int32_t>("a.i32", {-7, 1 << 30})
      .kv_array<float>("a.f32", {0.25f, -2.0f})
      .kv_array<bool>("a.bool", {true, false, true})
      .kv_string_array("a.string", {"a", "", "ccc"})
      .kv_array<uint64_t>("a.u64", {1ull << 40})
      .kv_array<int64_t>("a.i64", {-3})
      .kv_array<double>("a.f64", {2.5, -0.5})
      .kv_array<uint32_t>("a.empty", {});
  // An array of two arrays of int32: [[1, 2], []].
  ByteWriter nested;
  nested.put(static_cast<uint32_t>(GgufValueType::Array)).put<uint64_t>(2);
  nested.put(static_cast<uint32_t>(GgufValueType::I32)).put<uint64_t>(2).put<int32_t>(1).put<int32_t>(2);
  nested.put(static_cast<uint32_t>(GgufValueType::I32)).put<uint64_t>(0);
  b.kv_raw("a.nested", static_cast<uint32_t>(GgufValueType::Array), nested);
  b.tensor({"norm", {8}, GgmlType::F32, filled_bytes(32, 1), {}})
      .tensor({"w.q4_0", {64, 2}, GgmlType::Q4_0, filled_bytes(4 * 18, 7), {}})
      .tensor({"w.q4_k", {256}, GgmlType::Q4_K, filled_bytes(144, 3), {}});
  return b;
}

class GgufVersions : public ::testing::TestWithParam<uint32_t> {};
INSTANTIATE_TEST_SUITE_P(V2AndV3, GgufVersions, ::testing::Values(2u, 3u));

TEST_P(GgufVersions, ReadsEveryValueType) {
  const auto bytes = every_value_type_file(GetParam()).build();
  const GgufFile f = parse(bytes);
  EXPECT_EQ(f.version(), GetParam());
  EXPECT_EQ(f.metadata().size(), 26u);
  EXPECT_EQ(f.metadata()[0].key, "u8");  // file order kept

  EXPECT_EQ(f.get_u32("u8"), 200u);
  EXPECT_EQ(f.get_i32("i8"), -100);
  EXPECT_EQ(f.get_u32("u16"), 60000u);
  EXPECT_EQ(f.get_i64("i16"), -30000);
  EXPECT_EQ(f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(f.get_i32("i32"), -2000000000);
  EXPECT_EQ(f.get_f32("f32"), 1.5f);
  EXPECT_TRUE(f.get_bool("bool"));
  EXPECT_EQ(f.get_string("string"), "héllo");
  EXPECT_EQ(f.get_u64("u64"), 1ull << 60);
  EXPECT_EQ(f.get_i64("i64"), -(1ll << 60));
  EXPECT_EQ(f.get_f32("f64"), 0.1f);
  EXPECT_EQ(std::get<double>(f.get("f64").value), 0.1);
  for (const auto& [key, type] :
       std::vector<std::pair<std::string, GgufValueType>>{{"u8", GgufValueType::U8},
                                                          {"i8", GgufValueType::I8},
                                                          {"u16", GgufValueType::U16},
                                                          {"i16", GgufValueType::I16},
                                                          {"u32", GgufValueType::U32},
                                                          {"i32", GgufValueType::I32},
                                                          {"f32", GgufValueType::F32},
                                                          {"bool", GgufValueType::Bool},
                                                          {"string", GgufValueType::String},
                                                          {"u64", GgufValueType::U64},
                                                          {"i64", GgufValueType::I64},
                                                          {"f64", GgufValueType::F64},
                                                          {"a.u8", GgufValueType::Array}}) {
    EXPECT_EQ(f.get(key).type(), type) << key;
  }

  EXPECT_EQ(f.get_i32_array("a.u8"), (std::vector<int32_t>{1, 2, 255}));
  EXPECT_EQ(f.get_i32_array("a.i8"), (std::vector<int32_t>{-1, 2}));
  EXPECT_EQ(f.get_i32_array("a.u16"), (std::vector<int32_t>{65535}));
  EXPECT_EQ(f.get_i64_array("a.i16"), (std::vector<int64_t>{-5, 5}));
  EXPECT_EQ(f.get_i32_array("a.u32"), (std::vector<int32_t>{7, 8, 9}));
  EXPECT_EQ(f.get_i32_array("a.i32"), (std::vector<int32_t>{-7, 1 << 30}));
  EXPECT_EQ(f.get_f32_array("a.f32"), (std::vector<float>{0.25f, -2.0f}));
  EXPECT_EQ(std::get<std::vector<bool>>(f.get_array("a.bool").elements),
            (std::vector<bool>{true, false, true}));
  EXPECT_EQ(f.get_string_array("a.string"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_i64_array("a.u64"), (std::vector<int64_t>{1ll << 40}));
  EXPECT_EQ(f.get_i64_array("a.i64"), (std::vector<int64_t>{-3}));
  EXPECT_EQ(std::get<std::vector<double>>(f.get_array("a.f64").elements), (std::vector<double>{2.5, -0.5}));
  EXPECT_EQ(f.get_array("a.empty").size(), 0u);
  EXPECT_EQ(f.get_array("a.empty").element_type(), GgufValueType::U32);

  const GgufArray& nested = f.get_array("a.nested");
  ASSERT_EQ(nested.element_type(), GgufValueType::Array);
  const auto& inner = std::get<std::vector<GgufArray>>(nested.elements);
  ASSERT_EQ(inner.size(), 2u);
  EXPECT_EQ(std::get<std::vector<int32_t>>(inner[0].elements), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(inner[1].size(), 0u);
}

TEST_P(GgufVersions, ReadsTensorInfosAndData) {
  const auto bytes = every_value_type_file(GetParam()).build();
  const GgufFile f = parse(bytes);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  ASSERT_EQ(f.tensors().size(), 3u);
  const GgufTensor& q4 = f.tensor("w.q4_0");
  EXPECT_EQ(q4.shape, (std::vector<int64_t>{64, 2}));
  EXPECT_EQ(q4.type, GgmlType::Q4_0);
  EXPECT_EQ(q4.elements(), 128);
  EXPECT_EQ(q4.bytes, 4u * 18);
  EXPECT_EQ(q4.offset, 32u);  // after the 32 bytes of "norm"
  EXPECT_EQ(q4.data, bytes.data() + f.data_offset() + q4.offset);
  EXPECT_EQ(std::memcmp(q4.data, filled_bytes(72, 7).data(), 72), 0);
  const GgufTensor& k = f.tensor("w.q4_k");
  EXPECT_EQ(k.offset, 128u);  // 32 + 72 rounded up to 32
  EXPECT_EQ(k.bytes, 144u);
  EXPECT_EQ(k.data + k.bytes, bytes.data() + bytes.size());
  EXPECT_EQ(f.find_tensor("absent"), nullptr);
  EXPECT_NE(error_of([&] { f.tensor("absent"); }).find("test.gguf: no tensor named 'absent'"),
            std::string::npos);
}

TEST(Gguf, TypedGettersNameKeyAndTypes) {
  const auto bytes = every_value_type_file(3).build();
  const GgufFile f = parse(bytes);
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_FALSE(f.contains("absent"));
  EXPECT_TRUE(f.contains("u8"));
  EXPECT_EQ(error_of([&] { f.get_u32("absent"); }), "test.gguf: metadata key 'absent' is missing");
  EXPECT_EQ(error_of([&] { f.get_u32("string"); }),
            "test.gguf: metadata key 'string': expected an integer, found string");
  EXPECT_EQ(error_of([&] { f.get_string("u32"); }),
            "test.gguf: metadata key 'u32': expected string, found uint32");
  EXPECT_EQ(error_of([&] { f.get_bool("u8"); }), "test.gguf: metadata key 'u8': expected bool, found uint8");
  EXPECT_EQ(error_of([&] { f.get_f32("i32"); }),
            "test.gguf: metadata key 'i32': expected float32, found int32");
  EXPECT_EQ(error_of([&] { f.get_array("f32"); }),
            "test.gguf: metadata key 'f32': expected array, found float32");
  EXPECT_EQ(error_of([&] { f.get_u32("u64"); }),
            "test.gguf: metadata key 'u64': value 1152921504606846976 (uint64) does not fit in uint32");
  EXPECT_EQ(error_of([&] { f.get_u64("i8"); }),
            "test.gguf: metadata key 'i8': value -100 (int8) does not fit in uint64");
  EXPECT_EQ(error_of([&] { f.get_i32("u32"); }),
            "test.gguf: metadata key 'u32': value 4000000000 (uint32) does not fit in int32");
  EXPECT_EQ(error_of([&] { f.get_string_array("a.u8"); }),
            "test.gguf: metadata key 'a.u8': expected an array of string, found an array of uint8");
  EXPECT_EQ(error_of([&] { f.get_f32_array("a.f64"); }),
            "test.gguf: metadata key 'a.f64': expected an array of float32, found an array of float64");
  EXPECT_EQ(error_of([&] { f.get_i32_array("a.string"); }),
            "test.gguf: metadata key 'a.string': expected an array of integers, found an array of string");
  EXPECT_EQ(error_of([&] { f.get_i32_array("a.u64"); }),
            "test.gguf: metadata key 'a.u64': element 0 (1099511627776) does not fit in int32");
}

TEST(Gguf, AlignmentFromMetadata) {
  GgufBuilder b;
  b.alignment = 64;
  b.kv<uint32_t>("general.alignment", 64)
      .tensor({"a", {3}, GgmlType::F32, filled_bytes(12, 0), {}})
      .tensor({"b", {32}, GgmlType::Q8_0, filled_bytes(34, 9), {}});
  const auto bytes = b.build();
  const GgufFile f = parse(bytes);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensor("b").offset, 64u);

  // Any integer type that holds a power of two is accepted.
  GgufBuilder u64;
  u64.alignment = 16;
  u64.kv<uint64_t>("general.alignment", 16).tensor({"a", {4}, GgmlType::F32, filled_bytes(16, 0), {}});
  EXPECT_EQ(parse(u64.build()).alignment(), 16u);
}

TEST(Gguf, AlignmentErrors) {
  GgufBuilder not_pow2;
  not_pow2.kv<uint32_t>("general.alignment", 48);
  expect_parse_error(not_pow2.build(),
                     {"test.gguf: metadata key 'general.alignment': alignment 48 is not a power of two"});
  GgufBuilder zero;
  zero.kv<uint32_t>("general.alignment", 0);
  expect_parse_error(zero.build(), {"alignment 0 is not a power of two"});
  GgufBuilder string;
  string.kv_string("general.alignment", "32");
  expect_parse_error(string.build(), {"'general.alignment': expected an integer, found string"});
  GgufBuilder big;
  big.kv<uint64_t>("general.alignment", 1ull << 40);
  expect_parse_error(big.build(), {"does not fit in uint32"});
}

TEST(Gguf, EmptyFileWithoutTensorsIsValid) {
  const GgufFile f = parse(GgufBuilder().build());
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TRUE(f.tensors().empty());
}

TEST(Gguf, OpenMapsAFile) {
  testing::TempDir dir;
  const auto bytes = every_value_type_file(3).build();
  const std::string path = dir.file("m.gguf");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.name(), path);
  EXPECT_EQ(f.get_string("string"), "héllo");
  const GgufFile moved = std::move(f);  // the mapping moves with it: tensor data stays valid
  EXPECT_EQ(std::memcmp(moved.tensor("norm").data, filled_bytes(32, 1).data(), 32), 0);
  EXPECT_NE(error_of([&] { GgufFile::open(dir.file("missing.gguf")); }).find("missing.gguf"),
            std::string::npos);
  const std::string garbage = dir.write("g.gguf", "GGML0000").string();
  EXPECT_NE(error_of([&] { GgufFile::open(garbage); }).find("g.gguf: not a GGUF file"), std::string::npos);
}

// ---- Malformed headers and metadata ----

std::vector<std::byte> with_u32_at(std::vector<std::byte> bytes, size_t offset, uint32_t v) {
  std::memcpy(bytes.data() + offset, &v, 4);
  return bytes;
}

TEST(GgufErrors, Header) {
  const auto good = GgufBuilder().build();
  auto bad_magic = good;
  bad_magic[0] = std::byte{'X'};
  expect_parse_error(bad_magic, {"test.gguf: not a GGUF file"});
  expect_parse_error({}, {"not a GGUF file", "file size 0"});
  expect_parse_error(with_u32_at(good, 4, 1), {"version at byte offset 4: GGUF version 1 is not supported"});
  expect_parse_error(with_u32_at(good, 4, 4), {"unknown GGUF version 4"});
  expect_parse_error(with_u32_at(good, 4, 0x03000000), {"big-endian GGUF files are not supported"});
  expect_parse_error(std::vector<std::byte>(good.begin(), good.begin() + 10),
                     {"test.gguf: tensor count at byte offset 8: needs 8 bytes but only 2 remain"});
}

TEST(GgufErrors, HugeCountsDoNotAllocate) {
  GgufBuilder tensors;
  tensors.tensor_count = 1ull << 60;
  expect_parse_error(tensors.build(),
                     {"tensor count at byte offset 8: 1152921504606846976 items", "cannot fit"});
  GgufBuilder entries;
  entries.metadata_count = ~0ull;
  expect_parse_error(entries.build(), {"metadata count at byte offset 16", "cannot fit"});
  GgufBuilder array;
  ByteWriter payload;
  payload.put(static_cast<uint32_t>(GgufValueType::U32)).put<uint64_t>(1ull << 62);
  array.kv_raw("big", static_cast<uint32_t>(GgufValueType::Array), payload);
  expect_parse_error(array.build(), {"metadata entry 0 'big': array length at byte offset 43", "cannot fit"});
  GgufBuilder overflow;  // count * 4 overflows 64 bits: still refused
  ByteWriter payload2;
  payload2.put(static_cast<uint32_t>(GgufValueType::F32)).put<uint64_t>(~0ull / 2);
  overflow.kv_raw("k", static_cast<uint32_t>(GgufValueType::Array), payload2);
  expect_parse_error(overflow.build(), {"array length", "cannot fit"});
}

TEST(GgufErrors, Strings) {
  GgufBuilder key;
  key.kv<uint8_t>("k", 1);
  auto bytes = key.build();
  const uint64_t huge = 1ull << 62;
  std::memcpy(bytes.data() + 24, &huge, 8);  // the key's length
  expect_parse_error(bytes,
                     {"metadata entry 0: key at byte offset 24: string length 4611686018427387904 runs past "
                      "the end of the file"});
  GgufBuilder value;
  ByteWriter payload;
  payload.put<uint64_t>(100).put<char>('x');
  value.kv_raw("s", static_cast<uint32_t>(GgufValueType::String), payload);
  expect_parse_error(value.build(),
                     {"metadata entry 0 's': string value at byte offset 37: string length 100"});
}

TEST(GgufErrors, ValueTypes) {
  GgufBuilder unknown;
  unknown.kv_raw("k", 13, ByteWriter().put<uint32_t>(0));
  expect_parse_error(unknown.build(),
                     {"metadata entry 0 'k': value type at byte offset 33: unknown value type 13"});
  GgufBuilder element;
  element.kv_raw("k", static_cast<uint32_t>(GgufValueType::Array),
                 ByteWriter().put<uint32_t>(99).put<uint64_t>(0));
  expect_parse_error(element.build(), {"array element type", "unknown value type 99"});
  GgufBuilder boolean;
  boolean.kv_raw("flag", static_cast<uint32_t>(GgufValueType::Bool), ByteWriter().put<uint8_t>(2));
  expect_parse_error(boolean.build(), {"'flag': bool value at byte offset 40: 2 is neither 0 nor 1"});
  GgufBuilder bool_array;
  bool_array.kv_raw("flags", static_cast<uint32_t>(GgufValueType::Array),
                    ByteWriter().put<uint32_t>(7).put<uint64_t>(2).put<uint8_t>(1).put<uint8_t>(255));
  expect_parse_error(bool_array.build(), {"'flags': bool value", "255 is neither 0 nor 1"});
}

TEST(GgufErrors, NestingIsLimited) {
  const auto nested_file = [](int depth) {
    ByteWriter w;
    for (int i = 1; i < depth; ++i) w.put(static_cast<uint32_t>(GgufValueType::Array)).put<uint64_t>(1);
    w.put(static_cast<uint32_t>(GgufValueType::U8)).put<uint64_t>(1).put<uint8_t>(5);
    GgufBuilder b;
    b.kv_raw("deep", static_cast<uint32_t>(GgufValueType::Array), w);
    return b.build();
  };
  EXPECT_NO_THROW(parse(nested_file(kMaxGgufArrayDepth)));
  expect_parse_error(nested_file(kMaxGgufArrayDepth + 1),
                     {"'deep': array", "arrays nest deeper than 4 levels"});
}

TEST(GgufErrors, DuplicateKey) {
  GgufBuilder b;
  b.kv<uint8_t>("k", 1).kv<uint8_t>("k", 2);
  expect_parse_error(b.build(), {"metadata entry 1 'k': duplicate key"});
}

// ---- Malformed tensor infos ----

GgufTestTensor f32_tensor(std::string name, std::vector<int64_t> shape, size_t bytes) {
  return {std::move(name), std::move(shape), GgmlType::F32, filled_bytes(bytes, 0), {}};
}

TEST(GgufErrors, TensorShapes) {
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {1, 1, 1, 1, 1}, 4)).build(),
                     {"tensor 0 't': n_dims at byte offset", "5 dimensions (1 to 4 are allowed)"});
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {}, 4)).build(), {"0 dimensions"});
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {4, 0}, 0)).build(),
                     {"tensor 0 't': dimension at byte offset", "dimension 1 is 0: not positive"});
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {-4}, 0)).build(),
                     {"dimension 0 is -4: not positive"});
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {1ll << 32, 1ll << 32}, 0)).build(),
                     {"dimension 1 is 4294967296: the element count overflows int64"});
  // Fits int64 elements, but not as bytes.
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {1ll << 31, 1ll << 31}, 0)).build(),
                     {"tensor 0 't': 4611686018427387904 blocks of 4 bytes overflow uint64"});
}

TEST(GgufErrors, TensorTypes) {
  for (const uint32_t id : {4u, 5u, 31u, 36u, 39u, 1000u}) {
    GgufBuilder b;
    b.tensor({"blk.0.w", {32}, static_cast<GgmlType>(id), filled_bytes(64, 0), {}});
    expect_parse_error(
        b.build(), {"tensor 0 'blk.0.w': type at byte offset", "unknown ggml type id " + std::to_string(id)});
  }
  GgufBuilder b;
  b.tensor({"w", {48, 2}, GgmlType::Q4_0, filled_bytes(54, 0), {}});
  expect_parse_error(b.build(), {"tensor 0 'w': shape[0] = 48 is not a multiple of the q4_0 block size 32"});
}

TEST(GgufErrors, DuplicateTensorName) {
  expect_parse_error(GgufBuilder().tensor(f32_tensor("t", {1}, 4)).tensor(f32_tensor("t", {1}, 4)).build(),
                     {"tensor 1 't': duplicate tensor name"});
}

TEST(GgufErrors, TensorOffsets) {
  GgufBuilder unaligned;
  unaligned.tensor({"t", {4}, GgmlType::F32, filled_bytes(16, 0), 8});
  expect_parse_error(unaligned.build(), {"tensor 0 't': offset 8 is not a multiple of the alignment 32"});

  GgufBuilder past_end;
  past_end.tensor(f32_tensor("a", {4}, 16)).tensor({"blk.0.attn_q.weight", {1024}, GgmlType::F32, {}, 64});
  const auto bytes = past_end.build();
  const size_t size = bytes.size();
  expect_parse_error(bytes,
                     {"test.gguf: tensor 1 'blk.0.attn_q.weight': offset 64 + 4096 bytes runs past the "
                      "end of the file (size " +
                      std::to_string(size) + "; data section at byte offset"});

  GgufBuilder wraps;
  wraps.tensor({"t", {4}, GgmlType::F32, {}, ~0ull - 31});
  expect_parse_error(wraps.build(), {"offset 18446744073709551584 + 16 bytes runs past the end of the file"});

  GgufBuilder overlap;
  overlap.tensor(f32_tensor("a", {16}, 64)).tensor({"b", {8}, GgmlType::F32, {}, 32});
  expect_parse_error(overlap.build(),
                     {"tensors 'a' [offset 0, 64 bytes) and 'b' [offset 32, 32 bytes) overlap"});
}

// ---- Truncation and corruption ----

TEST(GgufErrors, EveryTruncationIsAnError) {
  const auto bytes = every_value_type_file(3).build();
  ASSERT_NO_THROW(parse(bytes));
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + n);
    const std::string message = error_of([&] { parse(prefix); });
    ASSERT_NE(message, "no error") << "prefix of " << n << " bytes parsed";
    ASSERT_EQ(message.rfind("test.gguf: ", 0), 0u) << message;
  }
}

TEST(GgufErrors, RandomCorruptionThrowsOrParses) {
  const auto good = every_value_type_file(3).build();
  const uint64_t seed = testing::fresh_seed();
  SCOPED_TRACE(seed);
  Rng rng(seed);
  int errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto bytes = good;
    const int flips = 1 + static_cast<int>(rng.next_u64() % 4);
    for (int i = 0; i < flips; ++i) {
      bytes[rng.next_u64() % bytes.size()] = static_cast<std::byte>(rng.next_u64() & 0xff);
    }
    try {
      const GgufFile f = parse(bytes);
      for (const GgufTensor& t : f.tensors()) {  // every tensor's bytes lie inside the image
        ASSERT_GE(t.data, bytes.data());
        ASSERT_LE(t.data + t.bytes, bytes.data() + bytes.size());
      }
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}

// ---- The real model (../shared) ----

TEST(GgufSmolLM2, ReadsMetadataAndTensors) {
  const std::string shared = testing::shared_dir();
  const std::string path = shared + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (shared.empty() || !std::ifstream(path).good()) GTEST_SKIP() << "SmolLM2 GGUF not found: " << path;
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 576u);
  EXPECT_EQ(f.get_u32("llama.feed_forward_length"), 1536u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count"), 9u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), 64u);
  EXPECT_EQ(f.get_u32("llama.context_length"), 8192u);
  EXPECT_EQ(f.get_f32("llama.rope.freq_base"), 100000.0f);
  EXPECT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type").size(), 49152u);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(f.get_u32("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f.get_u32("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_NE(f.get_string("tokenizer.chat_template").find("<|im_start|>"), std::string::npos);

  EXPECT_EQ(f.tensors().size(), 272u);
  int q4_1 = 0, q8_0 = 0, f32 = 0;
  for (const GgufTensor& t : f.tensors()) {
    q4_1 += t.type == GgmlType::Q4_1;
    q8_0 += t.type == GgmlType::Q8_0;
    f32 += t.type == GgmlType::F32;
  }
  EXPECT_EQ(q4_1, 210);
  EXPECT_EQ(q8_0, 1);
  EXPECT_EQ(f32, 61);
  const GgufTensor& embd = f.tensor("token_embd.weight");
  EXPECT_EQ(embd.type, GgmlType::Q8_0);
  EXPECT_EQ(embd.shape, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(embd.bytes, 576u / 32 * 34 * 49152);
  const GgufTensor& down = f.tensor("blk.0.ffn_down.weight");
  EXPECT_EQ(down.type, GgmlType::Q4_1);
  EXPECT_EQ(down.shape, (std::vector<int64_t>{1536, 576}));
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied to token_embd
}

}  // namespace
}  // namespace qllm
