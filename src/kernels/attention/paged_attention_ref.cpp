// Paged attention: validation of the parameters, the CPU reference (the spec of paged_attention.cu), the
// contiguous convenience for tests, and the decode planning shared with the CUDA host code.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/checked_math.h"
#include "kernels/attention/attention_layout.h"
#include "kernels/attention/attention_ref_util.h"
#include "kernels/attention/paged_attention.h"
#include "qllm/error.h"

namespace qllm {

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// One sequence's keys and values of one kv head, gathered from the pages: [kv_len, D] each.
struct GatheredKv {
  std::vector<float> keys;
  std::vector<float> values;
};

GatheredKv gather(const PagedAttentionParams& p, int seq, int kv_head, int64_t kv_len) {
  GatheredKv kv;
  const int64_t D = p.head_dim;
  kv.keys.resize(static_cast<size_t>(kv_len * D));
  kv.values.resize(kv.keys.size());
  const int32_t* row = p.block_table + static_cast<int64_t>(seq) * p.max_pages_per_seq;
  for (int64_t pos = 0; pos < kv_len; ++pos) {
    const int64_t page = row[pos / p.page_size];
    QLLM_CHECK(
        page >= 0 && page < p.num_pages,
        "paged attention: sequence {} position {} is in page {} (block table entry {}), outside [0, {})", seq,
        pos, page, pos / p.page_size, p.num_pages);
    const int64_t base = ((page * p.num_kv_heads + kv_head) * p.page_size + pos % p.page_size) * D;
    for (int64_t d = 0; d < D; ++d) {
      kv.keys[static_cast<size_t>(pos * D + d)] = attention_ref::load(p.k_pool, base + d, p.dtype);
      kv.values[static_cast<size_t>(pos * D + d)] = attention_ref::load(p.v_pool, base + d, p.dtype);
    }
  }
  return kv;
}

// Attention of query row `token`, head `head` at `position` over keys 0..position, in double.
void attend(const PagedAttentionParams& p, const GatheredKv& kv, int64_t token, int64_t head,
            int64_t position, std::vector<double>& query, std::vector<double>& scores) {
  const int64_t D = p.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const int64_t q_base = (token * p.num_q_heads + head) * D;
  for (int64_t d = 0; d < D; ++d)
    query[static_cast<size_t>(d)] = attention_ref::load(p.q, q_base + d, p.dtype);
  double max_score = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j <= position; ++j) {
    double dot = 0.0;
    for (int64_t d = 0; d < D; ++d)
      dot += query[static_cast<size_t>(d)] * kv.keys[static_cast<size_t>(j * D + d)];
    scores[static_cast<size_t>(j)] = dot * scale;
    max_score = std::max(max_score, scores[static_cast<size_t>(j)]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j <= position; ++j) {
    scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - max_score);
    sum += scores[static_cast<size_t>(j)];
  }
  for (int64_t d = 0; d < D; ++d) {
    double o = 0.0;
    for (int64_t j = 0; j <= position; ++j)
      o += scores[static_cast<size_t>(j)] * kv.values[static_cast<size_t>(j * D + d)];
    attention_ref::store(p.out, q_base + d, p.dtype, static_cast<float>(o / sum));
  }
}

}  // namespace

void validate_paged_attention(const PagedAttentionParams& p, KernelTarget target) {
  const bool cuda = target == KernelTarget::Cuda;
  QLLM_CHECK(p.num_seqs >= 1, "paged attention: {} sequences (at least 1)", p.num_seqs);
  QLLM_CHECK(p.num_tokens >= 0, "paged attention: {} tokens", p.num_tokens);
  QLLM_CHECK(p.num_q_heads >= 1 && p.num_kv_heads >= 1 && p.num_q_heads % p.num_kv_heads == 0,
             "paged attention: {} q heads are not a multiple of {} kv heads", p.num_q_heads, p.num_kv_heads);
  if (cuda) {
    QLLM_CHECK(p.head_dim == 64 || p.head_dim == 128,
               "paged attention: head_dim {} (the CUDA kernels take 64 or 128)", p.head_dim);
    QLLM_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16,
               "paged attention: dtype {} (the CUDA kernels take bf16 or f16)", dtype_name(p.dtype));
    QLLM_CHECK(attention_ref::is_power_of_two(p.page_size) && p.page_size <= 1024,
               "paged attention: page size {} (the CUDA kernels take powers of two up to 1024)", p.page_size);
  } else {
    QLLM_CHECK(p.head_dim >= 1, "paged attention: head_dim {}", p.head_dim);
    QLLM_CHECK(p.page_size >= 1, "paged attention: page size {}", p.page_size);
  }
  QLLM_CHECK(p.num_pages >= 1 && p.num_pages <= kInt32Max, "paged attention: {} pages (page ids are int32)",
             p.num_pages);
  QLLM_CHECK(p.max_pages_per_seq >= 1, "paged attention: {} pages per sequence", p.max_pages_per_seq);
  const int64_t esize = static_cast<int64_t>(dtype_size(p.dtype));
  const int64_t q_elems = checked_mul(checked_mul(p.num_tokens, p.num_q_heads, "paged attention q"),
                                      p.head_dim, "paged attention q");
  const int64_t q_bytes = checked_mul(q_elems, esize, "paged attention q bytes");
  const int64_t pool_slots = checked_mul(p.num_pages, p.page_size, "paged attention pool slots");
  checked_mul(checked_mul(checked_mul(pool_slots, p.num_kv_heads, "paged attention pool"), p.head_dim,
                          "paged attention pool"),
              esize, "paged attention pool bytes");
  checked_mul(p.num_seqs, p.max_pages_per_seq, "paged attention block table");
  const int64_t capacity = checked_mul(p.max_pages_per_seq, p.page_size, "paged attention sequence capacity");
  QLLM_CHECK(p.max_q_len >= 0 && p.max_q_len <= p.num_tokens,
             "paged attention: max_q_len {} outside [0, {} tokens]", p.max_q_len, p.num_tokens);
  QLLM_CHECK(p.max_kv_len >= 0 && p.max_kv_len <= capacity,
             "paged attention: max_kv_len {} outside [0, {}] (block-table row of {} pages of {})",
             p.max_kv_len, capacity, p.max_pages_per_seq, p.page_size);
  if (cuda) {
    QLLM_CHECK(p.num_tokens * p.num_q_heads <= kInt32Max,
               "paged attention: {} tokens x {} q heads exceed int32", p.num_tokens, p.num_q_heads);
    QLLM_CHECK(capacity <= kInt32Max, "paged attention: {} positions per sequence exceed int32", capacity);
    QLLM_CHECK(p.num_seqs <= 65535, "paged attention: {} sequences exceed the CUDA grid (65535)", p.num_seqs);
  }
  QLLM_CHECK(
      p.q != nullptr && p.out != nullptr && p.k_pool != nullptr && p.v_pool != nullptr &&
          p.block_table != nullptr && p.seq_q_start != nullptr && p.seq_kv_len != nullptr,
      "paged attention: a null buffer (q {}, out {}, k_pool {}, v_pool {}, block_table {}, seq_q_start {}, "
      "seq_kv_len {})",
      p.q != nullptr, p.out != nullptr, p.k_pool != nullptr, p.v_pool != nullptr, p.block_table != nullptr,
      p.seq_q_start != nullptr, p.seq_kv_len != nullptr);
  QLLM_CHECK(!attention_ref::ranges_overlap(p.out, q_bytes, p.q, q_bytes), "paged attention: out overlaps q");
  if (cuda) {
    auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
    QLLM_CHECK(aligned(p.q) && aligned(p.out) && aligned(p.k_pool) && aligned(p.v_pool),
               "paged attention: q, out, k_pool and v_pool must be 16-byte aligned");
  }
}

void paged_attention_reference(const PagedAttentionParams& p) {
  validate_paged_attention(p, KernelTarget::Reference);
  const int group = p.num_q_heads / p.num_kv_heads;
  for (int s = 0; s < p.num_seqs; ++s) {
    const int64_t q_begin = p.seq_q_start[s], q_end = p.seq_q_start[s + 1];
    QLLM_CHECK(q_begin >= 0 && q_begin <= q_end && q_end <= p.num_tokens,
               "paged attention: sequence {} has query rows [{}, {}), outside [0, {}) or reversed", s,
               q_begin, q_end, p.num_tokens);
    const int64_t q_len = q_end - q_begin;
    if (q_len == 0) continue;
    const int64_t kv_len = p.seq_kv_len[s];
    QLLM_CHECK(q_len <= p.max_q_len, "paged attention: sequence {} has {} query rows, above max_q_len {}", s,
               q_len, p.max_q_len);
    QLLM_CHECK(kv_len >= q_len && kv_len <= p.max_kv_len,
               "paged attention: sequence {} has {} keys for {} query rows (max_kv_len {})", s, kv_len, q_len,
               p.max_kv_len);
    for (int kv_head = 0; kv_head < p.num_kv_heads; ++kv_head) {
      const GatheredKv kv = gather(p, s, kv_head, kv_len);
      const int64_t rows = q_len * group;
#pragma omp parallel if (rows * kv_len * p.head_dim >= (int64_t{1} << 22))
      {
        std::vector<double> query(static_cast<size_t>(p.head_dim)), scores(static_cast<size_t>(kv_len));
#pragma omp for schedule(dynamic, 4)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = r / group, head = static_cast<int64_t>(kv_head) * group + r % group;
          attend(p, kv, q_begin + i, head, kv_len - q_len + i, query, scores);
        }
      }
    }
  }
}

std::vector<float> attention_contiguous_reference(const std::vector<float>& q, const std::vector<float>& k,
                                                  const std::vector<float>& v, int64_t q_len, int64_t kv_len,
                                                  int num_q_heads, int num_kv_heads, int head_dim,
                                                  int page_size) {
  QLLM_CHECK(q_len >= 1 && kv_len >= q_len && page_size >= 1 && num_kv_heads >= 1 && head_dim >= 1,
             "contiguous attention: q_len {}, kv_len {}, page size {}", q_len, kv_len, page_size);
  const int64_t kv_elems = kv_len * num_kv_heads * head_dim;
  QLLM_CHECK(static_cast<int64_t>(q.size()) == q_len * num_q_heads * head_dim &&
                 static_cast<int64_t>(k.size()) == kv_elems && static_cast<int64_t>(v.size()) == kv_elems,
             "contiguous attention: {} q, {} k, {} v values for q_len {}, kv_len {}", q.size(), k.size(),
             v.size(), q_len, kv_len);
  // Pages in reverse order, page 0 a spare that nothing references; unused slots hold NaN, so a read past
  // the keys shows in the output.
  const int64_t pages = (kv_len + page_size - 1) / page_size;
  const int64_t num_pages = pages + 1;
  std::vector<int32_t> table(static_cast<size_t>(pages));
  for (int64_t i = 0; i < pages; ++i) table[static_cast<size_t>(i)] = static_cast<int32_t>(num_pages - 1 - i);
  const size_t pool_elems = static_cast<size_t>(num_pages * num_kv_heads * page_size * head_dim);
  std::vector<float> k_pool(pool_elems, std::numeric_limits<float>::quiet_NaN()), v_pool = k_pool;
  for (int64_t pos = 0; pos < kv_len; ++pos) {
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      const int64_t page = table[static_cast<size_t>(pos / page_size)];
      const int64_t dst = ((page * num_kv_heads + h) * page_size + pos % page_size) * head_dim;
      const int64_t src = (pos * num_kv_heads + h) * head_dim;
      std::copy_n(k.begin() + src, head_dim, k_pool.begin() + dst);
      std::copy_n(v.begin() + src, head_dim, v_pool.begin() + dst);
    }
  }
  std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
  const std::vector<int32_t> q_start = {0, static_cast<int32_t>(q_len)};
  const std::vector<int32_t> kv_lens = {static_cast<int32_t>(kv_len)};
  PagedAttentionParams p;
  p.q = q.data();
  p.out = out.data();
  p.k_pool = k_pool.data();
  p.v_pool = v_pool.data();
  p.block_table = table.data();
  p.seq_q_start = q_start.data();
  p.seq_kv_len = kv_lens.data();
  p.dtype = DType::F32;
  p.num_seqs = 1;
  p.num_tokens = q_len;
  p.num_q_heads = num_q_heads;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.page_size = page_size;
  p.num_pages = num_pages;
  p.max_pages_per_seq = static_cast<int>(pages);
  p.max_q_len = q_len;
  p.max_kv_len = kv_len;
  paged_attention_reference(p);
  return out;
}

int decode_heads_per_cta(int num_q_heads, int num_kv_heads) {
  const int group = num_q_heads / num_kv_heads;
  if (group <= 2) return group;
  return group <= 4 ? 4 : 8;
}

int decode_head_groups(int num_q_heads, int num_kv_heads) {
  const int per_cta = decode_heads_per_cta(num_q_heads, num_kv_heads);
  return (num_q_heads / num_kv_heads + per_cta - 1) / per_cta;
}

int decode_splits(int num_seqs, int num_q_heads, int num_kv_heads, int64_t max_kv_len, int multiprocessors) {
  if (max_kv_len <= attention::kDecodeGranule) return 1;
  const int64_t ctas =
      static_cast<int64_t>(num_seqs) * num_kv_heads * decode_head_groups(num_q_heads, num_kv_heads);
  const int64_t fill = (2 * static_cast<int64_t>(std::max(multiprocessors, 1)) + ctas - 1) / ctas;
  const int64_t by_length = (max_kv_len + 1023) / 1024;
  const int64_t most = (max_kv_len + attention::kDecodeGranule - 1) / attention::kDecodeGranule;
  return static_cast<int>(std::clamp<int64_t>(std::max(fill, by_length), 1, most));
}

}  // namespace qllm
