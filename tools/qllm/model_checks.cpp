// Checks of a model directory's parts against each other, shared by the subcommands that load a model.
#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

void check_tokenizer_fits(const Tokenizer& tokenizer, const LlamaConfig& config, const std::string& model) {
  QLLM_CHECK(
      static_cast<int64_t>(tokenizer.vocab_size()) <= config.vocab_size,
      "{}: the tokenizer defines ids up to {} but the model's vocab_size is {}: tokenizer and config do "
      "not belong together",
      model, tokenizer.vocab_size() - 1, config.vocab_size);
}

}  // namespace qllm::cli
