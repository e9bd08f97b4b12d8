// Model and context apart, as llama.cpp has them. A Model is immutable once loaded: the config and the
// weights, on one device, in one quantization mode. A Context belongs to one user of the model (a generate
// loop, a perplexity run, a server's scheduler): it owns the KV cache for up to `max_sequences` sequences,
// the activation workspaces and, on a GPU, the stream. Several contexts can share one model.
//
// forward() runs a batch of sequences (each continuing its own cache from a start position) and writes only
// what the caller asks for into buffers the caller owns: the logits of each sequence's last token, of every
// token, or the negative log-likelihood of given next tokens (perplexity needs no logits on the host).
// The CPU reference (llama_ref.h) and the GPU engine (llama_cuda.h) implement both interfaces.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "model/llama_config.h"
#include "model/sampler.h"

namespace qllm {

// One sequence of a batch: `tokens` continue sequence `seq` of the context from `start_position`. Positions
// at and after start_position that the sequence held are replaced (0 starts it afresh).
struct SequenceInput {
  int seq = 0;
  int64_t start_position = 0;
  std::span<const int32_t> tokens;
};

// How to draw one sequence's next token: `params` at counter `step` (Sampler::step()), the repetition
// penalty over the distinct ids of `history` (prompt and generated so far).
struct TokenSampling {
  SamplingParams params;
  uint64_t step = 0;
  std::span<const int32_t> history;
};

// What forward() writes. Spans left empty are not computed.
struct ForwardOutputs {
  // [sequences, vocab]: the logits after each sequence's last token, in batch order.
  std::span<float> last_logits;
  // [tokens, vocab]: the logits after every token, in batch order (sequence after sequence).
  std::span<float> all_logits;
  // With `nll`: [tokens] the id expected after each token (-1: not scored); nll[i] = -log p(targets[i]).
  std::span<const int32_t> targets;
  std::span<double> nll;
  // With `sampled`: [sequences] how to draw each sequence's next token from its last logits (model/sampler.h
  // semantics); sampled[i] receives it. The GPU engine draws on the device: no logits reach the host.
  std::span<const TokenSampling> sampling;
  std::span<int32_t> sampled;
  // With `sampled`, optionally (OpenAI's logprobs): [sequences] the log-probability of each sampled token,
  // and with top_logprobs = k (1..kMaxTopLogprobs) [sequences, k] the ids of the k likeliest next tokens
  // (likeliest first, equal logits by lower id) and theirs. Log-probabilities are the log-softmax of the
  // model's logits (kernels/sampling/top_logprobs.h), before temperature, penalties or filters.
  std::span<float> sampled_logprobs;
  int top_logprobs = 0;
  std::span<int32_t> top_ids;
  std::span<float> top_id_logprobs;
};

struct ContextOptions {
  int max_sequences = 1;      // sequences held at once (a batch uses any subset of them)
  int64_t max_positions = 0;  // positions one sequence may reach (0: the model's max_position_embeddings)
  int64_t max_batch_tokens = 512;  // tokens of one forward pass at most (longer prompts go in chunks)
};

class Context;

class Model {
 public:
  virtual ~Model() = default;

  virtual const LlamaConfig& config() const = 0;
  virtual std::string device_name() const = 0;   // "cpu (reference, 2 threads)", "NVIDIA H200"
  virtual std::string quantization() const = 0;  // "bf16", "int4-g128 (lm_head bf16)", ...
  virtual uint64_t weight_bytes() const = 0;     // bytes the weights take on the model's device

  // A context with its own KV cache (sized for options.max_sequences x options.max_positions, allocated
  // now: out of memory is an error here, naming what was allocated, never later).
  virtual std::unique_ptr<Context> new_context(const ContextOptions& options) const = 0;
};

class Context {
 public:
  virtual ~Context() = default;

  virtual const Model& model() const = 0;
  virtual int max_sequences() const = 0;
  virtual int64_t max_positions() const = 0;
  virtual int64_t max_batch_tokens() const = 0;

  // Bytes this context holds on the model's device (KV cache, workspaces).
  virtual uint64_t memory_bytes() const = 0;

  // Positions sequence `seq` holds in the cache.
  virtual int64_t length(int seq) const = 0;
  // Forgets positions >= `length` of `seq` (0 frees the sequence's cache).
  virtual void truncate(int seq, int64_t length) = 0;

  // Runs the batch. Throws qllm::Error before computing anything when a sequence would pass max_positions,
  // a token is outside the vocabulary, a sequence appears twice, a start position skips past what the
  // sequence holds, the batch has more than max_batch_tokens tokens, or an output span has the wrong size.
  virtual void forward(std::span<const SequenceInput> batch, const ForwardOutputs& outputs) = 0;
};

// Checks a batch against a context's limits and the outputs' sizes (shared by every implementation, so that
// each gives the same errors). Returns the batch's token count.
int64_t validate_forward(const Context& context, std::span<const SequenceInput> batch,
                         const ForwardOutputs& outputs);

}  // namespace qllm
