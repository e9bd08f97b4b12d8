// What the engine (generate, perplexity) needs from a model: the config and a batched forward pass over
// sequences that each keep their own KV-cache slot. The CPU reference (llama_ref.h) implements it; a GPU
// engine implements the same interface beside it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/llama_config.h"

namespace qllm {

// One sequence of a batch: `tokens` continue cache slot `slot` from `start_position`. Positions at and
// after start_position that the slot held are replaced (start_position 0 starts the sequence afresh).
struct SequenceInput {
  int slot = 0;
  int64_t start_position = 0;
  std::span<const int32_t> tokens;
};

class CausalLm {
 public:
  virtual ~CausalLm() = default;

  virtual const LlamaConfig& config() const = 0;
  virtual std::string device_name() const = 0;

  // (Re)allocates the KV cache for `slots` independent sequences of up to `capacity` positions each;
  // capacity may not exceed max_position_embeddings.
  virtual void allocate_cache(int slots, int64_t capacity) = 0;
  virtual int64_t cache_capacity() const = 0;
  virtual int cache_slots() const = 0;

  // Runs the batch and returns logits [rows, vocab]: one row per input token in batch order, or one per
  // sequence (its last token) when `last_only`. Throws qllm::Error before computing anything when a
  // sequence would pass the cache capacity or max_position_embeddings, a token is outside the vocabulary,
  // a slot is used twice, or a start position skips past what the slot holds.
  virtual std::vector<float> forward(std::span<const SequenceInput> batch, bool last_only) = 0;
};

}  // namespace qllm
