// The forward-pass invariants every backend must keep, written against the Model/Context interface
// (src/model/causal_lm.h) so that the CPU reference and the GPU engine run the same tests: causality,
// incremental decode and chunked prefill equal to the full forward, a rewound sequence recomputed, a batch
// of sequences of different lengths equal to each sequence alone, and clear errors for bad input.
// A test file instantiates it with its backends:
//   INSTANTIATE_TEST_SUITE_P(Cpu, ForwardInvariants, ::testing::Values(Backend{"cpu_bf16", "cpu", "bf16", 1e-5}));
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/load_model.h"
#include "model/synthetic.h"
#include "qllm/error.h"
#include "tests/support/test_util.h"

namespace qllm::testing {

struct Backend {
  std::string name;    // test name suffix
  std::string device;  // "cpu" | "cuda"
  std::string quant;   // a --quant mode
  double tolerance;    // relative difference allowed between two ways of computing the same logits
  std::string preset = "tiny";  // the synthetic model (the GPU engine needs head_dim 64: "small")
  std::string lm_head = "same";  // --quant-lm-head
};

inline std::ostream& operator<<(std::ostream& os, const Backend& b) {
  return os << b.name;
}

class ForwardInvariants : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam().device == "cuda") {
      QLLM_SKIP_WITHOUT_GPU();
    }
    write_synthetic_checkpoint({.preset = GetParam().preset, .out_dir = dir_.str(), .seed = 11});
    LoadOptions options;
    options.device = parse_device(GetParam().device);
    options.quant = ModelQuant::parse(GetParam().quant, GetParam().lm_head);
    options.verbose = false;
    loaded_ = std::make_unique<LoadedModel>(load_model(dir_.str(), options));
    vocab_ = loaded_->model->config().vocab_size;
  }

  std::unique_ptr<Context> context(int sequences, int64_t positions, int64_t batch_tokens = 64) const {
    return loaded_->model->new_context(
        {.max_sequences = sequences, .max_positions = positions, .max_batch_tokens = batch_tokens});
  }

  std::vector<int32_t> random_tokens(size_t n, Rng& rng) const {
    std::vector<int32_t> t(n);
    for (auto& id : t) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab_)));
    return t;
  }

  // Logits of every token of `tokens` fed to sequence `seq` from `start`.
  std::vector<float> all_logits(Context& c, std::span<const int32_t> tokens, int64_t start = 0,
                                int seq = 0) const {
    std::vector<float> logits(tokens.size() * static_cast<size_t>(vocab_));
    const SequenceInput input{seq, start, tokens};
    c.forward(std::span(&input, 1), {.all_logits = logits});
    return logits;
  }
  std::vector<float> last_logits(Context& c, std::span<const int32_t> tokens, int64_t start = 0,
                                 int seq = 0) const {
    std::vector<float> logits(static_cast<size_t>(vocab_));
    const SequenceInput input{seq, start, tokens};
    c.forward(std::span(&input, 1), {.last_logits = logits});
    return logits;
  }

  double tolerance() const { return GetParam().tolerance; }

  TempDir dir_;
  std::unique_ptr<LoadedModel> loaded_;
  int64_t vocab_ = 0;
};

TEST_P(ForwardInvariants, FutureTokensDoNotChangeEarlierLogits) {
  Rng rng(fresh_seed());
  std::vector<int32_t> a = random_tokens(12, rng);
  std::vector<int32_t> b = a;
  for (size_t i = 6; i < b.size(); ++i) b[i] = static_cast<int32_t>((b[i] + 1 + i) % vocab_);
  const auto c = context(1, 12);
  const std::vector<float> la = all_logits(*c, a);
  const std::vector<float> lb = all_logits(*c, b);
  const size_t prefix = 6 * vocab_;
  EXPECT_LE(relative_diff(std::span(la).first(prefix), std::span(lb).first(prefix)), tolerance());
  EXPECT_GT(relative_diff(std::span(la).subspan(prefix), std::span(lb).subspan(prefix)), 1e-3);
}

TEST_P(ForwardInvariants, IncrementalDecodeAndChunkedPrefillEqualTheFullForward) {
  Rng rng(fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(20, rng);
  const auto c = context(1, 20);
  const std::vector<float> full = all_logits(*c, tokens);
  std::vector<float> incremental;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto row = all_logits(*c, std::span(tokens).subspan(i, 1), static_cast<int64_t>(i));
    incremental.insert(incremental.end(), row.begin(), row.end());
  }
  EXPECT_LT(relative_diff(incremental, full), tolerance());
  EXPECT_EQ(c->length(0), 20);
  std::vector<float> chunked;
  int64_t start = 0;
  for (int64_t n : {7, 9, 4}) {
    const auto rows = all_logits(*c, std::span(tokens).subspan(start, n), start);
    chunked.insert(chunked.end(), rows.begin(), rows.end());
    start += n;
  }
  EXPECT_LT(relative_diff(chunked, full), tolerance());
  const auto last = last_logits(*c, std::span(tokens).subspan(15, 5), 15);
  EXPECT_LT(relative_diff(last, std::span(full).subspan(19 * vocab_)), tolerance());
}

TEST_P(ForwardInvariants, RewindingASequenceReplacesItsTail) {
  Rng rng(fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(10, rng);
  const auto c = context(1, 10);
  const std::vector<float> full = all_logits(*c, tokens);
  std::vector<int32_t> other = tokens;
  other[8] = static_cast<int32_t>((other[8] + 3) % vocab_);
  all_logits(*c, std::span(other).subspan(5), 5);  // a different tail at positions 5..9
  const auto again = all_logits(*c, std::span(tokens).subspan(5), 5);
  EXPECT_LT(relative_diff(again, std::span(full).subspan(5 * vocab_)), tolerance());
  c->truncate(0, 3);
  EXPECT_EQ(c->length(0), 3);
  const auto after_truncate = all_logits(*c, std::span(tokens).subspan(3), 3);
  EXPECT_LT(relative_diff(after_truncate, std::span(full).subspan(3 * vocab_)), tolerance());
}

TEST_P(ForwardInvariants, BatchEqualsSeparateSequences) {
  Rng rng(fresh_seed());
  const std::vector<std::vector<int32_t>> seqs = {random_tokens(9, rng), random_tokens(3, rng),
                                                  random_tokens(14, rng)};
  std::vector<std::vector<float>> separate;
  {
    const auto one = context(1, 16);
    for (const auto& s : seqs) separate.push_back(all_logits(*one, s));
  }
  const auto c = context(3, 16);
  std::vector<SequenceInput> batch;
  size_t tokens = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    batch.push_back({static_cast<int>(2 - i), 0, seqs[i]});
    tokens += seqs[i].size();
  }
  std::vector<float> all(tokens * vocab_);
  c->forward(batch, {.all_logits = all});
  size_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const size_t n = seqs[i].size() * vocab_;
    EXPECT_LT(relative_diff(std::span(all).subspan(row, n), separate[i]), tolerance()) << "sequence " << i;
    row += n;
  }
  // Continue all three by one token each, at their own positions: one row per sequence.
  std::vector<int32_t> next = {1, 2, 3};
  std::vector<SequenceInput> step;
  for (size_t i = 0; i < seqs.size(); ++i) {
    step.push_back(
        {static_cast<int>(2 - i), static_cast<int64_t>(seqs[i].size()), std::span(next).subspan(i, 1)});
  }
  std::vector<float> stepped(3 * vocab_);
  c->forward(step, {.last_logits = stepped});
  const auto one = context(1, 16);
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<int32_t> extended = seqs[i];
    extended.push_back(next[i]);
    const auto expected = last_logits(*one, extended);
    EXPECT_LT(relative_diff(std::span(stepped).subspan(i * vocab_, vocab_), expected), tolerance()) << i;
  }
}

TEST_P(ForwardInvariants, NllOfTargetsMatchesTheLogits) {
  Rng rng(fresh_seed());
  const std::vector<int32_t> tokens = random_tokens(9, rng);
  const auto c = context(1, 9);
  const std::vector<float> logits = all_logits(*c, std::span(tokens).first(8));
  std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  targets[2] = -1;  // not scored
  std::vector<double> nll(8, -1.0);
  const SequenceInput input{0, 0, std::span(tokens).first(8)};
  c->forward(std::span(&input, 1), {.targets = targets, .nll = nll});
  for (size_t i = 0; i < 8; ++i) {
    if (targets[i] < 0) continue;
    const float* row = logits.data() + i * vocab_;
    const float max = *std::max_element(row, row + vocab_);
    double sum = 0;
    for (int64_t v = 0; v < vocab_; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
    const double expected = std::log(sum) + max - row[targets[i]];
    EXPECT_NEAR(nll[i], expected, 1e-3 * std::max(1.0, expected)) << i;
  }
}

// The draws' log-probabilities (OpenAI's logprobs) are the log-softmax of the logits the same pass returns:
// the sampled token's, and the top k ids in logit order (equal logits: lower id first).
TEST_P(ForwardInvariants, SampledLogprobsMatchTheLogits) {
  Rng rng(fresh_seed());
  const std::vector<std::vector<int32_t>> seqs = {random_tokens(5, rng), random_tokens(2, rng)};
  const auto c = context(2, 8);
  std::vector<SequenceInput> batch;
  for (size_t i = 0; i < seqs.size(); ++i) batch.push_back({static_cast<int>(i), 0, seqs[i]});
  constexpr int k = 5;
  SamplingParams hot;
  hot.temperature = 1.5f;
  hot.seed = 3;
  const std::vector<TokenSampling> sampling = {{SamplingParams{}, 0, {}}, {hot, 0, {}}};
  std::vector<float> logits(2 * vocab_);
  std::vector<int32_t> sampled(2, -1), top_ids(2 * k, -1);
  std::vector<float> sampled_logprobs(2, NAN), top_logprobs(2 * k, NAN);
  c->forward(batch, {.last_logits = logits,
                     .sampling = sampling,
                     .sampled = sampled,
                     .sampled_logprobs = sampled_logprobs,
                     .top_logprobs = k,
                     .top_ids = top_ids,
                     .top_id_logprobs = top_logprobs});
  for (size_t s = 0; s < 2; ++s) {
    const float* row = logits.data() + s * vocab_;
    const float max = *std::max_element(row, row + vocab_);
    double sum = 0;
    for (int64_t v = 0; v < vocab_; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
    const double log_norm = std::log(sum) + max;
    ASSERT_GE(sampled[s], 0);
    EXPECT_NEAR(sampled_logprobs[s], row[sampled[s]] - log_norm, 1e-4) << s;
    std::vector<int32_t> order(static_cast<size_t>(vocab_));
    for (int64_t v = 0; v < vocab_; ++v) order[static_cast<size_t>(v)] = static_cast<int32_t>(v);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(top_ids[s * k + j], order[static_cast<size_t>(j)]) << s << " pick " << j;
      EXPECT_NEAR(top_logprobs[s * k + j], row[order[static_cast<size_t>(j)]] - log_norm, 1e-4) << s;
    }
  }
  EXPECT_EQ(sampled[0], top_ids[0]);  // greedy draws the likeliest
}

TEST_P(ForwardInvariants, ForwardRejectsOverflowAndBadInput) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  const auto c = context(2, 4, 6);
  all_logits(*c, tokens);
  auto error = [&](const std::function<void()>& f) { return error_of(f); };
  EXPECT_NE(error([&] { all_logits(*c, std::span(tokens).first(1), 4); }).find("context overflow"),
            std::string::npos);
  EXPECT_NE(error([&] { all_logits(*c, tokens, 0, 5); }).find("sequence id 5"), std::string::npos);
  EXPECT_NE(error([&] { all_logits(*c, tokens, 3, 1); }).find("starts at position 3"), std::string::npos);
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(vocab_)};
  EXPECT_NE(error([&] { all_logits(*c, bad); }).find("outside the vocabulary"), std::string::npos);
  std::vector<SequenceInput> twice = {{0, 0, tokens}, {0, 0, tokens}};
  EXPECT_NE(error([&] { c->forward(twice, {}); }).find("appears twice"), std::string::npos);
  std::vector<SequenceInput> too_many = {{0, 0, tokens}, {1, 0, tokens}};
  EXPECT_NE(error([&] { c->forward(too_many, {}); }).find("max_batch_tokens"), std::string::npos);
  std::vector<float> small(3);
  const SequenceInput one{0, 0, std::span(tokens).first(1)};
  EXPECT_NE(
      error([&] { c->forward(std::span(&one, 1), {.last_logits = small}); }).find("last_logits holds 3"),
      std::string::npos);
  EXPECT_NE(
      error([&] {
        loaded_->model->new_context({.max_positions = loaded_->model->config().max_position_embeddings + 1});
      }).find("exceeds"),
      std::string::npos);
}

}  // namespace qllm::testing
