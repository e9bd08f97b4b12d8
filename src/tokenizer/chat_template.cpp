// The Llama 3 chat templates, recognised rather than interpreted: qllm has no Jinja engine.
// - Llama 3.0: a template is accepted when it writes each message as Llama 3 does and uses nothing else that
//   changes the output; its three variations (BOS, content trimmed, generation prompt conditional) are read
//   from its source.
// - Llama 3.1 / 3.2: a template with their system preamble ("Cutting Knowledge Date", date_string) must be
//   Meta's published text (llama3_chat_templates.h) up to comments, whitespace outside string literals,
//   escapes and quote style; render() then writes what that text writes when no tools are given.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <string_view>

#include "core/file_io.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tokenizer/llama3_chat_templates.h"
#include "tokenizer/tokenizer_json.h"
#include "core/utf8.h"

namespace qllm {

namespace {

constexpr std::string_view kHeaderStart = "<|start_header_id|>";
constexpr std::string_view kHeaderEnd = "<|end_header_id|>\n\n";
constexpr std::string_view kEndOfTurn = "<|eot_id|>";

struct TemplateSource {
  std::string text;
  std::filesystem::path file;
};

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

// The template without its {# #} comments (their text may hold quotes, as "we're" in Meta's 3.1 template).
// A "{#" inside a tag's string literal is not a comment.
std::string strip_comments(std::string_view source) {
  std::string out;
  size_t i = 0;
  while (i < source.size()) {
    const size_t open = source.find('{', i);
    if (open == std::string_view::npos || open + 1 >= source.size()) break;
    const char kind = source[open + 1];
    if (kind == '#') {
      out.append(source.substr(i, open - i));
      const size_t end = source.find("#}", open + 2);
      if (end == std::string_view::npos) return out;  // unclosed: refuse_text_outside_tags reports it
      i = end + 2;
    } else if (kind == '{' || kind == '%') {
      // Copy the tag through its close, skipping string literals.
      const std::string_view close = kind == '{' ? "}}" : "%}";
      size_t j = open + 2;
      char quote = 0;
      for (; j < source.size(); ++j) {
        const char c = source[j];
        if (quote != 0) {
          if (c == '\\') {
            ++j;
          } else if (c == quote) {
            quote = 0;
          }
        } else if (c == '\'' || c == '"') {
          quote = c;
        } else if (source.compare(j, close.size(), close) == 0) {
          j += close.size();
          break;
        }
      }
      j = std::min(j, source.size());
      out.append(source.substr(i, j - i));
      i = j;
    } else {
      out.append(source.substr(i, open + 1 - i));
      i = open + 1;
    }
  }
  out.append(source.substr(std::min(i, source.size())));
  return out;
}

// The template with whitespace outside string literals removed, escapes inside them resolved ("\n"),
// one quote style and one way of writing message fields, so that the Llama 3 expressions can be found
// however they are spaced.
std::string compact(std::string_view source) {
  std::string out;
  char quote = 0;
  for (size_t i = 0; i < source.size(); ++i) {
    const char c = source[i];
    if (quote != 0 && c == '\\' && i + 1 < source.size()) {
      const char escaped = source[++i];
      out += escaped == 'n' ? '\n' : escaped == 't' ? '\t' : escaped;
    } else if (quote != 0 || c == '\'' || c == '"') {
      if (c == quote) {
        quote = 0;
      } else if (quote == 0) {
        quote = c;
      }
      out += c == '"' ? '\'' : c;
    } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      out += c;
    }
  }
  out = replace_all(std::move(out), "message.role", "message['role']");
  return replace_all(std::move(out), "message.content", "message['content']");
}

bool is_blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Text outside {{ }}, {% %} and {# #} is written by Jinja as it stands; render() writes none, so a
// template may only have whitespace there that Jinja removes: next to a "-" marker, or a line break
// after a block tag followed by the indentation of the next block tag (HF renders with trim_blocks and
// lstrip_blocks).
void refuse_text_outside_tags(std::string_view source, const std::filesystem::path& file) {
  auto refuse = [&](size_t offset) {
    fail("{}: unsupported chat template: it writes text outside its tags at byte {}", file.string(), offset);
  };
  size_t text_start = 0;
  bool previous_trims = false;  // the tag before the text ends with "-}}" / "-%}"
  bool previous_block = false;  // ... and is a {% %} block
  while (true) {
    const size_t open = source.find('{', text_start);
    const bool at_tag = open != std::string_view::npos && open + 1 < source.size() &&
                        (source[open + 1] == '{' || source[open + 1] == '%' || source[open + 1] == '#');
    if (open != std::string_view::npos && !at_tag) refuse(open);  // a lone brace is text
    const std::string_view text =
        source.substr(text_start, at_tag ? open - text_start : std::string_view::npos);
    const bool next_trims = at_tag && open + 2 < source.size() && source[open + 2] == '-';
    const bool next_block = at_tag && source[open + 1] == '%';
    const bool block_lines = previous_block && next_block && text.starts_with("\n") &&
                             text.substr(1).find_first_not_of(" \t") == std::string_view::npos;
    const bool final_newline = !at_tag && text == "\n";  // Jinja drops one newline at the end
    if (!text.empty() && !final_newline &&
        !(is_blank(text) && (next_trims || previous_trims || block_lines))) {
      refuse(text_start);
    }
    if (!at_tag) return;
    const std::string_view close = source[open + 1] == '{' ? "}}" : source[open + 1] == '%' ? "%}" : "#}";
    const size_t end = source.find(close, open + 2);
    QLLM_CHECK(end != std::string_view::npos, "{}: chat template: the tag at byte {} is not closed",
               file.string(), open);
    previous_trims = source[end - 1] == '-';
    previous_block = next_block;
    text_start = end + close.size();
  }
}

// "chat_template" is a string, or a list of {"name", "template"} of which "default" is the one used.
std::string config_template(const nlohmann::json& config, const std::filesystem::path& file) {
  const nlohmann::json& value = config["chat_template"];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& entry : value) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
  }
  fail("{}: field 'chat_template' must be a string or a list holding a \"default\" template", file.string());
}

TemplateSource find_template(const std::filesystem::path& dir, const nlohmann::json& config) {
  const auto jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) return {read_text_file(jinja), jinja};
  const auto config_file = dir / "tokenizer_config.json";
  if (config.is_object() && config.contains("chat_template")) {
    return {config_template(config, config_file), config_file};
  }
  fail(
      "{}: no chat template (neither chat_template.jinja nor a 'chat_template' field in "
      "tokenizer_config.json)",
      dir.string());
}

std::string config_bos_token(const nlohmann::json& config, const std::filesystem::path& dir) {
  const auto file = (dir / "tokenizer_config.json").string();
  QLLM_CHECK(config.is_object() && config.contains("bos_token"),
             "{}: the chat template writes bos_token but tokenizer_config.json has no 'bos_token'",
             dir.string());
  const nlohmann::json& bos = config["bos_token"];
  const nlohmann::json& text = bos.is_object() && bos.contains("content") ? bos["content"] : bos;
  QLLM_CHECK(text.is_string(), "{}: field 'bos_token' must be a string", file);
  return text.get<std::string>();
}

// Constructs of Llama 3.1+ and other templates that change what is written (tools, a date preamble, a
// reshuffled system message, errors on role order): a 3.0-style template that uses them is refused, since
// render() would not reproduce them. (Meta's own 3.1 / 3.2 templates are recognised before this check.)
void refuse_extra_logic(std::string_view compact_text, const std::filesystem::path& file) {
  constexpr std::array<std::string_view, 11> kRefused = {
      "tools",       "'tool'",          "Cutting Knowledge", "date_string", "strftime",  "system_message",
      "messages[0]", "raise_exception", "namespace",         "ipython",     "tool_calls"};
  for (const std::string_view word : kRefused) {
    QLLM_CHECK(
        compact_text.find(word) == std::string_view::npos,
        "{}: unsupported chat template: it uses {} (tool calls, a date preamble or message checks) "
        "but is not one of Meta's Llama 3.1 / 3.2 templates; qllm renders those and the Llama 3 format "
        "<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>",
        file.string(), word.starts_with('\'') ? word : fmt::format("'{}'", word));
  }
}

// The Llama 3.1+ system preamble: such a template is checked against Meta's published texts.
bool has_dated_preamble(std::string_view compact_text) {
  return compact_text.find("Cutting Knowledge") != std::string_view::npos ||
         compact_text.find("date_string") != std::string_view::npos;
}

// `text` around `offset`, special characters escaped, for error messages.
std::string excerpt(std::string_view text, size_t offset) {
  const size_t begin = offset < 30 ? 0 : offset - 30;
  std::string out;
  for (const char c : text.substr(begin, offset + 30 - begin)) {
    out += c == '\n' ? "\\n" : c == '\t' ? "\\t" : std::string(1, c);
  }
  return out;
}

// Meta's 3.1 or 3.2 template, compared in the form compact() gives (comments, whitespace outside string
// literals, escapes and quote style do not change what Jinja writes; text outside tags is checked apart).
ChatFormat identify_dated_template(std::string_view compact_text, const std::filesystem::path& file) {
  struct Known {
    ChatFormat format;
    std::string_view name;
    std::string compact_text;
  };
  static const std::array<Known, 2> kKnown = {
      Known{ChatFormat::Llama31, "Llama 3.1", compact(strip_comments(detail::kLlama31ChatTemplate))},
      Known{ChatFormat::Llama32, "Llama 3.2", compact(strip_comments(detail::kLlama32ChatTemplate))},
  };
  const Known* closest = nullptr;
  size_t closest_common = 0;
  for (const Known& known : kKnown) {
    if (compact_text == known.compact_text) return known.format;
    const auto [a, b] = std::mismatch(compact_text.begin(), compact_text.end(), known.compact_text.begin(),
                                      known.compact_text.end());
    const auto common = static_cast<size_t>(a - compact_text.begin());
    if (closest == nullptr || common > closest_common) {
      closest = &known;
      closest_common = common;
    }
  }
  fail(
      "{}: unsupported chat template: it has the Llama 3.1+ system preamble (Cutting Knowledge Date / "
      "date_string) but is not Meta's Llama 3.1 or 3.2 template, which are the only ones qllm renders with "
      "it; ignoring comments and spacing, it first differs from the {} template at byte {}: '{}' where "
      "Meta's "
      "has '{}'",
      file.string(), closest->name, closest_common, excerpt(compact_text, closest_common),
      excerpt(closest->compact_text, closest_common));
}

// Today's local date as strftime("%d %b %Y") writes it in the C locale (Python's datetime.now().strftime,
// which transformers' strftime_now calls): "05 Mar 2025".
std::string today() {
  constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  QLLM_CHECK(localtime_r(&now, &local) != nullptr, "chat template: cannot read the local date");
  return fmt::format("{:02d} {} {}", local.tm_mday, kMonths.at(static_cast<size_t>(local.tm_mon)),
                     local.tm_year + 1900);
}

}  // namespace

ChatTemplate ChatTemplate::load(const std::filesystem::path& dir) {
  QLLM_CHECK(std::filesystem::is_directory(dir), "{}: not a directory", dir.string());
  const auto config_file = dir / "tokenizer_config.json";
  const nlohmann::json config =
      std::filesystem::exists(config_file) ? read_json_file(config_file) : nlohmann::json();
  const TemplateSource source = find_template(dir, config);
  const std::string text = compact(strip_comments(source.text));

  ChatTemplate result;
  result.source_ = source.file;
  if (has_dated_preamble(text)) {
    result.format_ = identify_dated_template(text, source.file);
    refuse_text_outside_tags(source.text, source.file);
    result.bos_text_ = config_bos_token(config, dir);  // both texts start with {{- bos_token }}
    result.trims_content_ = true;
    return result;
  }

  const std::string message =
      fmt::format("'{}'+message['role']+'{}'+message['content']", kHeaderStart, kHeaderEnd);
  const std::string trimmed_end = fmt::format("|trim+'{}'", kEndOfTurn);
  const std::string plain_end = fmt::format("+'{}'", kEndOfTurn);
  const size_t at = text.find(message);
  const bool trims =
      at != std::string::npos && text.compare(at + message.size(), trimmed_end.size(), trimmed_end) == 0;
  const bool plain =
      at != std::string::npos && text.compare(at + message.size(), plain_end.size(), plain_end) == 0;
  QLLM_CHECK(trims || plain,
             "{}: not a Llama 3 chat template: no message written as "
             "'<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + content + '<|eot_id|>'",
             source.file.string());
  refuse_extra_logic(text, source.file);
  refuse_text_outside_tags(source.text, source.file);
  const std::string generation_prompt = fmt::format("'{}assistant{}'", kHeaderStart, kHeaderEnd);
  QLLM_CHECK(text.find(generation_prompt) != std::string::npos,
             "{}: not a Llama 3 chat template: it never writes the assistant header", source.file.string());

  result.trims_content_ = trims;
  result.generation_prompt_always_ = text.find("add_generation_prompt") == std::string::npos;
  if (text.find("bos_token") != std::string::npos) result.bos_text_ = config_bos_token(config, dir);
  return result;
}

namespace {

// Jinja's trim filter: Python's str.strip().
std::string_view python_strip(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t next = begin;
    if (!utf8::is_python_space(utf8::next_code_point(text, next))) break;
    begin = next;
  }
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t cursor = start;
    if (!utf8::is_python_space(utf8::next_code_point(text, cursor))) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

}  // namespace

void ChatTemplate::set_date(std::string date) {
  utf8::check_valid(date, "chat template date");
  date_ = std::move(date);
}

std::string ChatTemplate::date() const {
  if (format_ == ChatFormat::Llama3) return "";
  if (date_) return *date_;
  return format_ == ChatFormat::Llama31 ? "26 Jul 2024" : today();
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  QLLM_CHECK(!messages.empty(), "chat template: no messages to render");
  const bool dated = format_ != ChatFormat::Llama3;
  for (size_t i = 0; i < messages.size(); ++i) {
    utf8::check_valid(messages[i].role, fmt::format("chat message {} role", i));
    utf8::check_valid(messages[i].content, fmt::format("chat message {} content", i));
    // The 3.1 / 3.2 templates write these roles as tool results (and messages with tool_calls, which a
    // ChatMessage cannot hold, as calls): qllm renders plain conversations only.
    QLLM_CHECK(!dated || (messages[i].role != "tool" && messages[i].role != "ipython"),
               "chat message {}: role '{}': tool calling is not supported (qllm renders plain conversations "
               "with the Llama 3.1 / 3.2 templates)",
               i, messages[i].role);
  }
  std::string out = bos_text_;
  size_t first = 0;
  if (dated) {
    // The first message, when it is the system's, goes into the system turn after the date preamble.
    std::string_view system;
    if (messages[0].role == "system") {
      system = python_strip(messages[0].content);
      first = 1;
    }
    out += fmt::format("{}system{}Cutting Knowledge Date: December 2023\nToday Date: {}\n\n{}{}",
                       kHeaderStart, kHeaderEnd, date(), system, kEndOfTurn);
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    out += kHeaderStart;
    out += m.role;
    out += kHeaderEnd;
    out += trims_content_ ? python_strip(m.content) : std::string_view(m.content);
    out += kEndOfTurn;
  }
  if (add_generation_prompt || generation_prompt_always_) {
    out += fmt::format("{}assistant{}", kHeaderStart, kHeaderEnd);
  }
  return out;
}

}  // namespace qllm
