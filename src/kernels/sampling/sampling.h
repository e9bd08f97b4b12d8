// Token sampling on the GPU with the CPU sampler's semantics (src/model/sampler.{h,cpp} is the spec; the
// GPU tests compare the two token for token): per row of logits T [rows, vocab], in f32 from the 16-bit
// logits: repetition penalty over the row's recent ids, then (temperature > 0) l / temperature, top-k
// (ties with the k-th kept), top-p (the likeliest tokens until their mass reaches top_p, equal logits in
// index order), min-p (p >= min_p · p_max), and an inverse-CDF draw in index order with the uniform
// counter_uniform(seed, step) of counter_rng.h. Temperature 0 is greedy: the exact argmax after the penalty,
// lowest index on ties. A temperature so small that the top logit overflows is greedy too (as the CPU).
//
// Everything that changes per step lives in device memory (SamplingRowState, the recent ids), so a CUDA
// graph of the launch replays it: the kernel reads each row's `step` and stores step + 1 (every call, greedy
// or not, as Sampler counts its calls), so replays draw fresh uniforms without host writes.
//
// Arithmetic: e_i = exp(f64(s_i) - f64(s_max)) as the CPU's probabilities(); the masses that top-p and the
// draw compare are sums of e_i in 64-bit fixed point (e_i · 2^44, rounded), which makes them exact and
// independent of the summation order, so a row gives the same token on every run. They differ from the
// CPU's double sums by < 1e-12 relative: the two can only disagree when the draw or the top-p cut falls that
// close to a boundary between two tokens. Tokens with e_i < 2^-45 get no mass (the CPU gives them ~1e-13).
// A non-finite logit in a row writes token -1 and sets *error_flag (the CPU sampler throws).
// Design: one 1024-thread CTA per row (decode rows are few; vocab up to 2^18); the k-th key and the top-p
// cut are found by 8-bit radix selection over order-preserving keys of s (4 passes each, histograms in
// shared memory); every pass re-reads the row (from L2). The penalised ids are a bitmap in shared memory.
#pragma once

#include <cstdint>

#include "qllm/dtype.h"

struct CUstream_st;  // cudaStream_t without the CUDA headers

namespace qllm {

// One row's sampling parameters, filled by the host (check_sampling_row) and kept on the device. Values
// are read by the kernel without host checks (graph replays): out-of-range ones are taken as "off"
// (temperature <= 0 or NaN: greedy; top_k <= 0 or >= vocab; top_p >= 1 or NaN; min_p <= 0 or NaN;
// penalty <= 0, NaN or 1).
struct SamplingRowState {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  int32_t reserved = 0;
  uint64_t seed = 0;
  uint64_t step = 0;  // the counter of the next draw; the kernel adds 1 per call
};
static_assert(sizeof(SamplingRowState) == 40);

// Host check of a row before upload: qllm::Error naming the bad field (same ranges as SamplingParams).
void check_sampling_row(const SamplingRowState& row);

constexpr int64_t kMaxSamplingVocab = int64_t{1} << 18;  // the fixed-point masses fit 64 bits up to this

struct SampleTokensParams {
  int64_t rows = 0;
  int64_t vocab = 0;                      // 1 .. kMaxSamplingVocab
  DType dtype = DType::BF16;              // of the logits: BF16 or F16
  const void* logits = nullptr;           // T [rows, vocab]
  SamplingRowState* row_state = nullptr;  // [rows]; `step` is advanced in place
  const int32_t* recent_ids = nullptr;    // [rows, window] ids for the repetition penalty, -1 padding
  int64_t window = 0;                     // 0: no penalty ids (recent_ids may be null)
  int32_t* tokens = nullptr;              // [rows] the sampled ids
  int* error_flag = nullptr;              // may be null
};

void launch_sample_tokens(const SampleTokensParams& params, CUstream_st* stream);

namespace detail {
void enqueue_sample_tokens(const SampleTokensParams& params, CUstream_st* stream);  // validated parameters
}  // namespace detail

}  // namespace qllm
