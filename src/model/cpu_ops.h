// The f32 building blocks of the CPU reference forward pass (llama2.c style: plain loops, row-major
// buffers, shapes in the comments). Matmuls run in parallel over output rows with OpenMP.
#pragma once

#include <cstdint>
#include <span>

#include "model/llama_weights.h"

namespace qllm::cpu {

// Work (multiply-adds) below which an op runs on one thread. A parallel region ends in a barrier that
// waits for every thread; when another process shares the cores (ctest -j, a build) a preempted thread
// holds that barrier for a scheduler time slice (milliseconds), so only regions of a few milliseconds of
// work are worth splitting. Decode of small models stays single-threaded; prefill and 1B-sized matmuls don't.
inline constexpr int64_t kParallelWork = int64_t{1} << 22;

// Dot product of two f32 vectors of length n, accumulated in 8 independent lanes (vectorized explicitly:
// strict IEEE forbids the compiler to reassociate a single running sum), lanes summed in a fixed order.
float dot(const float* a, const float* b, int64_t n);

// out[tokens, w.rows] = x[tokens, w.cols] @ w^T. Each weight row is converted to f32 once and used for
// every token (in register tiles of 4 tokens x 2 rows), so a prefill reads the weights once. Every output
// equals dot(x[t], w[r]) bit for bit, whatever the number of tokens.
void matmul(float* out, const float* x, int64_t tokens, const WeightMatrix& w);

// out[n] = x[n] / sqrt(mean(x^2) + eps) * weight[n]  (Hugging Face LlamaRMSNorm, mean in double).
void rmsnorm(float* out, const float* x, const float* weight, int64_t n, double eps);

// Rotates the `heads` vectors of head_dim in x[heads, head_dim] to `position`, Hugging Face's "rotate
// half" convention: the pair (x[j], x[j + head_dim/2]) turns by the angle position * inv_freq[j].
void rope(float* x, int64_t heads, int64_t head_dim, int64_t position, std::span<const float> inv_freq);

// In-place softmax over x[n] (max subtracted first).
void softmax(float* x, int64_t n);

// -log softmax(logits[0..n))[target], the log-sum-exp in double; qllm::Error when the logits are not finite.
double negative_log_likelihood(const float* logits, int64_t n, int32_t target);

// silu(gate) * up, element-wise into gate[n].
void swiglu(float* gate, const float* up, int64_t n);

}  // namespace qllm::cpu
