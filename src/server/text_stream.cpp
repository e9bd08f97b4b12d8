#include "server/text_stream.h"

#include <algorithm>

namespace qllm::server {

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop)
    : decoder_(tokenizer, /*skip_special_tokens=*/true), stop_(std::move(stop)) {}

std::string TextStream::release() {
  // The earliest stop string ends the text.
  size_t first = std::string::npos;
  for (const std::string& s : stop_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that a stop string starts with. Both are valid UTF-8, so such a tail starts
  // at a character boundary and what is released is whole characters.
  size_t hold = 0;
  for (const std::string& s : stop_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string TextStream::push(int32_t token) {
  if (stopped_) return {};
  pending_ += decoder_.push(token);
  return release();
}

std::string TextStream::finish() {
  if (stopped_) return {};
  pending_ += decoder_.flush();
  std::string out = release();  // a stop string completed by the flushed tail still cuts
  if (!stopped_) out += pending_;
  pending_.clear();
  return out;
}

}  // namespace qllm::server
