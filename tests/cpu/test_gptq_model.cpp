// GPTQ over a whole model (engine/gptq_model.h) and its calibration text (engine/calibration.h), on the tiny
// synthetic checkpoint: windows sampled by the model or cut from a file, the evaluation text refused, and a
// layer-by-layer pass whose every linear layer is quantized in the model's scheme with less output error
// than round to nearest overall.
#include <gtest/gtest.h>

#include <cmath>

#include <filesystem>
#include <fstream>

#include "engine/calibration.h"
#include "engine/calibration_math.h"
#include "engine/gptq_model.h"
#include "engine/quantize_model.h"
#include "model/llama_ref.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

using testing::error_of;

LoadedModel load_tiny(const testing::TempDir& dir) {
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 11});
  LoadOptions o;
  o.device = DeviceKind::Cpu;
  o.verbose = false;
  return load_model(dir.str(), o);
}

struct Tiny {
  testing::TempDir dir;
  LoadedModel loaded = load_tiny(dir);
  const LlamaRefModel& ref() const { return dynamic_cast<const LlamaRefModel&>(*loaded.model); }
};

TEST(GptqCalibration, SelfSampledWindowsStartAtBosAndRepeatWithTheSeed) {
  Tiny t;
  const CalibrationOptions o{.source = "self", .samples = 3, .length = 12, .seed = 5};
  const auto a = calibration_windows(*t.loaded.model, t.loaded.tokenizer, o);
  ASSERT_EQ(a.size(), 3u);
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 12u);
    EXPECT_EQ(w.front(), *t.loaded.tokenizer.bos_id());
  }
  EXPECT_NE(a[0], a[1]);  // each window its own draw
  EXPECT_EQ(calibration_windows(*t.loaded.model, t.loaded.tokenizer, o), a);
}

TEST(GptqCalibration, FileWindowsAndErrors) {
  Tiny t;
  const auto path = (std::filesystem::path(t.dir.str()) / "calib.txt").string();
  std::ofstream(path) << "The quick brown fox jumps over the lazy dog, again and again, until the end.";
  const auto w = calibration_windows(*t.loaded.model, t.loaded.tokenizer,
                                     {.source = path, .samples = 4, .length = 16, .seed = 1});
  ASSERT_EQ(w.size(), 4u);
  for (const auto& window : w) EXPECT_EQ(window.size(), 16u);
  EXPECT_NE(error_of([&] {
              calibration_windows(*t.loaded.model, t.loaded.tokenizer, {.source = path, .length = 1000});
            }).find("fewer than one window"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              calibration_windows(*t.loaded.model, t.loaded.tokenizer, {.samples = 0});
            }).find("--calib-samples"),
            std::string::npos);
}

TEST(GptqCalibration, FingerprintIgnoresLineEndingsAndOuterSpace) {
  EXPECT_EQ(text_fingerprint(" a\r\nb\r\n"), text_fingerprint("a\nb"));
  EXPECT_NE(text_fingerprint("a\nb"), text_fingerprint("a\nc"));
  EXPECT_EQ(error_of([] { refuse_evaluation_text("some other text", "x.txt"); }), "no error");
}

// The real WikiText-2 test text, when the checkout sits beside the shared data (never committed).
TEST(GptqCalibration, RefusesTheWikitextTestText) {
  const auto path = std::filesystem::path(QLLM_SOURCE_DIR) / "../shared/data/wikitext-2-raw-test.txt";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(error_of([&] { refuse_evaluation_text(text, path.string()); }).find("WikiText-2 test text"),
            std::string::npos);
}

// The CPU calibration math: the products by their definitions on a small case, and operands of the wrong size
// refused with the shapes named.
TEST(GptqCalibrationMath, CpuProductsAndShapeErrors) {
  const auto math = cpu_calibration_math();
  EXPECT_EQ(math->name(), "cpu");
  const std::vector<float> x = {1, 2, 3, -1, 0, 4};  // [2 tokens, 3 inputs]
  const std::vector<float> w = {1, 0, 1, 0, 2, -1};  // [2 rows, 3 inputs]
  std::vector<float> y(5, 99.0f);
  math->matmul(y, x, 2, w, 2, 3);
  EXPECT_EQ(y, (std::vector<float>{4, 1, 3, -4}));
  const std::vector<float> h = math->hessian(x, 3);  // (2 / 2) * sum x x^T
  EXPECT_EQ(h, (std::vector<float>{2, 2, -1, 2, 4, 6, -1, 6, 25}));
  const std::vector<float> w_hat = {1, 0, 0, 0, 2, -1};  // differs by 1 in w[0][2]
  const OutputError e = math->output_error(w, w_hat, 2, 3, h);
  EXPECT_DOUBLE_EQ(e.error, 25.0);  // d^T H d with d = e_2
  EXPECT_GT(e.reference, 0.0);
  EXPECT_NE(
      error_of([&] { math->matmul(y, x, 3, w, 2, 3); }).find("calibration matmul: x has 6 values for [3, 3]"),
      std::string::npos);
  EXPECT_NE(error_of([&] { math->hessian(x, 4); }).find("not whole rows of 4 inputs"), std::string::npos);
  EXPECT_NE(error_of([&] { math->output_error(w, w_hat, 2, 3, x); }).find("3x3 Hessian"), std::string::npos);

  // Attention: 2 heads over 1 key/value head of 1 value, windows [0, 2) and [2, 3). A query attends only to
  // its own window's keys up to itself: the first token of a window returns its own value.
  const std::vector<float> q = {0, 0, 1, 1, 5, 5}, k = {1, 1, 7}, v = {2, 4, 6};
  const std::vector<int64_t> windows = {0, 2, 3};
  std::vector<float> out(1, 99.0f);
  math->attention(out, q, k, v, windows, 2, 1, 1);
  ASSERT_EQ(out.size(), 6u);
  const float s = 1.0f / (1.0f + std::exp(-0.0f));  // token 1: scores (1, 1), equal weights
  EXPECT_FLOAT_EQ(out[0], 2.0f);
  EXPECT_FLOAT_EQ(out[2], s * 2.0f + s * 4.0f);
  EXPECT_FLOAT_EQ(out[4], 6.0f);
  EXPECT_FLOAT_EQ(out[5], 6.0f);
  EXPECT_NE(error_of([&] { math->attention(out, q, k, v, windows, 2, 2, 1); }).find("hold 6, 3, 3 values"),
            std::string::npos);
  EXPECT_NE(error_of([&] { math->attention(out, q, k, v, windows, 3, 2, 1); }).find("3 heads over 2"),
            std::string::npos);
}

TEST(GptqModel, EveryLinearQuantizedWithLessOutputErrorThanRoundToNearest) {
  Tiny t;
  const auto windows = calibration_windows(*t.loaded.model, t.loaded.tokenizer,
                                           {.source = "self", .samples = 4, .length = 48, .seed = 2});
  GptqSolverRef solver;
  GptqModelOptions o;
  o.scheme = {.granularity = Granularity::Groupwise, .group_size = 32};
  o.report = true;
  int64_t progress_calls = 0;
  o.progress = [&](int64_t, int64_t) { ++progress_calls; };
  const GptqModelResult r = gptq_quantize_model(t.ref().config(), t.ref().weights(), windows, solver, o);
  const LlamaConfig& c = t.ref().config();
  ASSERT_EQ(static_cast<int64_t>(r.layers.size()), c.num_hidden_layers);
  EXPECT_EQ(progress_calls, c.num_hidden_layers);
  EXPECT_EQ(r.calibration_tokens, 4 * 48);
  const GptqLayer& l = r.layers[0];
  EXPECT_EQ(l.wk.rows, c.kv_dim());
  EXPECT_EQ(l.down.cols, c.intermediate_size);
  EXPECT_EQ(l.gate.scheme.scale_dtype, DType::BF16);  // the activation dtype, as the engines store scales
  EXPECT_EQ(l.gate.scheme.group_size, 32);
  ASSERT_EQ(static_cast<int64_t>(r.report.size()), 7 * c.num_hidden_layers);
  double rtn = 0, gptq = 0;
  for (const GptqLinearReport& row : r.report) {
    SCOPED_TRACE(row.name);
    EXPECT_LE(row.gptq_output_error, 1.02 * row.rtn_output_error);
    rtn += row.rtn_output_error;
    gptq += row.gptq_output_error;
  }
  EXPECT_LT(gptq, 0.95 * rtn);
  EXPECT_EQ(r.report[3].name, "layers.0.self_attn.o_proj");
}

}  // namespace
}  // namespace qllm

namespace qllm {
namespace {

LoadOptions cpu_options(const char* quant) {
  LoadOptions o;
  o.device = DeviceKind::Cpu;
  o.verbose = false;
  o.quant = ModelQuant::parse(quant, "bf16");
  return o;
}

const GptqLoadOptions kSmallGptq{.calib = {.source = "self", .samples = 2, .length = 32, .seed = 3}};

// `qllm quantize` of the checkpoint in `dir` to int4-g32 (lm_head bf16) with `gptq` into `out`, loaded as stored:
// its logits on `ids`.
std::vector<float> written_checkpoint_logits(const testing::TempDir& dir, const testing::TempDir& out,
                                             const GptqLoadOptions& gptq, const std::vector<int32_t>& ids) {
  QuantizeOptions q;
  q.model = dir.str();
  q.out_dir = out.str();
  q.quant = ModelQuant::parse("int4-g32", "bf16");
  q.device = DeviceKind::Cpu;
  q.force = true;
  q.verbose = false;
  q.gptq = gptq;
  quantize_checkpoint(q);
  LoadOptions stored;
  stored.device = DeviceKind::Cpu;
  stored.verbose = false;
  return testing::all_logits(*load_model(out.str(), stored).model, ids);
}

// --method gptq at load: the layers hold GPTQ's INT4 (used as stored), unlike RTN's; and a checkpoint written
// by `qllm quantize --method gptq` (a second, independent GPTQ run) loads to the same logits.
TEST(GptqModel, LoadTimeAndQuantizedCheckpointAgree) {
  testing::TempDir dir, out;
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 13});
  const std::vector<int32_t> ids = {256, 72, 101, 108, 108, 111, 32, 119, 111, 114};
  LoadOptions o = cpu_options("int4-g32");
  const auto rtn = testing::all_logits(*load_model(dir.str(), o).model, ids);
  o.gptq = kSmallGptq;
  const LoadedModel g = load_model(dir.str(), o);
  EXPECT_TRUE(dynamic_cast<const LlamaRefModel&>(*g.model).weights().layers[1].w_down.quantized());
  const auto gptq = testing::all_logits(*g.model, ids);
  EXPECT_NE(gptq, rtn);

  EXPECT_EQ(written_checkpoint_logits(dir, out, kSmallGptq, ids), gptq);
}

// --method awq-gptq: the scales folded into the norms reach the model and a written checkpoint alike (the norms
// are stored in f32 when the folded values no longer fit the input's 16-bit type).
TEST(GptqModel, AwqScaledNormsReachTheModelAndTheCheckpoint) {
  testing::TempDir dir, out;
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 13});
  const std::vector<int32_t> ids = {256, 72, 101, 108, 108, 111, 32, 119, 111, 114};
  LoadOptions o = cpu_options("int4-g32");
  GptqLoadOptions awq = kSmallGptq;
  awq.awq = true;
  o.gptq = awq;
  const LoadedModel m = load_model(dir.str(), o);
  const LoadedModel plain = load_model(dir.str(), cpu_options("bf16"));
  const auto& layer = dynamic_cast<const LlamaRefModel&>(*m.model).weights().layers[0];
  EXPECT_NE(layer.attn_norm, dynamic_cast<const LlamaRefModel&>(*plain.model).weights().layers[0].attn_norm);
  const auto logits = testing::all_logits(*m.model, ids);
  o.gptq = kSmallGptq;
  EXPECT_NE(testing::all_logits(*load_model(dir.str(), o).model, ids), logits);

  EXPECT_EQ(written_checkpoint_logits(dir, out, awq, ids), logits);
}

TEST(GptqModel, NeedsAnInt4Mode) {
  testing::TempDir dir;
  write_synthetic_checkpoint({.preset = "tiny", .out_dir = dir.str(), .seed = 13});
  LoadOptions o = cpu_options("bf16");
  o.gptq = kSmallGptq;
  EXPECT_NE(error_of([&] { load_model(dir.str(), o); }).find("INT4"), std::string::npos);
}

}  // namespace
}  // namespace qllm
