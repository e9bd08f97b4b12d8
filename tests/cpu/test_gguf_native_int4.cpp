// GGUF Q4_0 / Q4_1 weights kept as INT4 (model/gguf_model.h): every layer weight of a Q4 file becomes an
// Int4Matrix whose rows are exactly ggml's values (the Q and K rows unpermuted like the f32 path's),
// `--quant auto` runs them as stored with f16 activations (Q4_1 as int4-g32-min), a file that mixes types
// is read as f32 values as before, and an explicit mode computes as it does on the dequantized file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/load_model.h"
#include "model/gguf_model.h"
#include "model/prequantized.h"
#include "tests/cpu/model_test_support.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::Q4GgufSpec;
using testing::TempDir;

LlamaWeights weights_of(const std::string& path) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  return llama_weights_from_gguf(file, llama_config_from_gguf(*file), false);
}

std::vector<const WeightMatrix*> layer_weights(const LlamaWeights& w) {
  std::vector<const WeightMatrix*> out;
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      out.push_back(m);
  }
  return out;
}

// Row by row, bit for bit.
void expect_same_values(const WeightMatrix& a, const WeightMatrix& b) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  std::vector<float> ra(static_cast<size_t>(a.cols)), rb(ra.size());
  for (int64_t r = 0; r < a.rows; ++r) {
    a.row_to_f32(r, ra.data());
    b.row_to_f32(r, rb.data());
    ASSERT_EQ(std::memcmp(ra.data(), rb.data(), ra.size() * sizeof(float)), 0) << a.name << " row " << r;
  }
}

LoadedModel load(const std::string& path, std::optional<std::string> quant = std::nullopt) {
  LoadOptions o;
  o.device = DeviceKind::Cpu;
  o.verbose = false;
  if (quant) o.quant = ModelQuant::parse(*quant);
  return load_model(path, o);
}

TEST(GgufNativeInt4, Q4WeightsAreInt4WithGgmlValues) {
  TempDir dir;
  for (const GgmlType type : {GgmlType::Q4_1, GgmlType::Q4_0}) {
    SCOPED_TRACE(ggml_type_name(type));
    const std::string native = dir.str() + "/native.gguf", dequantized = dir.str() + "/f32.gguf";
    testing::write_q4_gguf(native, {.layers = type, .ffn_down = type, .seed = 11});
    testing::write_q4_gguf(dequantized, {.layers = type, .ffn_down = type, .seed = 11, .dequantized = true});
    const LlamaWeights w = weights_of(native), f = weights_of(dequantized);
    const auto wl = layer_weights(w), fl = layer_weights(f);
    for (size_t i = 0; i < wl.size(); ++i) {
      ASSERT_TRUE(wl[i]->quantized()) << wl[i]->name;
      const Int4Scheme& s = wl[i]->int4->scheme;
      EXPECT_EQ(s.granularity, Granularity::Groupwise);
      EXPECT_EQ(s.group_size, 32);
      EXPECT_EQ(s.scale_dtype, DType::F16);
      EXPECT_EQ(s.min_offset, type == GgmlType::Q4_1);
      EXPECT_FALSE(s.zero_point);
      EXPECT_FALSE(fl[i]->quantized());
      expect_same_values(*wl[i], *fl[i]);  // Q and K rows unpermuted alike
    }
    EXPECT_FALSE(w.embed.quantized());  // Q8_0, as SmolLM2's
    const ModelQuant q = stored_quant(w);
    EXPECT_EQ(q.activation_dtype(), DType::F16);
    EXPECT_EQ(q.lm_head.name(), "f16");
    EXPECT_EQ(q.linear.name(), type == GgmlType::Q4_1 ? "int4-g32-min" : "int4-g32");
    EXPECT_EQ(q.name(), type == GgmlType::Q4_1 ? "int4-g32-min, lm_head f16, f16 activations"
                                               : "int4-g32, lm_head f16, f16 activations");
  }
}

// A Q4 token_embd (tied, or untied with a Q4 output of the same type) is INT4 too: the lm_head runs as stored.
TEST(GgufNativeInt4, Q4HeadIsInt4) {
  TempDir dir;
  const std::string tied = dir.str() + "/tied.gguf", untied = dir.str() + "/untied.gguf";
  testing::write_q4_gguf(tied, {.token_embd = GgmlType::Q4_1, .seed = 3});
  testing::write_q4_gguf(untied, {.token_embd = GgmlType::Q4_0, .tied = false, .output = GgmlType::Q4_0});
  const LlamaWeights t = weights_of(tied), u = weights_of(untied);
  ASSERT_TRUE(t.embed.quantized());
  EXPECT_TRUE(t.embed.int4->scheme.min_offset);
  EXPECT_EQ(stored_quant(t).lm_head.name(), "int4-g32-min");
  ASSERT_TRUE(u.embed.quantized());
  ASSERT_TRUE(u.lm_head.quantized());
  EXPECT_EQ(stored_quant(u).name(), "int4-g32-min, lm_head int4-g32, f16 activations");
  // An untied pair of different types stays 16-bit (one storage for both, as --quant auto needs).
  const std::string mixed = dir.str() + "/mixed_head.gguf";
  testing::write_q4_gguf(mixed, {.token_embd = GgmlType::Q4_0, .tied = false, .output = GgmlType::Q8_0});
  const LlamaWeights m = weights_of(mixed);
  EXPECT_FALSE(m.embed.quantized());
  EXPECT_FALSE(m.lm_head.quantized());
}

// A file whose layers mix types is read as f32 values: --quant auto is bf16, as before.
TEST(GgufNativeInt4, MixedLayerTypesAreReadAsValues) {
  TempDir dir;
  const std::string path = dir.str() + "/mixed.gguf";
  testing::write_q4_gguf(path, {.layers = GgmlType::Q4_1, .ffn_down = GgmlType::Q8_0});
  const LlamaWeights w = weights_of(path);
  EXPECT_FALSE(w.any_int4());
  EXPECT_EQ(stored_quant(w).name(), "bf16");
}

// A NaN scale in a Q4 block is refused with the file, tensor and block position (as NaN weights are in f32).
TEST(GgufNativeInt4, CorruptScaleNamesTheTensor) {
  TempDir dir;
  const std::string path = dir.str() + "/corrupt.gguf";
  testing::write_q4_gguf(path, {.nan_scale_tensor = "blk.1.ffn_up.weight"});
  const std::string e = testing::error_of([&] { (void)weights_of(path); });
  EXPECT_NE(e.find("corrupt.gguf: tensor 'blk.1.ffn_up.weight' holds a NaN or Inf scale or minimum in the "
                   "block at [0, 32]"),
            std::string::npos)
      << e;
}

// The CPU engine: --quant auto computes with the Q4 values (finite logits, the stored format), an explicit
// mode re-quantizes (or rounds) them exactly as it does the dequantized file's f32 values.
TEST(GgufNativeInt4, EnginesComputeWithTheFileValues) {
  TempDir dir;
  const std::string native = dir.str() + "/native.gguf", dequantized = dir.str() + "/f32.gguf";
  testing::write_q4_gguf(native, {.token_embd = GgmlType::Q4_1, .seed = 5});
  testing::write_q4_gguf(dequantized, {.token_embd = GgmlType::Q4_1, .seed = 5, .dequantized = true});
  const LoadedModel as_stored = load(native);
  EXPECT_EQ(as_stored.model->quantization(), "int4-g32-min, f16 activations");
  const std::vector<int32_t> ids = {260, 72, 101, 108, 108, 111, 258, 32};
  const std::vector<float> logits = testing::all_logits(*as_stored.model, ids);
  for (const float v : logits) ASSERT_TRUE(std::isfinite(v));
  for (const char* mode : {"bf16", "int4-g64", "int4-g32-asym"}) {
    SCOPED_TRACE(mode);
    const std::vector<float> a = testing::all_logits(*load(native, mode).model, ids);
    const std::vector<float> b = testing::all_logits(*load(dequantized, mode).model, ids);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
}

}  // namespace
}  // namespace qllm
