// ChatTemplate: the exact string of GUIDE §1 from both shared templates; the golden set of real chat
// templates (tests/fixtures/chat_templates/golden.json, written by scripts/gen_jinja_golden.py) rendered
// byte for byte as transformers renders them, loaded from tokenizer_config.json, from chat_template.jinja
// and from source; the Llama 3.1 / 3.2 dates; where templates and special tokens are read from; errors.
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

// ---- the golden set ----

std::string read_fixture(const std::string& name) {
  const auto path = std::filesystem::path(QLLM_SOURCE_DIR) / "tests/fixtures/chat_templates" / name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const nlohmann::json& chat_golden() {
  static const nlohmann::json golden = nlohmann::json::parse(read_fixture("golden.json"));
  return golden;
}

std::vector<ChatMessage> golden_messages(const std::string& conversation) {
  std::vector<ChatMessage> out;
  for (const auto& m : chat_golden()["conversations"][conversation]) {
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

std::optional<std::string> optional_string(const nlohmann::json& j) {
  return j.is_null() ? std::nullopt : std::optional<std::string>(j.get<std::string>());
}

// A model folder holding `text` as Hugging Face ships it: in tokenizer_config.json or in
// chat_template.jinja, the special tokens in tokenizer_config.json (eos as an AddedToken object).
void write_model_dir(const TempDir& dir, const std::string& text, const nlohmann::json& entry,
                     bool as_jinja_file) {
  nlohmann::json config = {{"bos_token", entry["bos_token"]},
                           {"eos_token", {{"content", entry["eos_token"]}, {"special", true}}}};
  if (as_jinja_file) {
    dir.write("chat_template.jinja", text);
  } else {
    config["chat_template"] = text;
  }
  dir.write("tokenizer_config.json", config.dump(2));
}

// Renders every golden case of `entry` with `loaded` and compares: the output byte for byte, or, where
// transformers raises, a qllm::Error holding the template's message.
void expect_golden(const ChatTemplate& loaded, const nlohmann::json& entry) {
  for (const auto& c : entry["cases"]) {
    SCOPED_TRACE(c["conversation"].get<std::string>() + (c["add_generation_prompt"] ? " +gen" : " -gen") +
                 " date " + c["date_string"].dump());
    ChatTemplate chat = loaded;
    if (!c["date_string"].is_null()) chat.set_variable("date_string", c["date_string"].get<std::string>());
    const auto messages = golden_messages(c["conversation"].get<std::string>());
    const bool add_generation_prompt = c["add_generation_prompt"].get<bool>();
    if (c.contains("expected")) {
      EXPECT_EQ(chat.render(messages, add_generation_prompt), c["expected"].get<std::string>());
      continue;
    }
    try {
      const std::string out = chat.render(messages, add_generation_prompt);
      ADD_FAILURE() << "rendered where transformers raises '" << c["error"].get<std::string>()
                    << "': " << out;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos) << e.what();
    }
  }
}

TEST(TokenizerChatTemplate, GoldenRenderingsOfRealTemplates) {
  const auto& templates = chat_golden()["templates"];
  ASSERT_EQ(templates.size(), 10u);
  size_t cases = 0;
  size_t errors = 0;
  for (const auto& entry : templates) {
    const std::string name = entry["name"];
    const std::string text = read_fixture(entry["file"].get<std::string>());
    ASSERT_GE(entry["cases"].size(), 30u) << name;
    for (const auto& c : entry["cases"]) errors += c.contains("error");
    cases += entry["cases"].size();
    for (const bool as_jinja_file : {false, true}) {
      SCOPED_TRACE(name + (as_jinja_file ? " from chat_template.jinja" : " from tokenizer_config.json"));
      const TempDir dir;
      write_model_dir(dir, text, entry, as_jinja_file);
      const ChatTemplate loaded = ChatTemplate::load(dir.path());
      EXPECT_EQ(loaded.source().filename(), as_jinja_file ? "chat_template.jinja" : "tokenizer_config.json");
      expect_golden(loaded, entry);
    }
    SCOPED_TRACE(name + " from source");
    expect_golden(ChatTemplate::from_source(text, optional_string(entry["bos_token"]),
                                            optional_string(entry["eos_token"]), "tokenizer.chat_template"),
                  entry);
  }
  EXPECT_GE(cases, 380u);
  EXPECT_GE(errors, 40u);  // Gemma and Mistral raise on system messages and roles that do not alternate
}

// The Llama-3.2-1B-Instruct prompt written out in full, independently of the golden file.
TEST(TokenizerChatTemplate, Llama32SystemPreamble) {
  ChatTemplate chat =
      ChatTemplate::from_source(read_fixture("llama3.2.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  chat.set_variable("date_string", "26 Jul 2024");
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
  const std::vector<ChatMessage> hi = {{"user", "Hi"}};
  // 3.2: strftime_now("%d %b %Y"), today's local date (read twice, in case midnight passes in between).
  const ChatTemplate llama32 =
      ChatTemplate::from_source(read_fixture("llama3.2.jinja"), "<|begin_of_text|>", "");
  const std::string before = strftime_today();
  const std::string rendered = llama32.render(hi, true);
  const std::string after = strftime_today();
  EXPECT_TRUE(rendered.find("\nToday Date: " + before + "\n\n<|eot_id|>") != std::string::npos ||
              rendered.find("\nToday Date: " + after + "\n\n<|eot_id|>") != std::string::npos)
      << rendered;

  // 3.1 writes its fixed default unless a date is given.
  ChatTemplate llama31 = ChatTemplate::from_source(read_fixture("llama3.1.jinja"), "<|begin_of_text|>", "");
  EXPECT_NE(llama31.render(hi, false).find("Today Date: 26 Jul 2024\n\n"), std::string::npos);
  llama31.set_variable("date_string", "01 Jan 2030");
  EXPECT_NE(llama31.render(hi, false).find("Today Date: 01 Jan 2030\n\n"), std::string::npos);
  llama31.set_variable("date_string", "02 Jan 2030");  // replaces the value
  EXPECT_NE(llama31.render(hi, false).find("Today Date: 02 Jan 2030\n\n"), std::string::npos);
  EXPECT_THROW(llama31.set_variable("date_string", "\xff"), Error);
  EXPECT_THROW(llama31.set_variable("messages", "x"), Error);
}

// With the real Llama 3 vocabulary (Llama-3.2-1B-Instruct's), each special token of the 3.2 rendering is one
// id.
TEST(TokenizerChatTemplate, Llama32RenderingEncodesSpecialTokensOnce) {
  const std::string shared = testing::shared_tokenizer_dir("tokenizers/llama3");
  QLLM_SKIP_WITHOUT_SHARED(shared);
  const Tokenizer& tokenizer = testing::cached_tokenizer(shared);
  ChatTemplate chat =
      ChatTemplate::from_source(read_fixture("llama3.2.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  chat.set_variable("date_string", "26 Jul 2024");
  const std::string text = chat.render(kConversation, true);
  const auto ids = tokenizer.encode(text, false);
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tokenizer.token_id("<|start_header_id|>")), 5);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tokenizer.token_id("<|eot_id|>")), 4);
  EXPECT_EQ(tokenizer.decode(ids, false), text);
}

// ---- where the template and the special tokens come from ----

TEST(TokenizerChatTemplate, TemplateSources) {
  const std::string chatml =
      "{% for m in messages %}{{ bos_token ~ '<' ~ m.role ~ '>' ~ m.content ~ eos_token }}{% endfor %}";
  const std::vector<ChatMessage> messages = {{"user", "hi"}};
  const TempDir dir;
  // A list of named templates: "default" is used; AddedToken objects give the tokens' content.
  dir.write("tokenizer_config.json", nlohmann::json({{"bos_token", {{"content", "<B>"}}},
                                                     {"eos_token", "<E>"},
                                                     {"chat_template",
                                                      {{{"name", "tool_use"}, {"template", "tools"}},
                                                       {{"name", "default"}, {"template", chatml}}}}})
                                         .dump());
  EXPECT_EQ(ChatTemplate::load(dir.path()).render(messages, false), "<B><user>hi<E>");

  // chat_template.jinja wins over the config's template; a null token is not defined (Qwen's bos_token).
  dir.write("chat_template.jinja", "{{ bos_token is defined }} {{ eos_token }}: {{ messages[0].content }}");
  dir.write("tokenizer_config.json", R"({"bos_token": null, "eos_token": "<E>", "chat_template": "unused"})");
  EXPECT_EQ(ChatTemplate::load(dir.path()).render(messages, true), "False <E>: hi");

  // No template anywhere; a list without "default"; a token that is not a string.
  const TempDir empty;
  empty.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_THROW(ChatTemplate::load(empty.path()), Error);
  EXPECT_THROW(ChatTemplate::load(empty.path() / "absent"), Error);
  empty.write("tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "x"}]})");
  EXPECT_THROW(ChatTemplate::load(empty.path()), Error);
  empty.write("tokenizer_config.json", R"({"chat_template": "x", "bos_token": 5})");
  EXPECT_THROW(ChatTemplate::load(empty.path()), Error);
  EXPECT_THROW(ChatTemplate::from_source("x", "\xff", std::nullopt), Error);
}

std::string load_error(const std::string& config, const std::string& jinja_file) {
  const TempDir dir;
  dir.write("tokenizer_config.json", config);
  if (!jinja_file.empty()) dir.write("chat_template.jinja", jinja_file);
  try {
    ChatTemplate::load(dir.path());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizerChatTemplate, ErrorsNameFileAndPosition) {
  // Unsupported constructs are refused at load time with file, line and column.
  std::string error = load_error("{}", "line one\n{{ x | xmlattr }}");
  EXPECT_NE(error.find("chat_template.jinja:2:8: the filter 'xmlattr' is not supported"), std::string::npos)
      << error;
  error = load_error(R"({"chat_template": "{% include 'other.jinja' %}"})", "");
  EXPECT_NE(error.find("tokenizer_config.json:1:4: the 'include' tag is not supported"), std::string::npos)
      << error;
  error = load_error("{}", "{% for m in messages %}");
  EXPECT_NE(error.find("expected 'endfor' or 'else'"), std::string::npos) << error;

  // tokenizer_config.json is untrusted: deep nesting is refused before it is walked.
  error = load_error(std::string(100000, '[') + std::string(100000, ']'), "");
  EXPECT_NE(error.find("nested deeper than 64 levels"), std::string::npos) << error;
  error = load_error("{", "");
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;

  // Errors while rendering: the template's own, an empty message list, invalid UTF-8.
  const ChatTemplate gemma =
      ChatTemplate::from_source(read_fixture("gemma-2.jinja"), "<bos>", "<eos>", "gemma");
  try {
    gemma.render(std::vector<ChatMessage>{{"system", "s"}}, true);
    ADD_FAILURE() << "rendered a system message with Gemma's template";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gemma:1:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("System role not supported"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gemma.render({}, true), Error);
  EXPECT_THROW(gemma.render(std::vector<ChatMessage>{{"user", "\xc3"}}, true), Error);
}

}  // namespace
}  // namespace qllm
