// The CPU reference against Hugging Face transformers (float32, CPU) on the proxy model's real weights:
// logits, greedy continuations, per-token NLL and perplexity; and HF's logits for a `qllm synth`
// checkpoint. Fixtures: tests/fixtures/hf/*.json from scripts/gen_hf_fixtures.py; a test skips only when
// its fixture file (or the shared proxy model) is absent.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/generate.h"
#include "engine/perplexity.h"
#include "tests/cpu/model_test_support.h"

namespace qllm {
namespace {

constexpr double kLogitTolerance = 2e-3;  // max |logit diff| <= this x max |logit|

std::vector<int32_t> ids_of(const nlohmann::json& j) {
  return j.get<std::vector<int32_t>>();
}

using testing::all_logits;

TEST(LlamaVsHf, ProxyLogits) {
  QLLM_HF_FIXTURE_OR_SKIP(fixture, "proxy_logits.json");
  QLLM_PROXY_OR_SKIP(dir);
  const auto model = testing::load_cpu_model(dir);
  const int64_t vocab = model->config().vocab_size;
  for (const auto& prompt : fixture["prompts"]) {
    SCOPED_TRACE(prompt["text"].get<std::string>());
    const auto ids = ids_of(prompt["ids"]);
    const std::vector<float> logits = all_logits(*model, ids);
    const int64_t n = static_cast<int64_t>(ids.size());

    // Last position: every logit.
    const auto expected_last = prompt["last_logits"].get<std::vector<double>>();
    ASSERT_EQ(static_cast<int64_t>(expected_last.size()), vocab);
    double max_diff = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      max_diff = std::max(max_diff, std::abs(logits[(n - 1) * vocab + v] - expected_last[v]));
    }
    const double bound = kLogitTolerance * prompt["max_abs_last_logit"].get<double>();
    EXPECT_LE(max_diff, bound) << "last position";

    // Every position: HF's top-5 values at HF's top-5 ids, and our argmax is HF's (or ties within bound).
    const double all_bound = kLogitTolerance * prompt["max_abs_logit"].get<double>();
    double max_top_diff = 0;
    for (int64_t p = 0; p < n; ++p) {
      const auto top_ids = ids_of(prompt["top5_ids"][p]);
      const auto top_values = prompt["top5_values"][p].get<std::vector<double>>();
      for (size_t r = 0; r < top_ids.size(); ++r) {
        max_top_diff = std::max(max_top_diff, std::abs(logits[p * vocab + top_ids[r]] - top_values[r]));
      }
      const std::span<const float> row(logits.data() + p * vocab, static_cast<size_t>(vocab));
      const int32_t ours = argmax(row);
      EXPECT_TRUE(ours == top_ids[0] || std::abs(row[ours] - top_values[0]) <= all_bound)
          << "position " << p << ": argmax " << ours << " vs HF " << top_ids[0];
    }
    EXPECT_LE(max_top_diff, all_bound);
    std::printf("[ logits   ] %-60s tokens %3lld  max|diff| last %.2e  top-5 %.2e  (bound %.2e)\n",
                prompt["text"].get<std::string>().substr(0, 60).c_str(), static_cast<long long>(n), max_diff,
                max_top_diff, all_bound);
  }
}

TEST(LlamaVsHf, ProxyGreedyContinuations) {
  QLLM_HF_FIXTURE_OR_SKIP(fixture, "proxy_greedy.json");
  QLLM_PROXY_OR_SKIP(dir);
  const auto model = testing::load_cpu_model(dir);
  for (const auto& prompt : fixture["prompts"]) {
    SCOPED_TRACE(prompt["text"].get<std::string>());
    const auto expected = ids_of(prompt["new_ids"]);
    GenerateOptions options;
    options.max_new_tokens = static_cast<int64_t>(expected.size());  // no stop ids: exactly that many
    const GenerateResult result = testing::generate_fresh(*model, ids_of(prompt["ids"]), options);
    EXPECT_EQ(result.tokens, expected);
    EXPECT_EQ(result.stop_reason, "max_tokens");
  }
}

TEST(LlamaVsHf, ProxyWikitextNllAndPerplexity) {
  QLLM_HF_FIXTURE_OR_SKIP(fixture, "proxy_wikitext_nll.json");
  QLLM_PROXY_OR_SKIP(dir);
  const auto model = testing::load_cpu_model(dir);
  const auto ids = ids_of(fixture["ids"]);
  const auto expected = fixture["nll"].get<std::vector<double>>();

  PerplexityOptions options;
  options.ctx = static_cast<int64_t>(ids.size());
  options.keep_token_nll = true;
  // Chunks of 300 tokens: several passes through the KV cache.
  const auto context = model->new_context({.max_positions = options.ctx, .max_batch_tokens = 300});
  const PerplexityResult result = perplexity(*context, ids, options);
  const double hf_ppl = fixture["perplexity"].get<double>();
  EXPECT_EQ(result.protocol, "hf");
  EXPECT_EQ(result.scored_tokens, static_cast<int64_t>(expected.size()));
  EXPECT_NEAR(result.perplexity / hf_ppl, 1.0, 1e-3) << "qllm " << result.perplexity << " HF " << hf_ppl;

  const std::vector<double>& nll = result.token_nll;
  ASSERT_EQ(nll.size(), expected.size());
  double max_diff = 0;
  for (size_t i = 0; i < nll.size(); ++i) max_diff = std::max(max_diff, std::abs(nll[i] - expected[i]));
  EXPECT_LT(max_diff, 0.02);
  std::printf(
      "[ wikitext ] %zu tokens: perplexity qllm %.4f, HF %.4f (ratio %.6f); max |NLL diff| %.2e; %.0f "
      "tok/s\n",
      ids.size(), result.perplexity, hf_ppl, result.perplexity / hf_ppl, max_diff,
      result.tokens_per_second());
}

// HF loaded a `qllm synth --config tiny` checkpoint: regenerate it with the same seed (it must be the same
// file, byte for byte) and compare logits.
TEST(LlamaVsHf, SynthTinyCheckpointMatchesHf) {
  QLLM_HF_FIXTURE_OR_SKIP(fixture, "tiny_synth_logits.json");
  const auto& metadata = fixture["synth_metadata"];
  ASSERT_TRUE(metadata.contains("qllm_synth_seed")) << "fixture lacks the synth seed: " << metadata.dump();
  testing::TempDir dir;
  write_synthetic_checkpoint({.preset = "tiny",
                              .out_dir = dir.str(),
                              .seed = std::stoull(metadata["qllm_synth_seed"].get<std::string>())});
  EXPECT_EQ(testing::read_json_file(dir.file("config.json")), fixture["config"]);
  const auto model = testing::load_cpu_model(dir.str());
  const auto ids = ids_of(fixture["ids"]);
  const std::vector<float> logits = all_logits(*model, ids);
  const int64_t vocab = model->config().vocab_size;
  const double bound = kLogitTolerance * fixture["max_abs_logit"].get<double>();
  double max_diff = 0;
  for (size_t p = 0; p < ids.size(); ++p) {
    const auto row = fixture["logits"][p].get<std::vector<double>>();
    ASSERT_EQ(static_cast<int64_t>(row.size()), vocab);
    for (int64_t v = 0; v < vocab; ++v)
      max_diff = std::max(max_diff, std::abs(logits[p * vocab + v] - row[v]));
  }
  EXPECT_LE(max_diff, bound);
}

}  // namespace
}  // namespace qllm
