#include "model/kv_page_allocator.h"

#include <algorithm>
#include <limits>

#include "core/checked_math.h"
#include "qllm/error.h"

namespace qllm {

namespace {

bool is_power_of_two(int64_t v) {
  return v > 0 && (v & (v - 1)) == 0;
}

void check_page_size(int page_size) {
  QLLM_CHECK(is_power_of_two(page_size) && page_size <= kMaxKvPageSize,
             "KV cache: page size {} is not a power of two in [1, {}]", page_size, kMaxKvPageSize);
}

}  // namespace

int64_t kv_pages_per_sequence(int64_t ctx, int page_size) {
  check_page_size(page_size);
  QLLM_CHECK(ctx >= 1, "KV cache: context of {} positions (at least 1)", ctx);
  return (ctx + page_size - 1) / page_size;  // no overflow: ctx <= INT64_MAX, page_size <= 1024
}

int64_t kv_pages_for(int64_t ctx, int64_t batch, int page_size) {
  QLLM_CHECK(batch >= 1, "KV cache: batch of {} sequences (at least 1)", batch);
  return checked_mul(kv_pages_per_sequence(ctx, page_size), batch,
                     "KV cache pages (batch x pages per sequence)");
}

int64_t kv_bytes_per_page(int64_t layers, int64_t kv_heads, int64_t head_dim, DType dtype, int page_size) {
  check_page_size(page_size);
  QLLM_CHECK(layers >= 1 && kv_heads >= 1 && head_dim >= 1,
             "KV cache: {} layers, {} kv heads, head_dim {} (each at least 1)", layers, kv_heads, head_dim);
  int64_t bytes = checked_mul(2 * static_cast<int64_t>(dtype_size(dtype)), layers, "KV page bytes");
  bytes = checked_mul(bytes, kv_heads, "KV page bytes");
  bytes = checked_mul(bytes, head_dim, "KV page bytes");
  return checked_mul(bytes, page_size, "KV page bytes");
}

KvPageAllocator::KvPageAllocator(int64_t num_pages, int page_size, int max_seqs, int max_pages_per_seq)
    : num_pages_(num_pages),
      page_size_(page_size),
      max_seqs_(max_seqs),
      max_pages_per_seq_(max_pages_per_seq) {
  check_page_size(page_size);
  QLLM_CHECK(num_pages >= 1 && num_pages <= std::numeric_limits<int32_t>::max(),
             "KV cache: {} pages (page ids are int32: 1 to {})", num_pages,
             std::numeric_limits<int32_t>::max());
  QLLM_CHECK(max_seqs >= 1, "KV cache: {} sequences (at least 1)", max_seqs);
  QLLM_CHECK(max_pages_per_seq >= 1, "KV cache: {} pages per sequence (at least 1)", max_pages_per_seq);
  const int64_t entries = checked_mul(max_seqs, max_pages_per_seq, "KV block table entries");
  check_fits_in_memory(static_cast<uint64_t>(entries + num_pages) * sizeof(int32_t), "KV cache block table");
  free_.resize(static_cast<size_t>(num_pages));
  for (int64_t i = 0; i < num_pages; ++i)
    free_[static_cast<size_t>(i)] = static_cast<int32_t>(num_pages - 1 - i);
  held_.assign(static_cast<size_t>(max_seqs), 0);
  table_.assign(static_cast<size_t>(entries), -1);
}

void KvPageAllocator::check_seq(int seq, const char* what) const {
  QLLM_CHECK(seq >= 0 && seq < max_seqs_, "KV cache {}: sequence {} out of range [0, {})", what, seq,
             max_seqs_);
}

int64_t KvPageAllocator::pages_held(int seq) const {
  check_seq(seq, "pages_held");
  return held_[static_cast<size_t>(seq)];
}

int64_t KvPageAllocator::capacity(int seq) const {
  return pages_held(seq) * page_size_;
}

void KvPageAllocator::reserve(int seq, int64_t total_positions) {
  check_seq(seq, "reserve");
  QLLM_CHECK(total_positions >= 0, "KV cache: sequence {} asks for {} positions", seq, total_positions);
  const int64_t row_positions = static_cast<int64_t>(max_pages_per_seq_) * page_size_;
  QLLM_CHECK(
      total_positions <= row_positions,
      "KV cache: sequence {} needs {} positions, more than the context of {} positions ({} pages of {})", seq,
      total_positions, row_positions, max_pages_per_seq_, page_size_);
  const int64_t needed = (total_positions + page_size_ - 1) / page_size_;
  int32_t& held = held_[static_cast<size_t>(seq)];
  if (needed <= held) return;
  const int64_t missing = needed - held;
  QLLM_CHECK(
      missing <= free_pages(),
      "KV cache full: sequence {} needs {} positions = {} pages of {} (it holds {}, {} more), but only {} "
      "of {} pages are free",
      seq, total_positions, needed, page_size_, held, missing, free_pages(), num_pages_);
  int32_t* row = table_.data() + static_cast<size_t>(seq) * max_pages_per_seq_;
  for (int64_t i = held; i < needed; ++i) {
    row[i] = free_.back();
    free_.pop_back();
  }
  held = static_cast<int32_t>(needed);
}

void KvPageAllocator::truncate(int seq, int64_t positions) {
  check_seq(seq, "truncate");
  QLLM_CHECK(positions >= 0, "KV cache: truncating sequence {} to {} positions", seq, positions);
  const int64_t keep = std::min<int64_t>((positions + page_size_ - 1) / page_size_, max_pages_per_seq_);
  int32_t& held = held_[static_cast<size_t>(seq)];
  int32_t* row = table_.data() + static_cast<size_t>(seq) * max_pages_per_seq_;
  while (held > keep) {
    --held;
    free_.push_back(row[held]);
    row[held] = -1;
  }
}

void KvPageAllocator::release(int seq) {
  truncate(seq, 0);
}

std::span<const int32_t> KvPageAllocator::block_table_row(int seq) const {
  check_seq(seq, "block_table_row");
  return std::span<const int32_t>(table_).subspan(static_cast<size_t>(seq) * max_pages_per_seq_,
                                                  static_cast<size_t>(max_pages_per_seq_));
}

int64_t KvPageAllocator::slot(int seq, int64_t position) const {
  check_seq(seq, "slot");
  QLLM_CHECK(position >= 0 && position < capacity(seq),
             "KV cache: position {} of sequence {} is outside its {} reserved positions", position, seq,
             capacity(seq));
  const int32_t page = block_table_row(seq)[static_cast<size_t>(position / page_size_)];
  return static_cast<int64_t>(page) * page_size_ + position % page_size_;
}

}  // namespace qllm
