// The Llama 3 chat templates: the exact string of GUIDE §1 from both shared templates, the variations
// read from a template, Meta's Llama 3.1 / 3.2 templates rendered byte for byte as transformers renders
// them (tests/fixtures/tokenizer/chat_golden.json, written by scripts/gen_chat_golden.py), and refusal
// of templates that are not Llama 3 style.
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <sstream>

#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tests/cpu/tokenizer_test_support.h"

namespace qllm {
namespace {

using testing::TempDir;

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant."},
    {"user", "What is 2+2?"},
    {"assistant", "4"},
    {"user", "  And 3+3?\n"},  // trimmed by the template
};

// GUIDE §1, with the conversation above.
const std::string kExpected =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>";
const std::string kAssistantHeader = "<|start_header_id|>assistant<|end_header_id|>\n\n";

TEST(TokenizerChatTemplate, ProxyTemplateFromChatTemplateJinja) {
  const std::string dir = testing::shared_tokenizer_dir("models/proxy-llama-22m");
  QLLM_SKIP_WITHOUT_SHARED(dir);
  const ChatTemplate chat = ChatTemplate::load(dir);
  EXPECT_EQ(chat.source().filename(), "chat_template.jinja");
  EXPECT_EQ(chat.render(kConversation, true), kExpected + kAssistantHeader);
  EXPECT_EQ(chat.render(kConversation, false), kExpected);
}

TEST(TokenizerChatTemplate, Llama3TemplateFromTokenizerConfig) {
  const std::string dir = testing::shared_tokenizer_dir("tokenizers/llama3");
  QLLM_SKIP_WITHOUT_SHARED(dir);
  const ChatTemplate chat = ChatTemplate::load(dir);
  EXPECT_EQ(chat.source().filename(), "tokenizer_config.json");
  EXPECT_EQ(chat.render(kConversation, true), kExpected + kAssistantHeader);
  // This template writes the assistant header without `if add_generation_prompt`, so does render().
  EXPECT_EQ(chat.render(kConversation, false), kExpected + kAssistantHeader);

  // Encoded, the rendered prompt holds each special token as one id.
  const Tokenizer& tokenizer = testing::cached_tokenizer(dir);
  const auto ids = tokenizer.encode(chat.render({kConversation.data(), 2}, true), false);
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(ids[1], *tokenizer.token_id("<|start_header_id|>"));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tokenizer.token_id("<|eot_id|>")), 2);
  EXPECT_EQ(tokenizer.decode(ids, false), chat.render({kConversation.data(), 2}, true));
}

TEST(TokenizerChatTemplate, VariationsAreReadFromTheTemplate) {
  const TempDir dir;
  dir.write("tokenizer_config.json", R"({"bos_token": {"content": "<BOS>"}})");
  // Multi-line, message.role spelling, no trim, no BOS, generation prompt conditional.
  dir.write("chat_template.jinja",
            "{% for message in messages %}\n"
            "  {{- \"<|start_header_id|>\" + message.role + \"<|end_header_id|>\\n\\n\" + message.content + "
            "\"<|eot_id|>\" }}\n"
            "{%- endfor %}\n"
            "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% "
            "endif %}\n");
  const ChatTemplate chat = ChatTemplate::load(dir.path());
  const std::vector<ChatMessage> messages = {{"user", " hi "}};
  EXPECT_EQ(chat.render(messages, false), "<|start_header_id|>user<|end_header_id|>\n\n hi <|eot_id|>");
  EXPECT_EQ(chat.render(messages, true),
            "<|start_header_id|>user<|end_header_id|>\n\n hi <|eot_id|>" + kAssistantHeader);

  dir.write(
      "chat_template.jinja",
      "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
      "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}");
  EXPECT_EQ(ChatTemplate::load(dir.path()).render(messages, false),
            "<BOS><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
  EXPECT_THROW(ChatTemplate::load(dir.path()).render({}, true), Error);
}

// The qllm::Error message of loading `template_text` as chat_template.jinja ("" when it loads).
std::string template_error(const std::string& template_text) {
  const TempDir dir;
  dir.write("tokenizer_config.json", R"({"bos_token": "<|begin_of_text|>"})");
  dir.write("chat_template.jinja", template_text);
  try {
    ChatTemplate::load(dir.path());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizerChatTemplate, RefusesTemplatesThatAreNotLlama3) {
  const std::string chatml =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% "
      "endif %}";
  EXPECT_NE(template_error(chatml).find("not a Llama 3 chat template"), std::string::npos)
      << template_error(chatml);
  EXPECT_NE(template_error(chatml).find("chat_template.jinja"), std::string::npos);

  // A date preamble outside Meta's own 3.1 / 3.2 texts.
  const std::string llama31 =
      "{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
      "{{- 'Cutting Knowledge Date: December 2023\\n' }}{%- for message in messages %}"
      "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
      "'<|eot_id|>' }}{%- endfor %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
  EXPECT_NE(template_error(llama31).find("is not Meta's Llama 3.1 or 3.2 template"), std::string::npos)
      << template_error(llama31);
  // Tool logic in a 3.0-style template.
  const std::string with_tools =
      "{%- for message in messages %}{%- if message['role'] == 'tool' %}{{- 'T' }}{%- endif %}"
      "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
      "'<|eot_id|>' }}{%- endfor %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
  EXPECT_NE(template_error(with_tools).find("uses 'tool'"), std::string::npos) << template_error(with_tools);

  const std::string with_text =
      "Hello {% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
      "'<|end_header_id|>\\n\\n' "
      "+ message['content'] + '<|eot_id|>' }}{% endfor %}{{ "
      "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
  EXPECT_NE(template_error(with_text).find("text outside its tags"), std::string::npos)
      << template_error(with_text);

  // Jinja writes the line break after "}}" (trim_blocks only removes it after block tags).
  const std::string newline_after_expression =
      "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
      "+ message['content'] + '<|eot_id|>' }}\n{% endfor %}{{ "
      "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
  EXPECT_NE(template_error(newline_after_expression).find("text outside its tags at byte"),
            std::string::npos);
  // ... but a line break between two block tags is removed: this one loads.
  const std::string block_lines =
      "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
      "+ message['content'] + '<|eot_id|>' }}{% endfor %}\n  {% if add_generation_prompt %}"
      "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  EXPECT_EQ(template_error(block_lines), "");

  const std::string no_assistant =
      "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
      "+ message['content'] + '<|eot_id|>' }}{% endfor %}";
  EXPECT_NE(template_error(no_assistant).find("never writes the assistant header"), std::string::npos);
}

// ---- Meta's Llama 3.1 / 3.2 templates against the golden renderings ----

std::string read_fixture(const std::string& name) {
  const auto path = std::filesystem::path(QLLM_SOURCE_DIR) / "tests/fixtures/tokenizer" / name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const nlohmann::json& chat_golden() {
  static const nlohmann::json golden = testing::load_golden("chat_golden");
  return golden;
}

std::vector<ChatMessage> golden_messages(const nlohmann::json& messages) {
  std::vector<ChatMessage> out;
  for (const auto& m : messages)
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

// A model folder holding `template_text` as Hugging Face ships it: in tokenizer_config.json (Llama 3.x
// checkpoints) or in chat_template.jinja (newer transformers).
void write_model_dir(const TempDir& dir, const std::string& template_text, bool as_jinja_file) {
  nlohmann::json config = {{"bos_token", chat_golden()["bos_token"]}, {"eos_token", "<|eot_id|>"}};
  if (as_jinja_file) {
    dir.write("chat_template.jinja", template_text);
  } else {
    config["chat_template"] = template_text;
  }
  dir.write("tokenizer_config.json", config.dump(2));
}

ChatFormat expected_format(const std::string& name) {
  return name == "llama3.1"   ? ChatFormat::Llama31
         : name == "llama3.2" ? ChatFormat::Llama32
                              : ChatFormat::Llama3;
}

TEST(TokenizerChatTemplate, GoldenRenderingsOfMetaTemplates) {
  ASSERT_EQ(chat_golden()["templates"].size(), 3u);
  for (const auto& entry : chat_golden()["templates"]) {
    const std::string name = entry["name"];
    const std::string text = read_fixture(entry["file"].get<std::string>());
    for (const bool as_jinja_file : {false, true}) {
      SCOPED_TRACE(name + (as_jinja_file ? " from chat_template.jinja" : " from tokenizer_config.json"));
      const TempDir dir;
      write_model_dir(dir, text, as_jinja_file);
      const ChatTemplate loaded = ChatTemplate::load(dir.path());
      EXPECT_EQ(loaded.format(), expected_format(name));
      ASSERT_GE(entry["cases"].size(), 20u);
      for (const auto& c : entry["cases"]) {
        SCOPED_TRACE(c["conversation"].get<std::string>() + (c["add_generation_prompt"] ? " +gen" : " -gen") +
                     " date " + c["date_string"].dump());
        ChatTemplate chat = loaded;
        if (!c["date_string"].is_null()) chat.set_date(c["date_string"].get<std::string>());
        EXPECT_EQ(chat.render(golden_messages(c["messages"]), c["add_generation_prompt"].get<bool>()),
                  c["expected"].get<std::string>());
      }
    }
  }
}

// The Llama-3.2-1B-Instruct prompt written out in full, independently of the golden file.
TEST(TokenizerChatTemplate, Llama32SystemPreamble) {
  const TempDir dir;
  write_model_dir(dir, read_fixture("chat_template_llama3.2.jinja"), false);
  ChatTemplate chat = ChatTemplate::load(dir.path());
  chat.set_date("26 Jul 2024");
  const std::vector<ChatMessage> messages = {{"system", "You are a pirate."}, {"user", "Hi"}};
  EXPECT_EQ(
      chat.render(messages, true),
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
      "2023\nToday Date: 26 Jul 2024\n\nYou are a pirate.<|eot_id|><|start_header_id|>user<|end_header_id|>"
      "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(
      chat.render({messages.data() + 1, 1}, false),
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
      "2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

std::string strftime_today() {
  const std::time_t now = std::time(nullptr);
  char buffer[64];
  std::strftime(buffer, sizeof buffer, "%d %b %Y", std::localtime(&now));
  return buffer;
}

TEST(TokenizerChatTemplate, DefaultDates) {
  const TempDir dir;
  write_model_dir(dir, read_fixture("chat_template_llama3.2.jinja"), false);
  const ChatTemplate llama32 = ChatTemplate::load(dir.path());
  // strftime_now("%d %b %Y"): today's local date (read twice, in case midnight passes in between).
  const std::string before = strftime_today();
  const std::string date = llama32.date();
  const std::string rendered = llama32.render(std::vector<ChatMessage>{{"user", "Hi"}}, true);
  const std::string after = strftime_today();
  EXPECT_TRUE(date == before || date == after) << date << " vs " << before;
  EXPECT_EQ(date.size(), 11u) << date;  // "05 Mar 2025"
  EXPECT_NE(rendered.find("\nToday Date: " + date + "\n\n<|eot_id|>"), std::string::npos) << rendered;

  // 3.1 writes its fixed default unless a date is set.
  write_model_dir(dir, read_fixture("chat_template_llama3.1.jinja"), true);
  ChatTemplate llama31 = ChatTemplate::load(dir.path());
  EXPECT_EQ(llama31.format(), ChatFormat::Llama31);
  EXPECT_EQ(llama31.date(), "26 Jul 2024");
  llama31.set_date("01 Jan 2030");
  EXPECT_EQ(llama31.date(), "01 Jan 2030");
  EXPECT_NE(
      llama31.render(std::vector<ChatMessage>{{"user", "Hi"}}, false).find("Today Date: 01 Jan 2030\n\n"),
      std::string::npos);
  EXPECT_THROW(llama31.set_date("\xff"), Error);
}

TEST(TokenizerChatTemplate, DatedTemplatesRefuseToolRoles) {
  for (const char* file : {"chat_template_llama3.1.jinja", "chat_template_llama3.2.jinja"}) {
    const TempDir dir;
    write_model_dir(dir, read_fixture(file), false);
    const ChatTemplate chat = ChatTemplate::load(dir.path());
    for (const char* role : {"tool", "ipython"}) {
      const std::vector<ChatMessage> messages = {{"user", "Weather?"}, {role, "{\"temp\": 20}"}};
      try {
        chat.render(messages, true);
        ADD_FAILURE() << file << ": role " << role << " rendered";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tool calling is not supported"), std::string::npos) << e.what();
      }
    }
    EXPECT_THROW(chat.render({}, true), Error);
  }
}

// Whitespace, comments and quote style do not matter; everything else that Meta's text does must stay.
TEST(TokenizerChatTemplate, DatedTemplateVariants) {
  const std::string llama32 = read_fixture("chat_template_llama3.2.jinja");
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string text = llama32;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? text : text.replace(at, from.size(), to);
  };
  // Same output: comment removed, line breaks and indentation gone, other quotes, an escape spelled out.
  std::string compacted;
  for (size_t i = 0; i < llama32.size(); ++i) {
    if (llama32.compare(i, 3, "{#-") == 0) {
      i = llama32.find("#}", i) + 1;
    } else if (llama32[i] != '\n') {
      compacted += llama32[i];
    }
  }
  EXPECT_EQ(template_error(compacted), "");
  EXPECT_EQ(template_error(replaced("{{- system_message }}", "{{-system_message}}")), "");
  EXPECT_EQ(template_error(replaced("{{- \"<|eot_id|>\" }}", "{{- '<|eot_id|>' }}")), "");

  auto expect_refused = [](const std::string& text, const std::string& what) {
    const std::string error = template_error(text);
    EXPECT_NE(error.find(what), std::string::npos) << error;
  };
  expect_refused(replaced("December 2023", "December 2024"), "differs from the Llama 3.2 template");
  expect_refused(replaced("| trim + '<|eot_id|>'", "+ '<|eot_id|>'"),
                 "is not Meta's Llama 3.1 or 3.2 template");
  expect_refused(replaced("{{- system_message }}", "{{- system_message | upper }}"),
                 "Llama 3.2 template at byte");
  // Jinja writes the two line breaks before a comment without "-": Meta's text with "{#-" -> "{#".
  expect_refused(replaced("{#- Custom tools", "{# Custom tools"), "text outside its tags");
  // A ChatML template that mentions a date is still not a Llama template.
  expect_refused(
      "{{ date_string }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>\\n'}}{% endfor %}",
      "is not Meta's Llama 3.1 or 3.2 template");
}

// With the real Llama 3 vocabulary (Llama-3.2-1B-Instruct's), each special token of the 3.2 rendering is one
// id.
TEST(TokenizerChatTemplate, Llama32RenderingEncodesSpecialTokensOnce) {
  const std::string shared = testing::shared_tokenizer_dir("tokenizers/llama3");
  QLLM_SKIP_WITHOUT_SHARED(shared);
  const Tokenizer& tokenizer = testing::cached_tokenizer(shared);
  const TempDir dir;
  write_model_dir(dir, read_fixture("chat_template_llama3.2.jinja"), false);
  ChatTemplate chat = ChatTemplate::load(dir.path());
  chat.set_date("26 Jul 2024");
  const std::string text = chat.render(kConversation, true);
  const auto ids = tokenizer.encode(text, false);
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tokenizer.token_id("<|start_header_id|>")), 5);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tokenizer.token_id("<|eot_id|>")), 4);
  EXPECT_EQ(tokenizer.decode(ids, false), text);
}

TEST(TokenizerChatTemplate, MissingTemplate) {
  const TempDir dir;
  dir.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_THROW(ChatTemplate::load(dir.path()), Error);
  EXPECT_THROW(ChatTemplate::load(dir.path() / "absent"), Error);
}

}  // namespace
}  // namespace qllm
