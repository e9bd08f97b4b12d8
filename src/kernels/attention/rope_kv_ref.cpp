// RoPE + KV store: validation of the parameters and the CPU reference (the spec of rope_kv.cu).
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/checked_math.h"
#include "kernels/attention/attention_ref_util.h"
#include "kernels/attention/rope_kv.h"
#include "qllm/error.h"

namespace qllm {

void validate_rope_kv(const RopeKvParams& p, KernelTarget target) {
  const bool cuda = target == KernelTarget::Cuda;
  QLLM_CHECK(p.num_tokens >= 0, "rope_kv: {} tokens", p.num_tokens);
  QLLM_CHECK(p.num_q_heads >= 1 && p.num_kv_heads >= 1,
             "rope_kv: {} q heads and {} kv heads (at least 1 each)", p.num_q_heads, p.num_kv_heads);
  if (cuda) {
    QLLM_CHECK(p.head_dim == 64 || p.head_dim == 128,
               "rope_kv: head_dim {} (the CUDA kernel takes 64 or 128)", p.head_dim);
    QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16,
               "rope_kv: dtype {} (the CUDA kernel takes bf16 or f16)", dtype_name(p.dtype));
    QLLM_CHECK(p.num_tokens <= std::numeric_limits<int32_t>::max(), "rope_kv: {} tokens exceed the CUDA grid",
               p.num_tokens);
  } else {
    QLLM_CHECK(p.head_dim >= 2 && p.head_dim % 2 == 0, "rope_kv: head_dim {} (even, at least 2)", p.head_dim);
  }
  QLLM_CHECK(p.page_size >= 1, "rope_kv: page size {}", p.page_size);
  QLLM_CHECK(p.num_pages >= 1, "rope_kv: {} pages", p.num_pages);
  const int64_t esize = static_cast<int64_t>(dtype_size(p.dtype));
  const int64_t heads = static_cast<int64_t>(p.num_q_heads) + 2 * static_cast<int64_t>(p.num_kv_heads);
  const int64_t qkv_bytes =
      checked_mul(checked_mul(checked_mul(p.num_tokens, heads, "rope_kv qkv"), p.head_dim, "rope_kv qkv"),
                  esize, "rope_kv qkv bytes");
  const int64_t q_bytes =
      checked_mul(checked_mul(checked_mul(p.num_tokens, p.num_q_heads, "rope_kv q"), p.head_dim, "rope_kv q"),
                  esize, "rope_kv q bytes");
  const int64_t pool_slots = checked_mul(p.num_pages, p.page_size, "rope_kv pool slots");
  checked_mul(
      checked_mul(checked_mul(pool_slots, p.num_kv_heads, "rope_kv pool"), p.head_dim, "rope_kv pool"), esize,
      "rope_kv pool bytes");
  if (p.num_tokens == 0) return;
  QLLM_CHECK(p.qkv != nullptr && p.q_out != nullptr && p.k_pool != nullptr && p.v_pool != nullptr &&
                 p.inv_freq != nullptr && p.positions != nullptr && p.slot_mapping != nullptr,
             "rope_kv: a null buffer (qkv {}, q_out {}, k_pool {}, v_pool {}, inv_freq {}, positions {}, "
             "slot_mapping {})",
             p.qkv != nullptr, p.q_out != nullptr, p.k_pool != nullptr, p.v_pool != nullptr,
             p.inv_freq != nullptr, p.positions != nullptr, p.slot_mapping != nullptr);
  QLLM_CHECK(!attention_ref::ranges_overlap(p.q_out, q_bytes, p.qkv, qkv_bytes),
             "rope_kv: q_out overlaps qkv (not in place)");
  if (cuda) {
    auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
    QLLM_CHECK(aligned(p.qkv) && aligned(p.q_out) && aligned(p.k_pool) && aligned(p.v_pool),
               "rope_kv: qkv, q_out, k_pool and v_pool must be 16-byte aligned");
  }
}

void rope_kv_reference(const RopeKvParams& p) {
  validate_rope_kv(p, KernelTarget::Reference);
  using attention_ref::copy;
  using attention_ref::load;
  using attention_ref::store;
  const int64_t D = p.head_dim, half = D / 2;
  const int64_t Hq = p.num_q_heads, Hkv = p.num_kv_heads;
  const int64_t row_elems = (Hq + 2 * Hkv) * D;
  const int64_t pool_slots = p.num_pages * p.page_size;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t slot = p.slot_mapping[t];
    QLLM_CHECK(slot >= -1 && slot < pool_slots, "rope_kv: token {} has slot {}, outside the pool's {} slots",
               t, slot, pool_slots);
    const int64_t page = slot / p.page_size, offset = slot % p.page_size;
    const float position = static_cast<float>(p.positions[t]);
    for (int64_t j = 0; j < half; ++j) {
      const float angle = position * p.inv_freq[j];
      const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
      const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
      for (int64_t h = 0; h < Hq + Hkv; ++h) {  // q heads, then k heads
        const int64_t in = t * row_elems + h * D + j;
        const float x1 = load(p.qkv, in, p.dtype), x2 = load(p.qkv, in + half, p.dtype);
        const float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;  // -ffp-contract=off: no fused multiply-add
        if (h < Hq) {
          const int64_t out = (t * Hq + h) * D + j;
          store(p.q_out, out, p.dtype, y1);
          store(p.q_out, out + half, p.dtype, y2);
        } else if (slot >= 0) {
          const int64_t out = ((page * Hkv + (h - Hq)) * p.page_size + offset) * D + j;
          store(p.k_pool, out, p.dtype, y1);
          store(p.k_pool, out + half, p.dtype, y2);
        }
      }
    }
    if (slot < 0) continue;
    for (int64_t h = 0; h < Hkv; ++h) {
      for (int64_t d = 0; d < D; ++d) {
        copy(p.qkv, t * row_elems + (Hq + Hkv + h) * D + d, p.v_pool,
             ((page * Hkv + h) * p.page_size + offset) * D + d, p.dtype);
      }
    }
  }
}

}  // namespace qllm
