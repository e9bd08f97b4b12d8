// The Split pre-tokenizer without the shared folder: the Llama 3 regex splits as HF's Oniguruma does,
// including the two places where PCRE2's Unicode classes differ (U+180E, letters newer than Unicode 14).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "qllm/error.h"
#include "tokenizer/pretokenizer.h"

namespace qllm::detail {
namespace {

const std::string kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

std::vector<std::string> split(const std::string& text) {
  const RegexSplitter splitter(kLlama3Regex, "test");
  std::vector<std::string_view> pieces;
  splitter.split(text, pieces);
  return {pieces.begin(), pieces.end()};
}

using Pieces = std::vector<std::string>;

TEST(TokenizerPreTokenizer, Llama3Pieces) {
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split("I'M here, they'll"), (Pieces{"I", "'M", " here", ",", " they", "'ll"}));
  EXPECT_EQ(split("1234567"), (Pieces{"123", "456", "7"}));
  EXPECT_EQ(split("a  b\n\n c   "), (Pieces{"a", " ", " b", "\n\n", " c", "   "}));
  EXPECT_EQ(split("x = (y);\n"), (Pieces{"x", " =", " (", "y", ");\n"}));
  EXPECT_EQ(split(""), Pieces{});
}

TEST(TokenizerPreTokenizer, ClassesFollowOniguruma) {
  // U+180E is not whitespace (Unicode 6.3+): it joins the apostrophe as punctuation, as in HF.
  EXPECT_EQ(split("a\u180e'll"), (Pieces{"a", "\u180e'", "ll"}));
  // U+11F04 (Kawi, Unicode 15.0) is a letter, so "'s" after it is a contraction of its own.
  EXPECT_EQ(split("\U00011F04's"), (Pieces{"\U00011F04", "'s"}));
  // U+10D40.. (Garay digits, Unicode 16.0) are numbers, grouped by three.
  EXPECT_EQ(split("\U00010D40\U00010D41\U00010D42\U00010D43"),
            (Pieces{"\U00010D40\U00010D41\U00010D42", "\U00010D43"}));
  // U+3000 is whitespace in both.
  EXPECT_EQ(split("a\u3000b"), (Pieces{"a", "\u3000b"}));
}

// GGUF tokenizers split with llama.cpp's Unicode tables: Unicode 15 letters (U+11F04, Kawi) and numbers
// (U+1E4F0, Nag Mundari) are class members, Unicode 16's (U+A7CD, U+10D40 Garay digits) are not.
TEST(TokenizerPreTokenizer, ClassesFollowLlamaCpp) {
  const RegexSplitter llama_cpp(kLlama3Regex, "test", UnicodeClasses::LlamaCpp);
  auto split_llama_cpp = [&](const std::string& text) {
    std::vector<std::string_view> pieces;
    llama_cpp.split(text, pieces);
    return Pieces(pieces.begin(), pieces.end());
  };
  EXPECT_EQ(split_llama_cpp("\U00011F04's"), (Pieces{"\U00011F04", "'s"}));
  EXPECT_EQ(split_llama_cpp("\U0001E4F0\U0001E4F1\U0001E4F2\U0001E4F3"),
            (Pieces{"\U0001E4F0\U0001E4F1\U0001E4F2", "\U0001E4F3"}));
  EXPECT_EQ(split_llama_cpp("\ua7cd's"), (Pieces{"\ua7cd'", "s"}));
  EXPECT_EQ(split("\ua7cd's"), (Pieces{"\ua7cd", "'s"}));  // a letter for Oniguruma
  EXPECT_EQ(split_llama_cpp("\U00010D40\U00010D41"), (Pieces{"\U00010D40\U00010D41"}));
  EXPECT_EQ(split_llama_cpp("a\u180e'll"), (Pieces{"a", "\u180e'", "ll"}));  // White_Space as for HF
}

// The match state is one per thread, shared by every splitter; its match data holds only the whole match,
// so a pattern with capture groups (pcre2_match returns 0: they did not fit) still splits.
TEST(TokenizerPreTokenizer, SplittersShareTheThreadsMatchState) {
  const RegexSplitter groups("(a)(b+)|(c)", "test");
  const RegexSplitter digits("\\d+", "test");
  for (int round = 0; round < 2; ++round) {
    std::vector<std::string_view> pieces;
    groups.split("xabbyc", pieces);
    EXPECT_EQ(Pieces(pieces.begin(), pieces.end()), (Pieces{"x", "abb", "y", "c"}));
    pieces.clear();
    digits.split("a12b3", pieces);
    EXPECT_EQ(Pieces(pieces.begin(), pieces.end()), (Pieces{"a", "12", "b", "3"}));
  }
}

TEST(TokenizerPreTokenizer, RewriteKeepsEverythingElse) {
  EXPECT_EQ(rewrite_unicode_classes("abc\\d+[x-z]\\\\s"),
            "abc\\d+[x-z]\\\\s");  // "\\\\s" is a backslash and an s
  EXPECT_EQ(rewrite_unicode_classes("\\S"),
            "[^\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}"
            "\\x{2029}\\x{202F}\\x{205F}\\x{3000}]");
  EXPECT_NE(rewrite_unicode_classes("[^\\p{N}]").find("[^\\p{N}\\x{"), std::string::npos);
  EXPECT_NE(rewrite_unicode_classes("[]\\s]").find("[]\\x{9}"), std::string::npos);  // ']' first is a member
  EXPECT_THROW(rewrite_unicode_classes("[^\\S]"), Error);
  EXPECT_THROW(rewrite_unicode_classes("[\\P{L}]"), Error);
  EXPECT_THROW(RegexSplitter("(unclosed", "test"), Error);
}

}  // namespace
}  // namespace qllm::detail
