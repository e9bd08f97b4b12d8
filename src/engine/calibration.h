// Calibration text for GPTQ (docs/GPTQ.md): token windows cut from a text file (`--calib FILE`) or sampled by
// the model itself from BOS (`--calib self`: no data set needed). The evaluation text (WikiText-2 test) is
// refused: calibrating on the text that perplexity is measured on would flatter the result.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/causal_lm.h"
#include "qllm/tokenizer.h"

namespace qllm {

struct CalibrationOptions {
  std::string source = "self";  // "self" or a text file
  int64_t samples = 16;         // windows
  int64_t length = 512;         // tokens per window (BOS included)
  uint64_t seed = 0;            // window positions (file) or sampling (self)
};

// FNV-1a 64 of the text with CRLF read as LF and leading/trailing whitespace dropped: the same text saved
// with other line endings keeps its fingerprint.
uint64_t text_fingerprint(std::string_view text);
// The fingerprint of the WikiText-2 (raw) test split, wikitext-2-raw-test.txt (1,296,370 bytes).
inline constexpr uint64_t kWikitext2TestFingerprint = 0x4c33636675b8eadfull;

// qllm::Error when `text` (read from `path`) is the WikiText-2 test text.
void refuse_evaluation_text(std::string_view text, const std::string& path);

// `options.samples` windows of `options.length` tokens, each starting with BOS (when the tokenizer has one):
// from the file, at seeded random offsets of its tokens (fewer tokens than one window is an error); or
// sampled from `model` at temperature 1 (no filters), batched over the windows.
std::vector<std::vector<int32_t>> calibration_windows(const Model& model, const Tokenizer& tokenizer,
                                                      const CalibrationOptions& options);

}  // namespace qllm
