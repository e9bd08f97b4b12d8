// Quantized checkpoints (engine/quantize_model.h, model/quantized_checkpoint.h): `qllm quantize` of a tiny
// synthetic Llama in the qllm, gptq and awq layouts loads as stored with logits bit-identical to quantizing
// at load; the GPTQ and AWQ bit layouts are checked against hand-packed words; malformed checkpoints fail
// naming the tensor or field; a GGUF input's metadata survives as tokenizer.gguf.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/gguf.h"
#include "core/random.h"
#include "engine/quantize_model.h"
#include "model/safetensors.h"
#include "qllm/half.h"
#include "tests/cpu/gguf_test_support.h"
#include "tests/cpu/gguf_tokenizer_test_support.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::TempDir;

std::unique_ptr<Model> load_as_stored(const std::string& dir) {
  LoadOptions options;
  options.device = DeviceKind::Cpu;
  options.verbose = false;
  return std::move(load_model(dir, options).model);
}

std::unique_ptr<Model> load_with(const std::string& dir, const ModelQuant& quant) {
  LoadOptions options;
  options.device = DeviceKind::Cpu;
  options.quant = quant;
  options.verbose = false;
  return std::move(load_model(dir, options).model);
}

struct Case {
  const char* format;
  const char* quant;
};

class QuantizedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override { write_synthetic_checkpoint({.preset = "tiny", .out_dir = in_.str(), .seed = 5}); }

  QuantizeReport quantize(const std::string& out, const char* format, const char* quant,
                          const char* lm_head = nullptr) {
    QuantizeOptions o;
    o.model = in_.str();
    o.out_dir = out;
    o.format = parse_quant_format(format);
    o.quant = ModelQuant::parse(quant, lm_head ? lm_head : (o.format == QuantFormat::Qllm ? "same" : "bf16"));
    o.device = DeviceKind::Cpu;
    o.force = true;
    o.verbose = false;
    return quantize_checkpoint(o);
  }

  std::vector<float> logits(const Model& m) const { return testing::all_logits(m, tokens_); }

  TempDir in_;
  std::vector<int32_t> tokens_ = {256, 40, 71, 200, 3, 99, 150, 12};
};

void expect_bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST_F(QuantizedCheckpoint, LoadsBitIdenticalToQuantizingAtLoad) {
  const Case cases[] = {{"qllm", "int4-g32"},     {"qllm", "int4-g16-asym"}, {"qllm", "int4-rowwise"},
                        {"qllm", "int4-global"},  {"gptq", "int4-g32"},      {"gptq", "int4-g16-asym"},
                        {"gptq", "int4-rowwise"}, {"awq", "int4-g32-asym"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} {}", c.format, c.quant));
    TempDir out;
    const QuantizeReport r = quantize(out.str(), c.format, c.quant);
    // What quantizing at load does with the same modes: qllm keeps bf16 scales and activations; gptq and awq
    // store f16 scales, so they run with f16 activations and a 16-bit lm_head.
    const bool qllm = std::string(c.format) == "qllm";
    ModelQuant reference = ModelQuant::parse(c.quant, qllm ? "same" : "f16");
    if (!qllm) reference.activation = DType::F16;
    EXPECT_EQ(r.quantization, reference.name());
    const auto stored = load_as_stored(out.str());
    EXPECT_EQ(stored->quantization(), reference.name());
    const std::vector<float> expected = logits(*load_with(in_.str(), reference));
    expect_bit_identical(logits(*stored), expected);
    expect_bit_identical(logits(*load_with(out.str(), reference)), expected);  // the same mode named
    const nlohmann::json config = testing::read_json_file(out.str() + "/config.json");
    EXPECT_EQ(config["quantization_config"]["quant_method"], c.format);
    EXPECT_TRUE(fs::exists(out.str() + "/tokenizer.json"));
    ASSERT_EQ(r.sizes.size(), 4u);
    EXPECT_EQ(r.sizes[3].output_bytes, fs::file_size(out.str() + "/model.safetensors"));
    EXPECT_LT(r.sizes[0].output_bytes * 2, r.sizes[0].input_bytes);  // INT4 linear layers: < 1/2 of bf16
  }
}

TEST_F(QuantizedCheckpoint, SixteenBitLmHeadAndReQuantizing) {
  TempDir out;
  quantize(out.str(), "qllm", "int4-g32", "bf16");
  const ModelQuant reference = ModelQuant::parse("int4-g32", "bf16");
  EXPECT_EQ(load_as_stored(out.str())->quantization(), reference.name());
  expect_bit_identical(logits(*load_as_stored(out.str())), logits(*load_with(in_.str(), reference)));
  EXPECT_TRUE(SafetensorsCheckpoint::open(out.str()).contains("model.embed_tokens.weight"));
  // bf16 re-reads the reconstruction: finite, and not the INT4 model's logits.
  const std::vector<float> dense = logits(*load_with(out.str(), ModelQuant::parse("bf16")));
  for (const float v : dense) ASSERT_TRUE(std::isfinite(v));
  EXPECT_NE(std::memcmp(dense.data(), logits(*load_as_stored(out.str())).data(), dense.size() * 4), 0);
}

// Refusals before anything is written: modes and formats that do not go together.
TEST_F(QuantizedCheckpoint, RefusesWhatAFormatCannotHold) {
  TempDir out;
  EXPECT_NE(
      error_of([&] { quantize(out.str(), "gptq", "int4-global"); }).find("int4-global has no gptq form"),
      std::string::npos);
  EXPECT_NE(error_of([&] { quantize(out.str(), "awq", "int4-g32"); }).find("int4-g<N>-asym"),
            std::string::npos);
  EXPECT_NE(error_of([&] { quantize(out.str(), "gptq", "int4-g32", "same"); }).find("lm_head stays 16-bit"),
            std::string::npos);
  EXPECT_NE(error_of([&] { quantize(out.str(), "qllm", "int8"); }).find("writes INT4"), std::string::npos);
  EXPECT_NE(error_of([&] { quantize(out.str(), "qllm", "int4-g32", "int4-g16"); }).find("one INT4 format"),
            std::string::npos);
  EXPECT_NE(error_of([&] { quantize(in_.str(), "qllm", "int4-g32"); }).find("is the input model"),
            std::string::npos);
}

// The documented bit layouts, checked on a hand-made matrix: nibble (n, k) = (n + 3k) mod 16, zero point
// (n mod 15) + 1 per group.
TEST(QuantizedCheckpointLayout, GptqAndAwqWords) {
  const int64_t n = 16, k = 32;
  Int4Matrix m;
  m.rows = n;
  m.cols = k;
  m.scheme.group_size = 16;
  m.scheme.zero_point = true;
  m.scheme.scale_dtype = DType::F16;
  std::vector<uint8_t> nibbles(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      nibbles[static_cast<size_t>(r * k + c)] = static_cast<uint8_t>((r + 3 * c) % 16);
  m.packed = pack_nibbles_u8(nibbles);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < 2; ++g) {
      m.scales.push_back(float_to_half_bits(0.01f * static_cast<float>(r + 1 + g)));
      m.zeros.push_back(static_cast<uint8_t>(r % 15 + 1));
    }
  }
  auto shared = std::make_shared<const Int4Matrix>(m);
  for (const char* format : {"gptq", "awq"}) {
    SCOPED_TRACE(format);
    QuantizationConfig q;
    q.format = parse_quant_format(format);
    q.scheme = m.scheme;
    std::map<std::string, std::vector<std::byte>> t;
    for (const TensorToWrite& w : int4_weight_tensors(q, "x", shared)) {
      std::vector<std::byte> b(static_cast<size_t>(w.shape[0] * (w.shape.size() > 1 ? w.shape[1] : 1)) *
                               dtype_size(w.dtype));
      w.fill(b);
      t[w.name] = std::move(b);
    }
    auto word = [&](const std::string& name, size_t i) {
      uint32_t v;
      std::memcpy(&v, t[name].data() + 4 * i, 4);
      return v;
    };
    const bool awq = q.format == QuantFormat::Awq;
    const int awq_pos[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // column 8i + j sits at nibble awq_pos[j]
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        const uint32_t w = awq ? word("x.qweight", static_cast<size_t>(c * (n / 8) + r / 8))
                               : word("x.qweight", static_cast<size_t>((c / 8) * n + r));
        const int shift = 4 * (awq ? awq_pos[r % 8] : static_cast<int>(c % 8));
        ASSERT_EQ((w >> shift) & 15u, static_cast<uint32_t>((r + 3 * c) % 16)) << r << "," << c;
      }
      for (int64_t g = 0; g < 2; ++g) {
        const uint32_t z = word("x.qzeros", static_cast<size_t>(g * (n / 8) + r / 8));
        const int shift = 4 * (awq ? awq_pos[r % 8] : static_cast<int>(r % 8));
        EXPECT_EQ((z >> shift) & 15u,
                  static_cast<uint32_t>(r % 15 + 1 - (awq ? 0 : 1)));  // GPTQ v1: zero - 1
        uint16_t s;
        std::memcpy(&s, t["x.scales"].data() + 2 * (g * n + r), 2);  // scales [groups, N]
        EXPECT_EQ(s, m.scales[static_cast<size_t>(r * 2 + g)]);
      }
    }
    if (!awq) {
      EXPECT_EQ(word("x.g_idx", 31), 1u);  // k / group_size
    }
    EXPECT_EQ(awq, !t.count("x.g_idx"));
  }
}

// Loads every tensor of a checkpoint into memory so that a test can break one and write it back.
struct Owned {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

std::vector<Owned> read_all(const std::string& dir) {
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir);
  std::vector<Owned> out;
  for (const std::string& name : ckpt.names()) {
    const TensorView t = ckpt.tensor(name);
    out.push_back({name, t.dtype(), t.shape(), {t.bytes().begin(), t.bytes().end()}});
  }
  return out;
}

void write_all(const std::string& dir, const std::vector<Owned>& tensors) {
  std::vector<TensorToWrite> w;
  for (const Owned& t : tensors) w.push_back({t.name, t.dtype, t.shape, t.bytes, {}});
  write_safetensors(dir + "/model.safetensors", w);
}

std::string load_error(const std::string& dir) {
  return error_of([&] { load_as_stored(dir); });
}

TEST_F(QuantizedCheckpoint, MalformedCheckpointsNameTheProblem) {
  TempDir out;
  quantize(out.str(), "gptq", "int4-g32-asym");
  const std::vector<Owned> good = read_all(out.str());
  const std::string q = "model.layers.1.mlp.up_proj";
  auto edit = [&](const std::function<void(std::vector<Owned>&)>& f) {
    std::vector<Owned> t = good;
    f(t);
    write_all(out.str(), t);
    return load_error(out.str());
  };
  auto find = [&](std::vector<Owned>& t, const std::string& name) -> Owned& {
    for (Owned& o : t)
      if (o.name == name) return o;
    throw std::runtime_error("no tensor " + name);
  };
  std::string e = edit([&](auto& t) {
    find(t, q + ".qweight").dtype = DType::U8, find(t, q + ".qweight").shape[1] *= 4;
  });
  EXPECT_NE(e.find("'" + q + ".qweight' has dtype U8, expected I32"), std::string::npos) << e;
  e = edit([&](auto& t) { std::erase_if(t, [&](const Owned& o) { return o.name == q + ".scales"; }); });
  EXPECT_NE(e.find("missing tensor '" + q + ".scales'"), std::string::npos) << e;
  e = edit([&](auto& t) { find(t, q + ".qzeros").bytes[5] = std::byte{0xf0}; });  // a nibble of 15: zero 16
  EXPECT_NE(e.find(q + ".qzeros"), std::string::npos) << e;
  EXPECT_NE(e.find("zero point 16"), std::string::npos) << e;
  e = edit([&](auto& t) { find(t, q + ".g_idx").bytes[4 * 3] = std::byte{1}; });  // g_idx[3] = 1
  EXPECT_NE(e.find("g_idx'[3] = 1"), std::string::npos) << e;
  e = edit([&](auto& t) {
    Owned& s = find(t, q + ".scales");
    s.shape = {s.shape[1], s.shape[0]};  // [N, G] instead of [G, N]
  });
  EXPECT_NE(e.find("'" + q + ".scales' has shape"), std::string::npos) << e;
  write_all(out.str(), good);
  ASSERT_NO_THROW(load_as_stored(out.str()));

  nlohmann::json config = testing::read_json_file(out.str() + "/config.json");
  for (const auto& [field, value, fragment] :
       std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"bits", 3, "bits = 3"},
           {"desc_act", true, "desc_act"},
           {"quant_method", "bitsandbytes", "quant_method 'bitsandbytes'"},
           {"group_size", 0, "group_size 0"},
           {"checkpoint_format", "gptq_v2", "checkpoint_format 'gptq_v2'"}}) {
    nlohmann::json broken = config;
    broken["quantization_config"][field] = value;
    testing::write_json_file(out.str() + "/config.json", broken);
    e = load_error(out.str());
    EXPECT_NE(e.find("quantization_config"), std::string::npos) << e;
    EXPECT_NE(e.find(fragment), std::string::npos) << e;
  }
  nlohmann::json none = config;
  none.erase("quantization_config");
  testing::write_json_file(out.str() + "/config.json", none);
  e = load_error(out.str());
  EXPECT_NE(e.find("has no quantization_config"), std::string::npos) << e;
}

TEST_F(QuantizedCheckpoint, QllmLayoutErrors) {
  TempDir out;
  quantize(out.str(), "qllm", "int4-g16-asym");
  const std::vector<Owned> good = read_all(out.str());
  const std::string q = "model.layers.0.self_attn.o_proj";
  std::vector<Owned> t = good;
  for (Owned& o : t)
    if (o.name == q + ".zeros") o.bytes[2] = std::byte{16};
  write_all(out.str(), t);
  std::string e = load_error(out.str());
  EXPECT_NE(e.find(q), std::string::npos) << e;
  EXPECT_NE(e.find("zero point 16 of group 2"), std::string::npos) << e;
  t = good;
  std::erase_if(t, [&](const Owned& o) { return o.name == q + ".zeros"; });
  write_all(out.str(), t);
  e = load_error(out.str());
  EXPECT_NE(e.find("missing tensor '" + q + ".zeros'"), std::string::npos) << e;
  write_all(out.str(), good);
  nlohmann::json config = testing::read_json_file(out.str() + "/config.json");
  config["quantization_config"]["scale_dtype"] = "f16";
  testing::write_json_file(out.str() + "/config.json", config);
  e = load_error(out.str());
  EXPECT_NE(e.find("'model.embed_tokens.scales' has dtype BF16 but"), std::string::npos) << e;
  EXPECT_NE(e.find("quantization_config.scale_dtype is f16"), std::string::npos) << e;
}

// A one-layer llama GGUF with F32 weights and a tiny byte-level vocabulary (tests/cpu/gguf_tokenizer_test_support.h)
// and a chat template: quantizing it writes HF-named tensors and tokenizer.gguf, and the output loads as stored
// with the logits of the GGUF quantized at load.
TEST(QuantizeGguf, WritesHfNamesAndTheTokenizer) {
  const GgufVocab vocab = testing::tiny_gguf_vocab();
  const auto vocab_size = static_cast<int64_t>(vocab.tokens.size());
  testing::GgufBuilder b;
  testing::add_tiny_llama_keys(b, {}).kv_string("tokenizer.chat_template",
                 "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}");
  Rng rng(3);
  auto f32 = [&](const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    int64_t count = 1;
    for (const int64_t d : shape) count *= d;
    std::vector<float> v(static_cast<size_t>(count), 1.0f);
    if (!norm) fill_normal(std::span<float>(v), rng, 0.0, 0.05);
    std::vector<std::byte> bytes(v.size() * 4);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    b.tensor({name, std::move(shape), GgmlType::F32, std::move(bytes), {}});
  };
  f32("token_embd.weight", {64, vocab_size});
  f32("blk.0.attn_norm.weight", {64}, true);
  f32("blk.0.attn_q.weight", {64, 64});
  f32("blk.0.attn_k.weight", {64, 32});
  f32("blk.0.attn_v.weight", {64, 32});
  f32("blk.0.attn_output.weight", {64, 64});
  f32("blk.0.ffn_norm.weight", {64}, true);
  f32("blk.0.ffn_gate.weight", {64, 128});
  f32("blk.0.ffn_up.weight", {64, 128});
  f32("blk.0.ffn_down.weight", {128, 64});
  f32("output_norm.weight", {64}, true);
  TempDir dir;
  const std::string gguf = dir.str() + "/tiny.gguf";
  {
    const std::vector<std::byte> image = b.build();
    std::ofstream(gguf, std::ios::binary)
        .write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
  }
  const std::string out = dir.str() + "/q";
  QuantizeOptions o;
  o.model = gguf;
  o.out_dir = out;
  o.quant = ModelQuant::parse("int4-g32");
  o.device = DeviceKind::Cpu;
  o.verbose = false;
  quantize_checkpoint(o);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(out);
  EXPECT_TRUE(ckpt.contains("model.layers.0.self_attn.q_proj.qweight"));
  EXPECT_TRUE(ckpt.contains("model.embed_tokens.qweight"));
  EXPECT_TRUE(fs::exists(out + "/tokenizer.gguf"));
  LoadOptions options;
  options.device = DeviceKind::Cpu;
  options.verbose = false;
  const LoadedModel stored = load_model(out, options);
  ASSERT_TRUE(stored.chat_template.has_value());
  options.quant = ModelQuant::parse("int4-g32");
  const LoadedModel at_load = load_model(gguf, options);
  const std::vector<int32_t> ids = stored.prompt_ids(" the theme");
  EXPECT_EQ(ids, at_load.prompt_ids(" the theme"));
  expect_bit_identical(testing::all_logits(*stored.model, ids), testing::all_logits(*at_load.model, ids));
}

// write_gguf_metadata keeps every key and value of a GGUF file, as quantize does for a GGUF input's tokenizer.
TEST(GgufMetadataWriter, RoundTripsEveryValueType) {
  testing::GgufBuilder b;
  b.kv_string("general.architecture", "llama")
      .kv<uint32_t>("llama.block_count", 2)
      .kv<float>("llama.rope.freq_base", 10000.0f)
      .kv<bool>("tokenizer.ggml.add_bos_token", true)
      .kv_string_array("tokenizer.ggml.tokens", {"a", "b", "<s>"})
      .kv_array<int32_t>("tokenizer.ggml.token_type", {1, 1, 3});
  b.tensor({"w", {4}, GgmlType::F32, std::vector<std::byte>(16), {}});
  TempDir dir;
  const std::vector<std::byte> bytes = b.build();
  const GgufFile in = GgufFile::parse(bytes, "in.gguf");
  const std::string path = dir.str() + "/tokenizer.gguf";
  write_gguf_metadata(path, in);
  const GgufFile out = GgufFile::open(path);
  EXPECT_TRUE(out.tensors().empty());
  ASSERT_EQ(out.metadata().size(), in.metadata().size());
  EXPECT_EQ(out.get_string("general.architecture"), "llama");
  EXPECT_EQ(out.get_u32("llama.block_count"), 2u);
  EXPECT_EQ(out.get_f32("llama.rope.freq_base"), 10000.0f);
  EXPECT_TRUE(out.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(out.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "b", "<s>"}));
  EXPECT_EQ(out.get_i32_array("tokenizer.ggml.token_type"), (std::vector<int32_t>{1, 1, 3}));
}

}  // namespace
}  // namespace qllm
