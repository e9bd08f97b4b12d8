// Pre-quantized weights in the host model (model/prequantized.h): a tiny synthetic Llama whose weights were
// quantized ahead of time gives logits bit-identical to the same mode quantized at load, run as stored or
// with that mode named; an explicit other mode re-quantizes; fusing INT4 parts by rows; and bad INT4 matrices
// refused naming the weight.
#include <gtest/gtest.h>

#include <cstring>

#include "model/llama_ref.h"
#include "model/prequantized.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::TempDir;

class Prequantized : public ::testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir_.str(), .seed = 11});
    config_ = LlamaConfig::load(dir_.str());
  }
  LlamaWeights weights() const { return LlamaWeights::load(dir_.str(), config_); }

  // The weights with every linear layer (and the lm_head when `head` is set) quantized as `quant` would at
  // load, through the public replacement API.
  LlamaWeights quantized(const ModelQuant& quant, bool head = true) const {
    LlamaWeights w = weights();
    const DType act = quant.activation_dtype();
    for (const LlamaWeights::Linear& l : w.linears()) {
      if (l.head && !head) continue;
      const QuantMode& mode = l.head ? quant.lm_head : quant.linear;
      w.set_int4(l.matrix->name, quantize_weight_int4(*l.matrix, mode.int4, act));
    }
    return w;
  }

  std::vector<float> logits(LlamaWeights w, const ModelQuant& quant) const {
    const LlamaRefModel model(config_, std::move(w), quant);
    return testing::all_logits(model, tokens_);
  }

  TempDir dir_;
  LlamaConfig config_;
  std::vector<int32_t> tokens_ = {1, 17, 200, 33, 5, 91, 140};
};

void expect_bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST_F(Prequantized, AsStoredEqualsQuantizingAtLoad) {
  for (const char* mode : {"int4-g32", "int4-g16-asym", "int4-rowwise", "int4-global"}) {
    SCOPED_TRACE(mode);
    const ModelQuant quant = ModelQuant::parse(mode);
    const std::vector<float> at_load = logits(weights(), quant);
    const LlamaWeights pre = quantized(quant);
    EXPECT_TRUE(pre.any_int4());
    const ModelQuant stored = stored_quant(pre);
    EXPECT_EQ(stored.name(), mode);
    expect_bit_identical(logits(quantized(quant), stored), at_load);
    expect_bit_identical(logits(quantized(quant), quant), at_load);  // the same mode named: kept as stored
  }
}

TEST_F(Prequantized, SixteenBitLmHeadAndOtherModes) {
  const ModelQuant quant = ModelQuant::parse("int4-g32", "bf16");
  const LlamaWeights pre = quantized(quant, /*head=*/false);
  const ModelQuant stored = stored_quant(pre);
  EXPECT_EQ(stored.name(), "int4-g32, lm_head bf16");
  expect_bit_identical(logits(quantized(quant, false), stored), logits(weights(), quant));
  // Another INT4 format re-quantizes each weight's reconstruction: the same as storing that re-quantization.
  const ModelQuant g16 = ModelQuant::parse("int4-g16", "bf16");
  LlamaWeights requantized = quantized(quant, false);
  for (const LlamaWeights::Linear& l : requantized.linears()) {
    if (!l.head)
      requantized.set_int4(l.matrix->name, quantize_weight_int4(*l.matrix, g16.linear.int4, DType::BF16));
  }
  const std::vector<float> regrouped = logits(quantized(quant, false), g16);
  expect_bit_identical(regrouped, logits(std::move(requantized), g16));
  const std::vector<float> as_stored = logits(quantized(quant, false), stored);
  EXPECT_NE(std::memcmp(as_stored.data(), regrouped.data(), as_stored.size() * sizeof(float)), 0);
}

TEST_F(Prequantized, SixteenBitModelRunsAsBf16) {
  EXPECT_FALSE(weights().any_int4());
  EXPECT_EQ(stored_quant(weights()).name(), "bf16");
}

TEST_F(Prequantized, MixedFormatsAreRefusedAsStored) {
  LlamaWeights w = quantized(ModelQuant::parse("int4-g32"));
  const WeightMatrix& down = w.layers[1].w_down;
  const std::string name = down.name;
  Int4Scheme other;
  other.group_size = 16;
  Int4Matrix m = quantize_weight_int4(down, other, DType::BF16);
  w.set_int4(name, std::move(m));
  const std::string e = error_of([&] { stored_quant(w); });
  EXPECT_NE(e.find(name), std::string::npos) << e;
  EXPECT_NE(e.find("--quant"), std::string::npos) << e;
}

TEST_F(Prequantized, SetInt4RefusesUnknownNamesAndShapes) {
  LlamaWeights w = weights();
  const WeightMatrix wq = w.layers[0].wq;
  Int4Matrix m = quantize_weight_int4(wq, Int4Scheme{}, DType::BF16);
  EXPECT_NE(error_of([&] { w.set_int4("model.layers.9.mlp.nope.weight", m); }).find("nope"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.set_int4(w.layers[0].w_gate.name, m); }).find("gate_proj"), std::string::npos);
  Int4Matrix bad = m;
  bad.zeros.clear();
  bad.scheme.zero_point = true;
  EXPECT_NE(error_of([&] { w.set_int4(wq.name, bad); }).find("zero points"), std::string::npos);
}

TEST(Int4Rows, ConcatFusesPartsAndKeepsGlobalScalesApart) {
  const int64_t k = 8;
  std::vector<float> a(2 * k), b(3 * k);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) - 7.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.01f * static_cast<float>(i);
  Int4Scheme global;
  global.granularity = Granularity::Global;
  const Int4Matrix qa = quantize_int4_ref(a, 2, k, global);
  const Int4Matrix qb = quantize_int4_ref(b, 3, k, global);
  const Int4Matrix* parts[] = {&qa, &qb};
  const Int4Matrix fused = concat_int4_rows(parts);
  EXPECT_EQ(fused.rows, 5);
  EXPECT_EQ(fused.scheme.granularity, Granularity::Rowwise);
  validate_int4_matrix(fused, "fused");
  std::vector<float> row(static_cast<size_t>(k)), expect = dequantize_int4_ref(qa);
  const std::vector<float> expect_b = dequantize_int4_ref(qb);
  expect.insert(expect.end(), expect_b.begin(), expect_b.end());
  for (int64_t r = 0; r < 5; ++r) {
    dequantize_int4_row(fused, r, row.data());
    for (int64_t c = 0; c < k; ++c) EXPECT_EQ(row[c], expect[r * k + c]) << r << "," << c;
  }
  Int4Scheme grouped;
  grouped.group_size = 4;
  const Int4Matrix qc = quantize_int4_ref(b, 3, k, grouped);
  const Int4Matrix* mixed[] = {&qa, &qc};
  EXPECT_NE(error_of([&] { concat_int4_rows(mixed); }).find("part 1"), std::string::npos);
}

TEST(Int4Rows, ValidateNamesTheProblem) {
  std::vector<float> v(4 * 16, 0.5f);
  Int4Scheme asym;
  asym.group_size = 8;
  asym.zero_point = true;
  Int4Matrix m = quantize_int4_ref(v, 4, 16, asym);
  validate_int4_matrix(m, "w");
  Int4Matrix bad_zero = m;
  bad_zero.zeros[3] = 16;
  EXPECT_NE(error_of([&] { validate_int4_matrix(bad_zero, "w.qzeros"); }).find("w.qzeros: zero point 16"),
            std::string::npos);
  Int4Matrix short_scales = m;
  short_scales.scales.pop_back();
  EXPECT_NE(error_of([&] { validate_int4_matrix(short_scales, "w"); }).find("scales"), std::string::npos);
  Int4Matrix inf_scale = m;
  inf_scale.scales[0] = 0x7c00;  // f16 +Inf
  EXPECT_NE(error_of([&] { validate_int4_matrix(inf_scale, "w"); }).find("group 0"), std::string::npos);
}

}  // namespace
}  // namespace qllm
