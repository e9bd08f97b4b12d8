// A batch of sequences in the paged KV layout for the attention tests (CPU and GPU): random q, k, v rounded
// to the dtype, each sequence's keys in pages drawn in a shuffled order from a pool with spare pages (unused
// slots hold NaN, so a read outside a sequence's keys shows), the block table, seq_q_start and seq_kv_len,
// and a plain dense softmax attention in double on the same values (the check of the paged reference).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "core/random.h"
#include "kernels/attention/attention_ref_util.h"
#include "kernels/attention/paged_attention.h"
#include "qllm/dtype.h"

namespace qllm::testing {

struct PagedBatchSpec {
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int page_size = 0;
  DType dtype = DType::F32;
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (q_len, kv_len) per sequence; q_len 0: a padding slot
  uint64_t seed = 1;
  int spare_pages = 3;
  double q_scale = 1.0;  // larger: sharper softmax
  // Host bounds above the real lengths, as a CUDA graph captured for longer sequences has them (0: the
  // batch's own maxima), and a pool of at least `min_pages` pages: batches with equal bounds then have
  // params that differ only in device data.
  int64_t q_len_bound = 0;
  int64_t kv_len_bound = 0;
  int64_t min_pages = 0;
};

// Values in a dtype's bytes (f32: 4 bytes, bf16/f16: 2).
inline std::vector<uint8_t> encode(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> bytes(values.size() * dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i)
    attention_ref::store(bytes.data(), static_cast<int64_t>(i), dtype, values[i]);
  return bytes;
}
inline std::vector<float> decode(const std::vector<uint8_t>& bytes, DType dtype) {
  std::vector<float> values(bytes.size() / dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = attention_ref::load(bytes.data(), static_cast<int64_t>(i), dtype);
  return values;
}
inline float round_to(float v, DType dtype) {
  uint8_t bytes[4];
  attention_ref::store(bytes, 0, dtype, v);
  return attention_ref::load(bytes, 0, dtype);
}

struct PagedBatch {
  PagedBatchSpec spec;
  int64_t num_tokens = 0;
  int64_t num_pages = 0;
  int max_pages_per_seq = 1;
  int64_t max_q_len = 0;
  int64_t max_kv_len = 0;
  std::vector<float> q;                          // [num_tokens, Hq, D], values representable in the dtype
  std::vector<std::vector<float>> k, v;          // per sequence [kv_len, Hkv, D]
  std::vector<uint8_t> q_bytes, k_pool, v_pool;  // in the dtype; pools [num_pages, Hkv, page_size, D]
  std::vector<int32_t> block_table;              // [num_seqs, max_pages_per_seq], -1 past a sequence's pages
  std::vector<int32_t> seq_q_start, seq_kv_len;

  int num_seqs() const { return static_cast<int>(spec.seqs.size()); }
  int64_t row_elems() const { return static_cast<int64_t>(spec.num_q_heads) * spec.head_dim; }

  // The params over the given buffers (host or device copies of the vectors above).
  PagedAttentionParams params(const void* q_data, void* out, const void* k_data, const void* v_data,
                              const int32_t* table, const int32_t* q_start, const int32_t* kv_len) const {
    PagedAttentionParams p;
    p.q = q_data;
    p.out = out;
    p.k_pool = k_data;
    p.v_pool = v_data;
    p.block_table = table;
    p.seq_q_start = q_start;
    p.seq_kv_len = kv_len;
    p.dtype = spec.dtype;
    p.num_seqs = num_seqs();
    p.num_tokens = num_tokens;
    p.num_q_heads = spec.num_q_heads;
    p.num_kv_heads = spec.num_kv_heads;
    p.head_dim = spec.head_dim;
    p.page_size = spec.page_size;
    p.num_pages = num_pages;
    p.max_pages_per_seq = max_pages_per_seq;
    p.max_q_len = max_q_len;
    p.max_kv_len = max_kv_len;
    return p;
  }
  // The params over this batch's host vectors.
  PagedAttentionParams host_params(std::vector<uint8_t>& out) const {
    return params(q_bytes.data(), out.data(), k_pool.data(), v_pool.data(), block_table.data(),
                  seq_q_start.data(), seq_kv_len.data());
  }
};

inline PagedBatch make_paged_batch(const PagedBatchSpec& spec) {
  PagedBatch b;
  b.spec = spec;
  Rng rng(spec.seed);
  const int64_t Hq = spec.num_q_heads, Hkv = spec.num_kv_heads, D = spec.head_dim, P = spec.page_size;
  auto normal = [&](double scale) { return round_to(static_cast<float>(scale * rng.normal()), spec.dtype); };
  std::vector<int64_t> pages_of(spec.seqs.size());
  int64_t used_pages = 0;
  b.seq_q_start.push_back(0);
  for (size_t s = 0; s < spec.seqs.size(); ++s) {
    const auto [q_len, kv_len] = spec.seqs[s];
    b.num_tokens += q_len;
    b.seq_q_start.push_back(static_cast<int32_t>(b.num_tokens));
    b.seq_kv_len.push_back(static_cast<int32_t>(kv_len));
    b.max_q_len = std::max(b.max_q_len, q_len);
    b.max_kv_len = std::max(b.max_kv_len, kv_len);
    pages_of[s] = (kv_len + P - 1) / P;
    used_pages += pages_of[s];
    b.max_pages_per_seq = std::max(b.max_pages_per_seq, static_cast<int>(pages_of[s]));
  }
  b.max_q_len = std::max(b.max_q_len, spec.q_len_bound);
  b.max_kv_len = std::max(b.max_kv_len, spec.kv_len_bound);
  b.max_pages_per_seq = static_cast<int>(std::max<int64_t>(b.max_pages_per_seq, (b.max_kv_len + P - 1) / P));
  b.num_pages = std::max(used_pages + spec.spare_pages, spec.min_pages);
  std::vector<int32_t> order(static_cast<size_t>(b.num_pages));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);

  b.q.resize(static_cast<size_t>(b.num_tokens * Hq * D));
  for (float& x : b.q) x = normal(spec.q_scale);
  b.q_bytes = encode(b.q, spec.dtype);
  std::vector<float> k_pool(static_cast<size_t>(b.num_pages * Hkv * P * D),
                            std::numeric_limits<float>::quiet_NaN());
  std::vector<float> v_pool = k_pool;
  b.block_table.assign(spec.seqs.size() * static_cast<size_t>(b.max_pages_per_seq), -1);
  size_t next_page = 0;
  for (size_t s = 0; s < spec.seqs.size(); ++s) {
    const int64_t kv_len = spec.seqs[s].second;
    for (int64_t i = 0; i < pages_of[s]; ++i) b.block_table[s * b.max_pages_per_seq + i] = order[next_page++];
    std::vector<float> k(static_cast<size_t>(kv_len * Hkv * D)), v(k.size());
    for (float& x : k) x = normal(1.0);
    for (float& x : v) x = normal(1.0);
    for (int64_t pos = 0; pos < kv_len; ++pos) {
      const int64_t page = b.block_table[s * b.max_pages_per_seq + pos / P];
      for (int64_t h = 0; h < Hkv; ++h) {
        const int64_t dst = ((page * Hkv + h) * P + pos % P) * D, src = (pos * Hkv + h) * D;
        std::copy_n(k.begin() + src, D, k_pool.begin() + dst);
        std::copy_n(v.begin() + src, D, v_pool.begin() + dst);
      }
    }
    b.k.push_back(std::move(k));
    b.v.push_back(std::move(v));
  }
  b.k_pool = encode(k_pool, spec.dtype);
  b.v_pool = encode(v_pool, spec.dtype);
  return b;
}

// Plain causal softmax attention in double on the dense values (no pages): out [num_tokens, Hq, D]; rows of
// padding sequences stay NaN.
inline std::vector<double> dense_attention(const PagedBatch& b) {
  const int64_t Hq = b.spec.num_q_heads, Hkv = b.spec.num_kv_heads, D = b.spec.head_dim, group = Hq / Hkv;
  std::vector<double> out(b.q.size(), std::numeric_limits<double>::quiet_NaN());
  for (int s = 0; s < b.num_seqs(); ++s) {
    const auto [q_len, kv_len] = b.spec.seqs[static_cast<size_t>(s)];
    for (int64_t i = 0; i < q_len; ++i) {
      const int64_t token = b.seq_q_start[static_cast<size_t>(s)] + i, position = kv_len - q_len + i;
      for (int64_t h = 0; h < Hq; ++h) {
        const int64_t kvh = h / group;
        std::vector<double> weights(static_cast<size_t>(position + 1));
        for (int64_t j = 0; j <= position; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) {
            dot += static_cast<double>(b.q[static_cast<size_t>((token * Hq + h) * D + d)]) *
                   b.k[static_cast<size_t>(s)][static_cast<size_t>((j * Hkv + kvh) * D + d)];
          }
          weights[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(D));
        }
        const double max = *std::max_element(weights.begin(), weights.end());
        double sum = 0;
        for (double& w : weights) sum += (w = std::exp(w - max));
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t j = 0; j <= position; ++j) {
            o += weights[static_cast<size_t>(j)] *
                 b.v[static_cast<size_t>(s)][static_cast<size_t>((j * Hkv + kvh) * D + d)];
          }
          out[static_cast<size_t>((token * Hq + h) * D + d)] = o / sum;
        }
      }
    }
  }
  return out;
}

}  // namespace qllm::testing
