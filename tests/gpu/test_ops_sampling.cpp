// Op-harness rows of the GPU sampler and the token log-probs (src/kernels/sampling). Sampling: the token of
// every row equals the CPU Sampler's (src/model/sampler.cpp, the spec) on the same logits, seed and step,
// over three consecutive calls (the kernel advances each row's step counter); random logits put no boundary
// of the draw, the top-p cut or min-p within the 1e-12 where the GPU's fixed-point masses and the CPU's
// double sums could disagree. Log-probs: |nll - ref| <= 1e-9 (double sums in another order). Top log-probs:
// the same ids in the same order as the reference (ties included: few-level logits make many), log-probs within
// 1e-5 relative (f32 of double sums in another order).
#include <fmt/format.h>

#include <cmath>

#include "kernels/sampling/sampling.h"
#include "kernels/sampling/token_logprobs.h"
#include "kernels/sampling/top_logprobs.h"
#include "model/sampler.h"
#include "tests/gpu/op_harness.h"
#include "tests/gpu/ops_test_util.h"

namespace qllm::testing {
namespace {

enum class LogitKind { Normal, FewLevels, TiedMaxima };

struct SamplingCase {
  int64_t rows, vocab;
  DType dtype;
  SamplingParams params;  // seeds differ per row: params.seed + row
  int64_t window = 0;
  LogitKind kind = LogitKind::Normal;
};

std::vector<uint16_t> make_logits(const SamplingCase& c, Rng& rng) {
  const auto n = static_cast<size_t>(c.rows * c.vocab);
  if (c.kind == LogitKind::Normal) return random_bits16(n, rng, c.dtype, 3.0);
  std::vector<uint16_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    // FewLevels: three values, so the top-p cut falls inside a run of equal logits (index order decides);
    // TiedMaxima: the maximum appears at several indices (greedy takes the lowest).
    const double level = c.kind == LogitKind::FewLevels ? std::floor(rng.uniform() * 3)
                                                        : (rng.uniform() < 0.01 ? 5.0 : rng.normal());
    out[i] = float_to_bits16(static_cast<float>(level), c.dtype);
  }
  return out;
}

OpResult run_sampling(const SamplingCase& c, uint64_t seed) {
  Rng rng(seed);
  const std::vector<uint16_t> logits = make_logits(c, rng);
  std::vector<int32_t> recent(static_cast<size_t>(c.rows * c.window));
  for (auto& id : recent)
    id = rng.uniform() < 0.2 ? -1 : static_cast<int32_t>(rng.uniform() * 64);  // repeats too
  std::vector<SamplingRowState> states(static_cast<size_t>(c.rows));
  for (int64_t r = 0; r < c.rows; ++r) {
    const SamplingParams& s = c.params;
    states[r] = {.temperature = s.temperature,
                 .top_k = static_cast<int32_t>(s.top_k),
                 .top_p = s.top_p,
                 .min_p = s.min_p,
                 .repetition_penalty = s.repetition_penalty,
                 .seed = s.seed + r,
                 .step = 0};
    check_sampling_row(states[r]);
  }
  constexpr int kCalls = 3;
  std::vector<int32_t> expected, got;
  for (int64_t r = 0; r < c.rows; ++r) {
    SamplingParams params = c.params;
    params.seed += r;
    Sampler sampler(params);
    std::vector<int32_t> history;
    for (int64_t j = 0; j < c.window; ++j) {
      if (recent[r * c.window + j] >= 0) history.push_back(recent[r * c.window + j]);
    }
    for (int call = 0; call < kCalls; ++call) {
      std::vector<float> row(static_cast<size_t>(c.vocab));
      for (int64_t i = 0; i < c.vocab; ++i) row[i] = bits16_to_float(logits[r * c.vocab + i], c.dtype);
      expected.push_back(sampler.sample(row, history));
    }
  }
  TestStream stream;
  DeviceBuffer<uint16_t> d_logits = to_device(logits);
  DeviceBuffer<int32_t> d_recent = to_device(recent), d_tokens(static_cast<size_t>(c.rows));
  DeviceBuffer<SamplingRowState> d_states = to_device(states);
  DeviceBuffer<int> d_flag = to_device(std::vector<int>{0});
  std::vector<std::vector<int32_t>> per_call;
  for (int call = 0; call < kCalls; ++call) {
    poison(d_tokens);
    launch_sample_tokens({.rows = c.rows,
                          .vocab = c.vocab,
                          .dtype = c.dtype,
                          .logits = d_logits.data(),
                          .row_state = d_states.data(),
                          .recent_ids = c.window > 0 ? d_recent.data() : nullptr,
                          .window = c.window,
                          .tokens = d_tokens.data(),
                          .error_flag = d_flag.data()},
                         stream.get());
    stream.sync();
    per_call.push_back(d_tokens.download());
  }
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int call = 0; call < kCalls; ++call) got.push_back(per_call[call][r]);
  }
  OpResult result = compare_exact(got, expected);
  for (const SamplingRowState& s : d_states.download()) {
    if (s.step != kCalls) result = {INFINITY, fmt::format("step counter {} after {} calls", s.step, kCalls)};
  }
  if (d_flag.download()[0] != 0) result = {INFINITY, "error flag set on finite logits"};
  return result;
}

QLLM_OP_CASES(sampling) {
  std::vector<OpCase> cases;
  uint64_t seed = 300;
  const std::vector<std::pair<std::string, SamplingParams>> configs = {
      {"greedy", {}},
      {"greedy-penalty", {.repetition_penalty = 1.3f}},
      {"temperature", {.temperature = 0.8f, .seed = 11}},
      {"top-k", {.temperature = 1.0f, .top_k = 40, .seed = 12}},
      {"top-k1", {.temperature = 1.0f, .top_k = 1, .seed = 13}},
      {"top-p", {.temperature = 1.0f, .top_p = 0.9f, .seed = 14}},
      {"min-p", {.temperature = 1.2f, .min_p = 0.05f, .seed = 15}},
      {"all",
       {.temperature = 0.7f,
        .top_k = 50,
        .top_p = 0.95f,
        .min_p = 0.02f,
        .repetition_penalty = 1.2f,
        .seed = 16}},
      {"hot-top-p", {.temperature = 3.0f, .top_p = 0.5f, .seed = 17}},
  };
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t vocab : {1000, 8192, 49152, 128256}) {
      for (int64_t rows : {1, 7}) {
        for (const auto& [name, params] : configs) {
          const int64_t window = params.repetition_penalty != 1.0f ? 32 : 0;
          const SamplingCase c{rows, vocab, dtype, params, window};
          cases.push_back({"sampling", fmt::format("rows={} vocab={} {}", rows, vocab, name),
                           dtype_label(dtype), Metric::Exact, 0.0,
                           [c, s = seed++] { return run_sampling(c, s); }});
        }
      }
    }
  }
  // Ties: the top-p cut inside a run of equal logits, and tied maxima for greedy.
  for (auto [name, kind, params] : std::vector<std::tuple<std::string, LogitKind, SamplingParams>>{
           {"ties-top-p", LogitKind::FewLevels, {.temperature = 1.0f, .top_p = 0.5f, .seed = 21}},
           {"ties-top-k", LogitKind::FewLevels, {.temperature = 1.0f, .top_k = 7, .seed = 22}},
           {"ties-greedy", LogitKind::TiedMaxima, {}}}) {
    const SamplingCase c{5, 1003, DType::BF16, params, 0, kind};
    cases.push_back({"sampling", fmt::format("rows=5 vocab=1003 {}", name), "bf16", Metric::Exact, 0.0,
                     [c, s = seed++] { return run_sampling(c, s); }});
  }
  return cases;
}

OpResult run_token_logprobs(int64_t rows, int64_t vocab, DType dtype, uint64_t seed) {
  Rng rng(seed);
  const std::vector<uint16_t> logits = random_bits16(static_cast<size_t>(rows * vocab), rng, dtype, 4.0);
  std::vector<int32_t> targets(static_cast<size_t>(rows));
  for (auto& t : targets) t = static_cast<int32_t>(rng.uniform() * static_cast<double>(vocab));
  if (rows > 1) targets[1] = -1;
  std::vector<double> ref_nll(targets.size());
  std::vector<float> ref_logprob(targets.size());
  token_logprobs_ref({.rows = rows,
                      .vocab = vocab,
                      .dtype = dtype,
                      .logits = logits.data(),
                      .targets = targets.data(),
                      .nll = ref_nll.data(),
                      .logprob = ref_logprob.data()});
  TestStream stream;
  DeviceBuffer<uint16_t> d_logits = to_device(logits);
  DeviceBuffer<int32_t> d_targets = to_device(targets);
  DeviceBuffer<double> d_nll(targets.size());
  DeviceBuffer<float> d_logprob(targets.size());
  poison(d_nll);
  poison(d_logprob);
  launch_token_logprobs({.rows = rows,
                         .vocab = vocab,
                         .dtype = dtype,
                         .logits = d_logits.data(),
                         .targets = d_targets.data(),
                         .nll = d_nll.data(),
                         .logprob = d_logprob.data()},
                        stream.get());
  stream.sync();
  const std::vector<double> nll = d_nll.download();
  const std::vector<float> logprob = d_logprob.download();
  OpResult r;
  for (size_t i = 0; i < nll.size(); ++i) {
    const double err = std::abs(nll[i] - ref_nll[i]);
    if (!(err <= r.error))
      r = {std::isnan(err) ? INFINITY : err, fmt::format("row {}: {} vs {}", i, nll[i], ref_nll[i])};
    if (std::abs(logprob[i] - ref_logprob[i]) > 1e-5 * std::max(1.0f, std::abs(ref_logprob[i])))
      return {INFINITY, fmt::format("row {}: logprob {} vs {}", i, logprob[i], ref_logprob[i])};
  }
  return r;
}

QLLM_OP_CASES(token_logprobs) {
  std::vector<OpCase> cases;
  uint64_t seed = 400;
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t vocab : {1, 1001, 8192, 49152, 128256}) {
      for (int64_t rows : {1, 7, 64}) {
        cases.push_back({"token_logprobs", fmt::format("rows={} vocab={}", rows, vocab), dtype_label(dtype),
                         Metric::MaxAbs, 1e-9,
                         [=, s = seed++] { return run_token_logprobs(rows, vocab, dtype, s); }});
      }
    }
  }
  return cases;
}

// Top log-probs: `levels` > 0 draws logits from that many values (ties decided by id), else normal ones.
OpResult run_top_logprobs(int64_t rows, int64_t vocab, int k, int levels, DType dtype, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint16_t> logits = random_bits16(static_cast<size_t>(rows * vocab), rng, dtype, 4.0);
  if (levels > 0) {
    for (auto& b : logits) b = float_to_bits16(static_cast<float>(std::floor(rng.uniform() * levels)), dtype);
  }
  const auto n = static_cast<size_t>(rows * k);
  std::vector<int32_t> ref_ids(n);
  std::vector<float> ref_logprobs(n);
  top_logprobs_ref({.rows = rows,
                    .vocab = vocab,
                    .k = k,
                    .dtype = dtype,
                    .logits = logits.data(),
                    .ids = ref_ids.data(),
                    .logprobs = ref_logprobs.data()});
  TestStream stream;
  DeviceBuffer<uint16_t> d_logits = to_device(logits);
  DeviceBuffer<int32_t> d_ids(n);
  DeviceBuffer<float> d_logprobs(n);
  poison(d_ids);
  poison(d_logprobs);
  launch_top_logprobs({.rows = rows,
                       .vocab = vocab,
                       .k = k,
                       .dtype = dtype,
                       .logits = d_logits.data(),
                       .ids = d_ids.data(),
                       .logprobs = d_logprobs.data()},
                      stream.get());
  stream.sync();
  const std::vector<int32_t> ids = d_ids.download();
  const std::vector<float> logprobs = d_logprobs.download();
  OpResult r;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] != ref_ids[i])
      return {INFINITY, fmt::format("row {} pick {}: id {} vs {}", i / k, i % k, ids[i], ref_ids[i])};
    const double err = std::abs(logprobs[i] - ref_logprobs[i]) / std::max(1.0f, std::abs(ref_logprobs[i]));
    if (!(err <= r.error))
      r = {std::isnan(err) ? INFINITY : err,
           fmt::format("row {} pick {}: {} vs {}", i / k, i % k, logprobs[i], ref_logprobs[i])};
  }
  return r;
}

QLLM_OP_CASES(top_logprobs) {
  std::vector<OpCase> cases;
  uint64_t seed = 500;
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t vocab : {20, 1001, 49152, 128256}) {
      for (int k : {1, 5, 20}) {
        for (int levels : {0, 3}) {
          const int64_t rows = vocab > 50000 ? 3 : 9;
          cases.push_back({"top_logprobs",
                           fmt::format("rows={} vocab={} k={} levels={}", rows, vocab, k, levels),
                           dtype_label(dtype), Metric::MaxRel, 1e-5,
                           [=, s = seed++] { return run_top_logprobs(rows, vocab, k, levels, dtype, s); }});
        }
      }
    }
  }
  return cases;
}

}  // namespace
}  // namespace qllm::testing
