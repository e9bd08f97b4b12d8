// qllm tokenize: the ids of a text under a model's tokenizer (tokenizer.json or a GGUF file's), as a table
// or as JSON.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "core/file_io.h"
#include "qllm/error.h"
#include "qllm/tokenizer.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool ids_only = false;
  bool no_special = false;
  bool text_given = false;  // --text "" is a text (an empty one)
  bool file_given = false;
};

// A token as a person reads it: quoted, control characters and bytes of an incomplete UTF-8 character
// escaped, other characters as they are.
std::string escape_token(std::string_view bytes) {
  std::string out = "\"";
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto byte = static_cast<unsigned char>(bytes[i]);
    const size_t length = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 0;
    bool whole_character = length > 1 && i + length <= bytes.size();
    for (size_t k = 1; whole_character && k < length; ++k) {
      whole_character = (static_cast<unsigned char>(bytes[i + k]) & 0xC0) == 0x80;
    }
    if (whole_character) {
      out.append(bytes.substr(i, length));
      i += length - 1;
      continue;
    }
    std::string escaped;
    switch (byte) {
      case '\n':
        escaped = "\\n";
        break;
      case '\t':
        escaped = "\\t";
        break;
      case '\r':
        escaped = "\\r";
        break;
      case '"':
        escaped = "\\\"";
        break;
      case '\\':
        escaped = "\\\\";
        break;
      default:
        escaped = byte >= 0x20 && byte < 0x7F ? std::string(1, static_cast<char>(byte))
                                              : fmt::format("\\x{:02X}", byte);
    }
    out += escaped;
  }
  return out + "\"";
}

void print_table(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  const size_t index_width = std::max<size_t>(5, std::to_string(ids.size()).size());
  const size_t id_width = std::max<size_t>(2, std::to_string(tokenizer.vocab_size()).size());
  std::string out = fmt::format("| {:>{}} | {:>{}} | token\n", "index", index_width, "id", id_width);
  out += fmt::format("|-{}-|-{}-|-------\n", std::string(index_width, '-'), std::string(id_width, '-'));
  for (size_t i = 0; i < ids.size(); ++i) {
    out += fmt::format("| {:>{}} | {:>{}} | {}\n", i, index_width, ids[i], id_width,
                       escape_token(tokenizer.token_bytes(ids[i])));
  }
  fmt::print("{}", out);
}

void run(const TokenizeOptions& o) {
  QLLM_CHECK(o.text_given != o.file_given, "give exactly one of --text and --file");
  // The input is read before the clocks start, so that the times printed are the tokenizer's alone.
  const std::string text = o.file_given ? read_text_file(o.file) : o.text;
  const auto load_start = std::chrono::steady_clock::now();
  const Tokenizer tokenizer = Tokenizer::load(o.model);
  const auto encode_start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tokenizer.encode(text, !o.no_special);
  const auto end = std::chrono::steady_clock::now();

  if (o.ids_only) {
    fmt::print("{}\n", nlohmann::json(ids).dump());
  } else {
    print_table(tokenizer, ids);
  }
  std::fflush(stdout);
  const auto ms = [](auto duration) { return std::chrono::duration<double, std::milli>(duration).count(); };
  fmt::print(stderr, "{} tokens from {} bytes: encode {:.2f} ms (load {:.0f} ms)\n", ids.size(), text.size(),
             ms(end - encode_start), ms(encode_start - load_start));
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd =
      app.add_subcommand("tokenize", "Token ids of a text under a model's tokenizer.json or GGUF file");
  cmd->add_option("--model", options->model,
                  "model directory, or a directory holding tokenizer.json, or a .gguf file")
      ->required();
  cmd->add_option("--text", options->text, "the text to tokenize");
  cmd->add_option("--file", options->file, "a UTF-8 file to tokenize");
  cmd->add_flag("--ids", options->ids_only, "print only the ids, as a JSON array on one line");
  cmd->add_flag("--no-special", options->no_special,
                "do not add the post-processor's special tokens (BOS; GGUF: BOS and EOS as the file says)");
  cmd->callback([options, cmd] {
    options->text_given = cmd->count("--text") > 0;
    options->file_given = cmd->count("--file") > 0;
    run(*options);
  });
}

}  // namespace qllm::cli
