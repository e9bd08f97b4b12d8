// safetensors: write -> read round trips (every dtype, single file and sharded), one test per validation
// rule, and a mutation fuzz of the header parser (it must throw qllm::Error or load, never crash).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "model/safetensors.h"
#include "qllm/error.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using testing::TempDir;

std::vector<std::byte> random_bytes(size_t n, Rng& rng) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng.next_u64() & 0xff);
  return out;
}

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

void write_file(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A file with one header text and a data section of `data_bytes` zero bytes.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::vector<std::byte> bytes(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  write_file(path, bytes);
}

// Expects loading `path` to throw a qllm::Error whose message contains every fragment.
void expect_load_error(const std::string& path, std::initializer_list<std::string> fragments) {
  try {
    SafetensorsFile file(path);
    FAIL() << "loaded without error: " << path;
  } catch (const Error& e) {
    for (const std::string& fragment : fragments) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "message '" << e.what() << "' lacks '" << fragment << "'";
    }
  }
}

struct Sample {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

std::vector<Sample> sample_tensors(Rng& rng) {
  std::vector<Sample> samples = {
      {"a.f32", DType::F32, {3, 5}, {}},      {"b.f16", DType::F16, {7}, {}},
      {"c.bf16", DType::BF16, {2, 3, 4}, {}}, {"d.i8", DType::I8, {9}, {}},
      {"e.u8", DType::U8, {4, 4}, {}},        {"f.i32", DType::I32, {6}, {}},
      {"g.scalar", DType::F32, {}, {}},       {"h.empty", DType::BF16, {0, 4}, {}}};
  for (Sample& s : samples) {
    size_t n = dtype_size(s.dtype);
    for (int64_t d : s.shape) n *= static_cast<size_t>(d);
    s.bytes = random_bytes(n, rng);
  }
  return samples;
}

std::vector<TensorToWrite> to_write(const std::vector<Sample>& samples) {
  std::vector<TensorToWrite> out;
  for (const Sample& s : samples) out.push_back({s.name, s.dtype, s.shape, s.bytes, {}});
  return out;
}

TEST(Safetensors, RoundTripEveryDtype) {
  Rng rng(testing::fresh_seed());
  TempDir dir;
  const auto samples = sample_tensors(rng);
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, to_write(samples), {{"format", "pt"}, {"note", "round trip"}});

  // The header is padded to a multiple of 8, as Hugging Face writes it.
  const auto bytes = read_file(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);

  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("note"), "round trip");
  EXPECT_EQ(file.tensors().size(), samples.size());
  for (const Sample& s : samples) {
    const TensorView t = file.tensor(s.name);
    EXPECT_EQ(t.dtype(), s.dtype) << s.name;
    EXPECT_EQ(t.shape(), s.shape) << s.name;
    ASSERT_EQ(t.nbytes(), s.bytes.size()) << s.name;
    EXPECT_TRUE(std::equal(s.bytes.begin(), s.bytes.end(), t.bytes().begin())) << s.name;
  }
  EXPECT_THROW(file.tensor("missing"), Error);
}

TEST(Safetensors, FillCallbackWritesTheSameBytes) {
  TempDir dir;
  std::vector<float> values = {1.5f, -2.0f, 3.25f};
  TensorToWrite t{"x", DType::F32, {3}, {}, [&](std::span<std::byte> out) {
                    std::memcpy(out.data(), values.data(), out.size());
                  }};
  write_safetensors(dir.file("f.safetensors"), std::span(&t, 1));
  SafetensorsFile file(dir.file("f.safetensors"));
  EXPECT_EQ(std::memcmp(file.tensor("x").data, values.data(), 12), 0);
}

TEST(Safetensors, ShardedCheckpointRoundTrip) {
  Rng rng(testing::fresh_seed());
  TempDir dir;
  const auto samples = sample_tensors(rng);
  write_sharded_safetensors(dir.str(), to_write(samples), /*max_shard_bytes=*/64);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.str());
  EXPECT_GT(ckpt.num_files(), 2u);
  EXPECT_EQ(ckpt.names().size(), samples.size());
  for (const Sample& s : samples) {
    const TensorView t = ckpt.tensor(s.name);
    EXPECT_EQ(t.shape(), s.shape);
    EXPECT_TRUE(std::equal(s.bytes.begin(), s.bytes.end(), t.bytes().begin())) << s.name;
  }
  try {
    ckpt.tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'nope'"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, SingleFileCheckpointAndMissingFiles) {
  TempDir dir;
  const std::vector<float> v = {1, 2};
  const TensorToWrite t{"w", DType::F32, {2}, std::as_bytes(std::span(v)), {}};
  EXPECT_THROW(SafetensorsCheckpoint::open(dir.str()), Error);  // empty directory
  write_safetensors(dir.file("model.safetensors"), std::span(&t, 1));
  EXPECT_TRUE(SafetensorsCheckpoint::open(dir.str()).contains("w"));
  EXPECT_TRUE(SafetensorsCheckpoint::open(dir.file("model.safetensors")).contains("w"));
  expect_load_error(dir.file("nothing.safetensors"), {"nothing.safetensors", "cannot open"});
}

TEST(Safetensors, RejectsBadHeaderLengths) {
  TempDir dir;
  Rng rng(1);
  write_file(dir.file("short"), random_bytes(5, rng));
  expect_load_error(dir.file("short"), {"short", "shorter than the 8-byte header length"});

  std::vector<std::byte> bytes(64, std::byte{' '});
  uint64_t len = 1000;  // beyond the file
  std::memcpy(bytes.data(), &len, 8);
  write_file(dir.file("past_end"), bytes);
  expect_load_error(dir.file("past_end"), {"past_end", "reaches past the end of the file"});

  len = ~0ull;  // absurd
  std::memcpy(bytes.data(), &len, 8);
  write_file(dir.file("absurd"), bytes);
  expect_load_error(dir.file("absurd"), {"absurd", "exceeds the"});
}

TEST(Safetensors, RejectsMalformedJson) {
  TempDir dir;
  write_raw(dir.file("bad_json"), "{\"a\": {\"dtype\": \"F32\",", 0);
  expect_load_error(dir.file("bad_json"), {"bad_json", "not valid JSON"});
  write_raw(dir.file("array"), "[1, 2, 3]", 0);
  expect_load_error(dir.file("array"), {"must be a JSON object"});
  write_raw(dir.file("deep"), std::string(100, '[') + std::string(100, ']'), 0);
  expect_load_error(dir.file("deep"), {"nests deeper"});
}

TEST(Safetensors, ValidatesMetadata) {
  TempDir dir;
  write_raw(dir.file("ok"), R"({"__metadata__": {"format": "pt"}})", 0);
  EXPECT_EQ(SafetensorsFile(dir.file("ok")).metadata().at("format"), "pt");
  write_raw(dir.file("num"), R"({"__metadata__": {"format": 3}})", 0);
  expect_load_error(dir.file("num"), {"'__metadata__' field 'format' must be a string"});
}

TEST(Safetensors, ValidatesTensorEntries) {
  TempDir dir;
  const auto check = [&](const std::string& name, const std::string& header, size_t data,
                         std::initializer_list<std::string> fragments) {
    write_raw(dir.file(name), header, data);
    SCOPED_TRACE(header);
    expect_load_error(dir.file(name), fragments);
  };
  check("dtype", R"({"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})", 16,
        {"dtype", "tensor 'w'", "unsupported dtype 'F64'"});
  check("nodtype", R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8, {"tensor 'w'", "dtype"});
  check("size", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8,
        {"tensor 'w'", "needs 12 bytes", "hold 8"});
  check("negative", R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8,
        {"tensor 'w'", "shape must hold non-negative integers"});
  check("float_dim", R"({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", 8, {"tensor 'w'"});
  check("overflow", R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
        8, {"tensor 'w'", "overflows"});
  check("backwards", R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [8, 0]}})", 8,
        {"tensor 'w'", "run backwards"});
  check("outside", R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8,
        {"tensor 'w'", "past the data section"});
  check("overlap",
        R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
        12, {"'a'", "'b'", "overlap"});
  check("gap",
        R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
        12, {"4 unused bytes", "'b'"});
  check("tail", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 12,
        {"8 bytes after the last tensor"});
  check("extra", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "bias": 1}})", 4,
        {"tensor 'w'", "unknown field 'bias'"});
  check("offsets", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4,
        {"tensor 'w'", "data_offsets"});
  check("entry", R"({"w": 5})", 0, {"tensor 'w'", "must be an object"});
}

TEST(Safetensors, ValidatesTheIndex) {
  TempDir dir;
  const std::vector<float> v = {1, 2};
  const TensorToWrite t{"w", DType::F32, {2}, std::as_bytes(std::span(v)), {}};
  write_safetensors(dir.file("shard.safetensors"), std::span(&t, 1));
  const std::string index = dir.file("model.safetensors.index.json");
  const auto expect_error = [&](const nlohmann::json& j, std::initializer_list<std::string> fragments) {
    testing::write_json_file(index, j);
    try {
      SafetensorsCheckpoint::open(dir.str());
      FAIL() << j.dump();
    } catch (const Error& e) {
      for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
    }
  };
  expect_error({{"weight_map", {{"w", "gone.safetensors"}}}}, {"gone.safetensors", "does not exist"});
  expect_error({{"weight_map", {{"v", "shard.safetensors"}}}}, {"tensor 'v'", "lacks it"});
  expect_error({{"weight_map", {{"w", "../shard.safetensors"}}}}, {"not a plain file name"});
  expect_error({{"weight_map", {{"w", 3}}}}, {"weight_map['w']"});
  expect_error({{"metadata", {}}}, {"weight_map"});
  std::ofstream(index) << "{not json";
  EXPECT_THROW(SafetensorsCheckpoint::open(dir.str()), Error);
  testing::write_json_file(index, {{"weight_map", {{"w", "shard.safetensors"}}}});
  EXPECT_TRUE(SafetensorsCheckpoint::open(dir.str()).contains("w"));
}

// Thousands of random corruptions of a valid file: byte flips in the length and header, truncations,
// length edits. Each must load cleanly or throw qllm::Error; nothing else (no crash, no other exception).
TEST(Safetensors, MutationFuzzNeverCrashes) {
  const uint64_t seed = testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  Rng rng(seed);
  TempDir dir;
  const auto samples = sample_tensors(rng);
  write_safetensors(dir.file("valid"), to_write(samples));
  const std::vector<std::byte> valid = read_file(dir.file("valid"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, valid.data(), 8);

  int loaded = 0;
  int rejected = 0;
  for (int iteration = 0; iteration < 4000; ++iteration) {
    std::vector<std::byte> bytes = valid;
    const int kind = static_cast<int>(rng.below(4));
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      if (kind == 0) {  // flip bytes of the length or the header
        bytes[rng.below(8 + header_len)] ^= static_cast<std::byte>(1 + rng.below(255));
      } else if (kind == 1) {  // printable garbage, more likely to keep the JSON parsing further
        bytes[8 + rng.below(header_len)] = static_cast<std::byte>("{}[]\":,0123456789-e.FUI "[rng.below(24)]);
      } else if (kind == 2) {  // truncate
        bytes.resize(rng.below(bytes.size() + 1));
      } else {  // edit the length
        uint64_t len = header_len + static_cast<uint64_t>(rng.below(65)) - 32;
        if (rng.below(8) == 0) len = rng.next_u64();
        if (bytes.size() >= 8) std::memcpy(bytes.data(), &len, 8);
      }
    }
    try {
      const SafetensorsHeader header = parse_safetensors_header(bytes, "fuzz");
      // Whatever loads must describe bytes inside the buffer.
      for (const TensorInfo& t : header.tensors) ASSERT_LE(header.data_offset + t.end, bytes.size());
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  // Some mutations (in padding or tensor data bytes) keep the file valid.
  EXPECT_GT(loaded + rejected, 3999);

  // The same through the file reader, on a few mutated files.
  for (int i = 0; i < 50; ++i) {
    std::vector<std::byte> bytes = valid;
    bytes[rng.below(8 + header_len)] ^= std::byte{0x20};
    write_file(dir.file("mutated"), bytes);
    try {
      SafetensorsFile file(dir.file("mutated"));
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace qllm
