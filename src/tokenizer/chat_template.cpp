// The Llama 3 chat template, recognised rather than interpreted: qllm has no Jinja engine. A template is
// accepted when it writes each message as Llama 3 does and uses nothing else that changes the output;
// its three variations (BOS, content trimmed, generation prompt conditional) are read from its source.
#include <fmt/format.h>

#include <array>
#include <string_view>

#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/utf8.h"

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
  if (std::filesystem::exists(jinja)) return {detail::read_file(jinja), jinja};
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
// reshuffled system message, errors on role order): render() does not reproduce them, so refuse.
void refuse_extra_logic(const TemplateSource& source) {
  constexpr std::array<std::string_view, 10> kRefused = {
      "tools",       "Cutting Knowledge", "date_string", "strftime", "system_message",
      "messages[0]", "raise_exception",   "namespace",   "ipython",  "tool_calls"};
  for (const std::string_view word : kRefused) {
    QLLM_CHECK(
        source.text.find(word) == std::string::npos,
        "{}: unsupported chat template: it uses '{}' (tool calls, a date preamble or message checks, as "
        "Llama 3.1+ templates do); qllm renders only the Llama 3 format "
        "<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>",
        source.file.string(), word);
  }
}

}  // namespace

ChatTemplate ChatTemplate::load(const std::filesystem::path& dir) {
  QLLM_CHECK(std::filesystem::is_directory(dir), "{}: not a directory", dir.string());
  const auto config_file = dir / "tokenizer_config.json";
  const nlohmann::json config =
      std::filesystem::exists(config_file) ? detail::read_json_file(config_file) : nlohmann::json();
  const TemplateSource source = find_template(dir, config);
  const std::string text = compact(source.text);

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
  refuse_extra_logic(source);
  refuse_text_outside_tags(source.text, source.file);
  const std::string generation_prompt = fmt::format("'{}assistant{}'", kHeaderStart, kHeaderEnd);
  QLLM_CHECK(text.find(generation_prompt) != std::string::npos,
             "{}: not a Llama 3 chat template: it never writes the assistant header", source.file.string());

  ChatTemplate result;
  result.source_ = source.file;
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

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  QLLM_CHECK(!messages.empty(), "chat template: no messages to render");
  std::string out = bos_text_;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    utf8::check_valid(m.role, fmt::format("chat message {} role", i));
    utf8::check_valid(m.content, fmt::format("chat message {} content", i));
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
