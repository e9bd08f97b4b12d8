// The Split pre-tokenizer: the regex of tokenizer.json, compiled as written by PCRE2 (UTF + UCP, so
// that \s, \p{L}, \p{N} and (?i) follow Unicode as HF's Oniguruma does; JIT-compiled for speed), with
// HF's "Isolated" behaviour: every match is a piece and so is every stretch of text between matches.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::detail {

class RegexSplitter {
 public:
  // `origin` names the pattern in error messages ("<file>: pre_tokenizer ... Regex").
  RegexSplitter(const std::string& pattern, const std::string& origin);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;

  // Appends the pieces of `text` (valid UTF-8: the caller checked it) in order; they cover `text` exactly.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace qllm::detail
