// The Llama 3 chat template: the exact string of GUIDE §1 from both shared templates, the variations
// read from a template, and refusal of templates that are not Llama 3 style.
#include <gtest/gtest.h>

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
  const Tokenizer tokenizer = Tokenizer::load(dir);
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

  const std::string llama31 =
      "{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
      "{{- 'Cutting Knowledge Date: December 2023\\n' }}{%- for message in messages %}"
      "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
      "'<|eot_id|>' }}{%- endfor %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
  EXPECT_NE(template_error(llama31).find("uses 'Cutting Knowledge'"), std::string::npos)
      << template_error(llama31);

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

TEST(TokenizerChatTemplate, MissingTemplate) {
  const TempDir dir;
  dir.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_THROW(ChatTemplate::load(dir.path()), Error);
  EXPECT_THROW(ChatTemplate::load(dir.path() / "absent"), Error);
}

}  // namespace
}  // namespace qllm
