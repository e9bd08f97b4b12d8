// Generated tokens to the text a client sees: detokenized as a stream (UTF-8 sequences split across tokens
// are held until complete; special tokens such as EOS are not shown) with OpenAI's stop strings applied:
// the text ends before the first stop string, and text that could be the start of one is held back until
// the next token shows whether it is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qllm/tokenizer.h"

namespace qllm::server {

class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop);

  // Adds a token; returns the text that can be shown now (possibly empty). After a stop string appears,
  // stopped() is true and every later call returns "".
  std::string push(int32_t token);
  // At the end of generation: what was held back (an incomplete UTF-8 tail becomes U+FFFD).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::string release();  // pending_ minus the longest tail that is a prefix of a stop string

  Tokenizer::StreamDecoder decoder_;
  std::vector<std::string> stop_;
  std::string pending_;  // decoded text not yet shown: it may begin a stop string
  bool stopped_ = false;
};

}  // namespace qllm::server
