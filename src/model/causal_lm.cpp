#include "model/causal_lm.h"

#include <set>

#include "kernels/sampling/top_logprobs.h"
#include "qllm/error.h"

namespace qllm {

int64_t validate_forward(const Context& context, std::span<const SequenceInput> batch,
                         const ForwardOutputs& outputs) {
  const LlamaConfig& config = context.model().config();
  QLLM_CHECK(!batch.empty(), "forward: empty batch");
  std::set<int> seen;
  int64_t tokens = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& s = batch[i];
    QLLM_CHECK(!s.tokens.empty(), "forward: sequence {} has no tokens", i);
    QLLM_CHECK(s.seq >= 0 && s.seq < context.max_sequences(),
               "forward: sequence id {} is outside [0, {}) (the context holds {} sequences)", s.seq,
               context.max_sequences(), context.max_sequences());
    QLLM_CHECK(seen.insert(s.seq).second, "forward: sequence {} appears twice in one batch", s.seq);
    QLLM_CHECK(s.start_position >= 0 && s.start_position <= context.length(s.seq),
               "forward: sequence {} starts at position {}, but it holds only {} positions", s.seq,
               s.start_position, context.length(s.seq));
    const int64_t end = s.start_position + static_cast<int64_t>(s.tokens.size());
    QLLM_CHECK(end <= context.max_positions(),
               "context overflow: sequence {} would reach {} positions, beyond the context's {} (--ctx; the "
               "model allows {})",
               s.seq, end, context.max_positions(), config.max_position_embeddings);
    for (int32_t token : s.tokens) {
      QLLM_CHECK(token >= 0 && token < config.vocab_size,
                 "forward: token id {} outside the vocabulary [0, {})", token, config.vocab_size);
    }
    tokens += static_cast<int64_t>(s.tokens.size());
  }
  QLLM_CHECK(tokens <= context.max_batch_tokens(),
             "forward: {} tokens in one batch, more than the context's max_batch_tokens {}", tokens,
             context.max_batch_tokens());
  const auto vocab = static_cast<size_t>(config.vocab_size);
  QLLM_CHECK(outputs.last_logits.empty() || outputs.last_logits.size() == batch.size() * vocab,
             "forward: last_logits holds {} floats, expected sequences x vocab = {}",
             outputs.last_logits.size(), batch.size() * vocab);
  QLLM_CHECK(outputs.all_logits.empty() || outputs.all_logits.size() == static_cast<size_t>(tokens) * vocab,
             "forward: all_logits holds {} floats, expected tokens x vocab = {}", outputs.all_logits.size(),
             static_cast<size_t>(tokens) * vocab);
  QLLM_CHECK(outputs.nll.size() == outputs.targets.size(), "forward: {} nll values for {} targets",
             outputs.nll.size(), outputs.targets.size());
  QLLM_CHECK(outputs.nll.empty() || outputs.nll.size() == static_cast<size_t>(tokens),
             "forward: {} targets for a batch of {} tokens", outputs.nll.size(), tokens);
  for (int32_t target : outputs.targets) {
    QLLM_CHECK(target >= -1 && target < config.vocab_size,
               "forward: target id {} outside the vocabulary [0, {})", target, config.vocab_size);
  }
  QLLM_CHECK(outputs.sampling.size() == outputs.sampled.size(),
             "forward: {} sampling rows for {} sampled tokens", outputs.sampling.size(), outputs.sampled.size());
  QLLM_CHECK(outputs.sampled.empty() || outputs.sampled.size() == batch.size(),
             "forward: {} sampled tokens for a batch of {} sequences", outputs.sampled.size(), batch.size());
  QLLM_CHECK(outputs.sampled_logprobs.empty() || outputs.sampled_logprobs.size() == outputs.sampled.size(),
             "forward: {} sampled log-probabilities for {} sampled tokens", outputs.sampled_logprobs.size(),
             outputs.sampled.size());
  QLLM_CHECK(outputs.top_logprobs >= 0 && outputs.top_logprobs <= kMaxTopLogprobs &&
                 outputs.top_logprobs <= config.vocab_size,
             "forward: top_logprobs {} outside 0..{}", outputs.top_logprobs, kMaxTopLogprobs);
  const size_t top = outputs.sampled.size() * static_cast<size_t>(outputs.top_logprobs);
  QLLM_CHECK(
      outputs.top_ids.size() == top && outputs.top_id_logprobs.size() == top,
      "forward: top_ids and top_id_logprobs hold {} and {} values, expected sampled tokens x top_logprobs "
      "= {}",
      outputs.top_ids.size(), outputs.top_id_logprobs.size(), top);
  for (const TokenSampling& s : outputs.sampling) {
    s.params.validate();
    for (int32_t id : s.history) {
      QLLM_CHECK(id >= 0 && id < config.vocab_size, "forward: history id {} outside the vocabulary [0, {})",
                 id, config.vocab_size);
    }
  }
  return tokens;
}

}  // namespace qllm
