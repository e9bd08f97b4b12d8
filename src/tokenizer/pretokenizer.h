// The Split pre-tokenizer: the regex of tokenizer.json compiled by PCRE2 (UTF + UCP, so that \s, \p{L},
// \p{N} and (?i) follow Unicode; JIT-compiled for speed), with HF's "Isolated" behaviour: every match is
// a piece and so is every stretch of text between matches.
//
// HF matches with Oniguruma, whose Unicode classes differ from PCRE2 10.42's in two ways, found by
// comparing ids with HF on random text: PCRE2's \s also matches U+180E (whitespace before Unicode 6.3),
// and PCRE2's tables are Unicode 14.0 while Oniguruma knows the ~9,400 letters and numbers assigned
// since (unicode_delta.h). So the pattern is compiled as written except that \s and \S are spelled out
// as the Unicode White_Space set and \p{L} / \p{N} get those later code points added.
//
// GGUF tokenizers must split as llama.cpp does, whose hand-written splitters and \p{..} handling use its
// own Unicode tables (unicode_delta_llama_cpp.h): the same rewrite with llama.cpp's later code points.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::detail {

// Whose Unicode classes a pattern must match: HF's (Oniguruma's) or llama.cpp's.
enum class UnicodeClasses { Oniguruma, LlamaCpp };

// `pattern` with \s, \S, \p{L}, \p{N}, \P{L} and \P{N} rewritten to match what Oniguruma (or llama.cpp)
// matches. Throws for a negated class (\S, \P{..}) inside a character class, which a set cannot express.
std::string rewrite_unicode_classes(std::string_view pattern,
                                    UnicodeClasses classes = UnicodeClasses::Oniguruma);

class RegexSplitter {
 public:
  // `origin` names the pattern in error messages ("<file>: pre_tokenizer ... Regex").
  RegexSplitter(const std::string& pattern, const std::string& origin,
                UnicodeClasses classes = UnicodeClasses::Oniguruma);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;

  // Appends the pieces of `text` (valid UTF-8: the caller checked it) in order; they cover `text` exactly.
  // Safe to call from several threads at once: the matching state is per thread.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace qllm::detail
