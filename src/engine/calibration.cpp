#include "engine/calibration.h"

#include <algorithm>

#include "core/file_io.h"
#include "core/random.h"
#include "qllm/error.h"

namespace qllm {

namespace {

std::vector<std::vector<int32_t>> windows_from_file(const Tokenizer& tokenizer, const CalibrationOptions& o) {
  const std::string text = read_text_file(o.source);
  refuse_evaluation_text(text, o.source);
  const std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special_tokens=*/false);
  const std::optional<int32_t> bos = tokenizer.bos_id();
  const int64_t body = o.length - (bos ? 1 : 0);  // text tokens per window
  QLLM_CHECK(static_cast<int64_t>(tokens.size()) >= body,
             "--calib {}: {} tokens, fewer than one window of --calib-len {}", o.source, tokens.size(),
             o.length);
  Rng rng(o.seed);
  std::vector<std::vector<int32_t>> windows;
  const auto span = static_cast<uint64_t>(tokens.size() - body + 1);
  for (int64_t s = 0; s < o.samples; ++s) {
    const auto start = static_cast<int64_t>(rng.next_u64() % span);
    std::vector<int32_t> w;
    if (bos) w.push_back(*bos);
    w.insert(w.end(), tokens.begin() + start, tokens.begin() + start + body);
    windows.push_back(std::move(w));
  }
  return windows;
}

// All windows decoded together: one forward pass per position over every sequence still running.
std::vector<std::vector<int32_t>> windows_from_model(const Model& model, const Tokenizer& tokenizer,
                                                     const CalibrationOptions& o) {
  const std::optional<int32_t> bos = tokenizer.bos_id();
  QLLM_CHECK(bos.has_value(), "--calib self: the tokenizer has no BOS token to start sampling from");
  const int n = static_cast<int>(o.samples);
  auto context = model.new_context(
      {.max_sequences = n, .max_positions = o.length, .max_batch_tokens = std::max<int64_t>(n, 512)});
  std::vector<std::vector<int32_t>> windows(static_cast<size_t>(n), std::vector<int32_t>{*bos});
  std::vector<int32_t> sampled(static_cast<size_t>(n));
  for (int64_t pos = 0; pos + 1 < o.length; ++pos) {
    std::vector<SequenceInput> batch;
    std::vector<TokenSampling> how;
    for (int s = 0; s < n; ++s) {
      batch.push_back({.seq = s, .start_position = pos, .tokens = std::span(windows[s]).subspan(pos, 1)});
      SamplingParams p;
      p.temperature = 1.0f;
      p.seed = o.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(s) + 1;
      how.push_back({.params = p, .step = static_cast<uint64_t>(pos), .history = {}});
    }
    context->forward(batch, {.sampling = how, .sampled = sampled});
    for (int s = 0; s < n; ++s) windows[s].push_back(sampled[s]);
  }
  return windows;
}

}  // namespace

uint64_t text_fingerprint(std::string_view text) {
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  size_t begin = 0, end = text.size();
  while (begin < end && space(text[begin])) ++begin;
  while (end > begin && space(text[end - 1])) --end;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = begin; i < end; ++i) {
    if (text[i] == '\r' && i + 1 < end && text[i + 1] == '\n') continue;  // CRLF counts as LF
    h = (h ^ static_cast<unsigned char>(text[i])) * 0x100000001b3ull;
  }
  return h;
}

void refuse_evaluation_text(std::string_view text, const std::string& path) {
  QLLM_CHECK(text_fingerprint(text) != kWikitext2TestFingerprint,
             "--calib {}: this is the WikiText-2 test text, which perplexity is measured on; calibrating on "
             "it would flatter the result (use other text, or --calib self)",
             path);
}

std::vector<std::vector<int32_t>> calibration_windows(const Model& model, const Tokenizer& tokenizer,
                                                      const CalibrationOptions& options) {
  QLLM_CHECK(options.samples > 0 && options.samples <= 4096, "--calib-samples must be in [1, 4096], got {}",
             options.samples);
  QLLM_CHECK(options.length >= 2 && options.length <= model.config().max_position_embeddings,
             "--calib-len must be in [2, {}] (the model's positions), got {}",
             model.config().max_position_embeddings, options.length);
  return options.source == "self" ? windows_from_model(model, tokenizer, options)
                                  : windows_from_file(tokenizer, options);
}

}  // namespace qllm
