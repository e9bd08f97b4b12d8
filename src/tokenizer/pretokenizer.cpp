#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <fmt/format.h>

#include <optional>

#include "qllm/error.h"
#include "tokenizer/unicode_delta.h"
#include "tokenizer/unicode_delta_llama_cpp.h"

namespace qllm::detail {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "unknown PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buffer));
}

// A long run of one character class ("\s+" over pages of spaces) can exceed PCRE2's default 32 KiB JIT
// stack; a larger one is cheap and avoids a match error on odd but valid input.
constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 8 * 1024 * 1024;

// The matching state of one thread: match data, a match context and a JIT stack. None of it depends on the
// pattern (the match data holds one offset pair, the whole match, which is all split() reads), so one per
// thread serves every splitter. Creating it per split() call cost an mmap and munmap of the JIT stack each
// time, a large share of encoding a short text; one per thread keeps split() const and free of locks.
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;

  MatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    QLLM_CHECK(data != nullptr && context != nullptr, "PCRE2: out of memory");
    // A PCRE2 built without JIT has no JIT stack to give (pcre2_jit_stack_create returns null).
    uint32_t jit_available = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &jit_available);
    if (jit_available) {
      stack = pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr);
      QLLM_CHECK(stack != nullptr, "PCRE2: out of memory for the JIT stack");
      pcre2_jit_stack_assign(context, nullptr, stack);
    }
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;
};

MatchState& this_thread_match_state() {
  thread_local MatchState state;
  return state;
}

size_t utf8_char_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// Unicode White_Space: what Oniguruma's \s matches in Unicode mode.
constexpr std::string_view kWhiteSpaceSet =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{"
    "3000}";

template <size_t N>
std::string class_members(const char* property, const CodePointRange (&added)[N]) {
  std::string members = fmt::format("\\p{{{}}}", property);
  for (const CodePointRange& r : added) members += fmt::format("\\x{{{:X}}}-\\x{{{:X}}}", r.first, r.last);
  return members;
}

// What replaces an escape, as members of a character class; `negated` for \S and \P{..}.
struct Rewrite {
  std::string members;
  bool negated = false;
  size_t length = 0;  // of the escape in the pattern
};

std::optional<Rewrite> rewrite_escape(std::string_view pattern, size_t backslash, UnicodeClasses classes) {
  static const std::string oniguruma_letters = class_members("L", kLettersAfterUnicode14);
  static const std::string oniguruma_numbers = class_members("N", kNumbersAfterUnicode14);
  static const std::string llama_cpp_letters = class_members("L", kLlamaCppLettersAfterPcre2);
  static const std::string llama_cpp_numbers = class_members("N", kLlamaCppNumbersAfterPcre2);
  const bool oniguruma = classes == UnicodeClasses::Oniguruma;
  const std::string& letters = oniguruma ? oniguruma_letters : llama_cpp_letters;
  const std::string& numbers = oniguruma ? oniguruma_numbers : llama_cpp_numbers;
  const std::string_view escape = pattern.substr(backslash);
  if (escape.starts_with("\\s")) return Rewrite{std::string(kWhiteSpaceSet), false, 2};
  if (escape.starts_with("\\S")) return Rewrite{std::string(kWhiteSpaceSet), true, 2};
  for (const auto& [name, members] : {std::pair{"{L}", &letters}, std::pair{"{N}", &numbers}}) {
    if (escape.substr(2).starts_with(name) && (escape[1] == 'p' || escape[1] == 'P')) {
      return Rewrite{*members, escape[1] == 'P', 5};
    }
  }
  return std::nullopt;
}

}  // namespace

std::string rewrite_unicode_classes(std::string_view pattern, UnicodeClasses classes) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      if (const auto rewrite = rewrite_escape(pattern, i, classes)) {
        QLLM_CHECK(!(in_class && rewrite->negated),
                   "regex: '{}' inside a character class (at offset {}) is not supported",
                   pattern.substr(i, rewrite->length), i);
        out += in_class ? rewrite->members
                        : fmt::format("[{}{}]", rewrite->negated ? "^" : "", rewrite->members);
        i += rewrite->length - 1;
      } else {
        out += c;
        out += pattern[++i];
      }
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
    } else if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      const size_t end = pattern.find(":]", i + 2);  // a POSIX class such as [:alpha:]
      if (end != std::string_view::npos) {
        out.append(pattern.substr(i + 1, end + 2 - (i + 1)));
        i = end + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  std::string origin;
  ~Compiled() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::string& pattern, const std::string& origin, UnicodeClasses classes)
    : compiled_(std::make_unique<Compiled>()) {
  compiled_->origin = origin;
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  std::string translated;
  try {
    translated = rewrite_unicode_classes(pattern, classes);
  } catch (const Error& e) {
    fail("{}: {}", origin, e.what());
  }
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                  PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  QLLM_CHECK(compiled_->code != nullptr,
             "{}: cannot compile the regex (its Unicode classes rewritten) at offset {}: {}", origin,
             error_offset, pcre2_message(error_code));
  // Without JIT (a PCRE2 built without it) matching is slower but gives the same pieces.
  (void)pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  MatchState& state = this_thread_match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0;  // start of the text not yet covered by a piece
  size_t search = 0;
  while (search < text.size()) {
    // The caller validated the UTF-8 once for the whole text: PCRE2 need not check it per match.
    const int rc = pcre2_match(compiled_->code, subject, text.size(), search, PCRE2_NO_UTF_CHECK, state.data,
                               state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    // 0 is a match whose capture groups did not fit the one-pair match data: the whole match is there.
    QLLM_CHECK(rc >= 0, "{}: regex match failed at byte offset {}: {}", compiled_->origin, search,
               pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const size_t start = ovector[0];
    const size_t end = ovector[1];
    if (end == start) {  // an empty match makes no piece; move on by one character
      if (start >= text.size()) break;
      search = start + utf8_char_length(static_cast<unsigned char>(text[start]));
      continue;
    }
    if (start > gap_start) pieces.push_back(text.substr(gap_start, start - gap_start));
    pieces.push_back(text.substr(start, end - start));
    gap_start = search = end;
  }
  if (gap_start < text.size()) pieces.push_back(text.substr(gap_start));
}

}  // namespace qllm::detail
