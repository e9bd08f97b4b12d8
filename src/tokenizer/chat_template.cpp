// ChatTemplate: a model's Hugging Face chat template, found where transformers finds it (chat_template.jinja,
// else tokenizer_config.json) or given as source (GGUF metadata), and rendered by the Jinja interpreter
// with the variables apply_chat_template passes.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "core/utf8.h"
#include "jinja/template.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"

namespace qllm {

namespace detail {
struct ChatTemplateProgram {
  jinja::Template program;
};
}  // namespace detail

namespace {

// tokenizer_config.json is untrusted input: refuse nesting deeper than any real config has.
constexpr int kMaxConfigDepth = 64;

nlohmann::json read_config(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  const nlohmann::json::parser_callback_t limit_depth = [&](int depth, nlohmann::json::parse_event_t,
                                                            nlohmann::json&) {
    QLLM_CHECK(depth <= kMaxConfigDepth, "{}: JSON nested deeper than {} levels", file.string(),
               kMaxConfigDepth);
    return true;
  };
  try {
    return nlohmann::json::parse(text, limit_depth);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", file.string(), e.what());
  }
}

// "chat_template" is a string, or a list of {"name", "template"} of which "default" is the one used.
std::string config_template(const nlohmann::json& config, const std::filesystem::path& file) {
  const nlohmann::json& value = config["chat_template"];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& entry : value) {
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" &&
          entry.contains("template") && entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
  }
  fail("{}: field 'chat_template' must be a string or a list holding a \"default\" template", file.string());
}

// A special token of tokenizer_config.json: a string, an AddedToken {"content": ...}, or null / absent.
std::optional<std::string> config_token(const nlohmann::json& config, const char* field,
                                        const std::filesystem::path& file) {
  if (!config.is_object() || !config.contains(field) || config[field].is_null()) return std::nullopt;
  const nlohmann::json& token = config[field];
  const nlohmann::json& text = token.is_object() && token.contains("content") ? token["content"] : token;
  QLLM_CHECK(text.is_string(), "{}: field '{}' must be a string or an object with a string 'content'",
             file.string(), field);
  return text.get<std::string>();
}

}  // namespace

ChatTemplate ChatTemplate::load(const std::filesystem::path& dir) {
  QLLM_CHECK(std::filesystem::is_directory(dir), "{}: not a directory", dir.string());
  const auto config_file = dir / "tokenizer_config.json";
  const nlohmann::json config =
      std::filesystem::exists(config_file) ? read_config(config_file) : nlohmann::json();
  QLLM_CHECK(config.is_null() || config.is_object(), "{}: must hold a JSON object", config_file.string());
  const auto bos = config_token(config, "bos_token", config_file);
  const auto eos = config_token(config, "eos_token", config_file);
  const auto jinja_file = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_file))
    return from_source(read_text_file(jinja_file), bos, eos, jinja_file);
  QLLM_CHECK(config.is_object() && config.contains("chat_template"),
             "{}: no chat template (neither chat_template.jinja nor a 'chat_template' field in "
             "tokenizer_config.json)",
             dir.string());
  return from_source(config_template(config, config_file), bos, eos, config_file);
}

ChatTemplate ChatTemplate::from_source(std::string_view template_text, std::optional<std::string> bos_token,
                                       std::optional<std::string> eos_token, std::filesystem::path source) {
  for (const auto* token : {&bos_token, &eos_token}) {
    if (*token) utf8::check_valid(**token, fmt::format("{}: special token", source.string()));
  }
  ChatTemplate result;
  result.program_ = std::make_shared<const detail::ChatTemplateProgram>(
      detail::ChatTemplateProgram{jinja::Template::parse(template_text, source.string())});
  result.source_ = std::move(source);
  result.bos_token_ = std::move(bos_token);
  result.eos_token_ = std::move(eos_token);
  return result;
}

void ChatTemplate::set_variable(const std::string& name, std::string value) {
  for (const char* fixed : {"messages", "tools", "documents", "add_generation_prompt"}) {
    QLLM_CHECK(name != fixed, "chat template variable '{}' is set by render()", name);
  }
  utf8::check_valid(value, fmt::format("chat template variable '{}'", name));
  for (auto& [k, v] : variables_) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  variables_.emplace_back(name, std::move(value));
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  QLLM_CHECK(!messages.empty(), "chat template: no messages to render");
  std::vector<jinja::Value> message_values;
  for (size_t i = 0; i < messages.size(); ++i) {
    utf8::check_valid(messages[i].role, fmt::format("chat message {} role", i));
    utf8::check_valid(messages[i].content, fmt::format("chat message {} content", i));
    jinja::DictData message;
    message.items.emplace_back(jinja::Value::string("role"), jinja::Value::string(messages[i].role));
    message.items.emplace_back(jinja::Value::string("content"), jinja::Value::string(messages[i].content));
    message_values.push_back(jinja::Value::dict(std::move(message)));
  }
  // As apply_chat_template passes them: the special tokens, overridden by the keyword arguments.
  jinja::Context context;
  if (bos_token_) context["bos_token"] = jinja::Value::string(*bos_token_);
  if (eos_token_) context["eos_token"] = jinja::Value::string(*eos_token_);
  for (const auto& [name, value] : variables_) context[name] = jinja::Value::string(value);
  context["messages"] = jinja::Value::list(std::move(message_values));
  context["tools"] = jinja::Value::none();
  context["documents"] = jinja::Value::none();
  context["add_generation_prompt"] = jinja::Value::boolean(add_generation_prompt);
  return program_->program.render(context);
}

}  // namespace qllm
