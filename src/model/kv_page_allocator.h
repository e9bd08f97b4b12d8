// The paged KV cache's bookkeeping (host only, no CUDA): which pages of one shared pool each sequence owns,
// and the block table the GPU reads. A page holds `page_size` consecutive positions of one sequence for all
// layers; the same page id indexes every layer's K and V pools [num_pages, kv_heads, page_size, head_dim]
// (docs: notes/engine_design.md, "Data layouts"). Slot of a position = page_id * page_size + position %
// page_size.
//
// Page size: kDefaultKvPageSize = 64 positions. The attention kernels walk keys in tiles of 64, so a tile is
// then exactly one page (one block-table read, one contiguous 8 KiB run of K per kv head at head_dim 64), the
// decode split granule (64 keys) never straddles pages, and a 128k context needs a 2048-entry table row.
// The price, at most 63 unused positions per sequence, is 2 MiB of Llama-3.2-1B's cache (32 KiB a position),
// small beside a pool sized for --ctx x batch; 16 would only pay off for prefix sharing at a finer grain.
// The kernels take any power of two; 16 is tested too.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "qllm/dtype.h"

namespace qllm {

inline constexpr int kDefaultKvPageSize = 64;
inline constexpr int kMaxKvPageSize = 1024;

// Pages for `batch` sequences of up to `ctx` positions each: batch x ceil(ctx / page_size).
int64_t kv_pages_for(int64_t ctx, int64_t batch, int page_size);
// Block-table row length for sequences of up to `ctx` positions: ceil(ctx / page_size).
int64_t kv_pages_per_sequence(int64_t ctx, int page_size);
// Bytes one page takes over the whole model: K and V, every layer: 2 x layers x kv_heads x page_size x
// head_dim x dtype size.
int64_t kv_bytes_per_page(int64_t layers, int64_t kv_heads, int64_t head_dim, DType dtype, int page_size);

class KvPageAllocator {
 public:
  // A pool of `num_pages` pages of `page_size` positions (a power of two, 1..kMaxKvPageSize), shared by
  // sequences 0..max_seqs-1, each holding at most `max_pages_per_seq` pages.
  KvPageAllocator(int64_t num_pages, int page_size, int max_seqs, int max_pages_per_seq);

  int page_size() const { return page_size_; }
  int64_t num_pages() const { return num_pages_; }
  int max_seqs() const { return max_seqs_; }
  int max_pages_per_seq() const { return max_pages_per_seq_; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t pages_held(int seq) const;
  // Positions the sequence's pages hold: pages_held x page_size.
  int64_t capacity(int seq) const;

  // Makes `seq` hold pages for positions [0, total_positions): takes the missing pages from the pool, all or
  // nothing. A sequence already holding enough keeps what it has. Throws qllm::Error naming the sequence,
  // the positions and pages needed and the pages free when the pool (or the sequence's table row) is short.
  void reserve(int seq, int64_t total_positions);
  // Keeps the pages of positions [0, positions) and returns the rest to the pool at once.
  void truncate(int seq, int64_t positions);
  // Returns every page of `seq` to the pool.
  void release(int seq);

  // Row `seq` of the block table: max_pages_per_seq page ids in position order, -1 past the held pages.
  std::span<const int32_t> block_table_row(int seq) const;
  // The packed table [max_seqs, max_pages_per_seq] (int32) that the engine uploads.
  std::span<const int32_t> block_table() const { return table_; }
  // The slot of (seq, position): page_id * page_size + position % page_size; the position must be held.
  int64_t slot(int seq, int64_t position) const;

 private:
  void check_seq(int seq, const char* what) const;

  int64_t num_pages_;
  int page_size_;
  int max_seqs_;
  int max_pages_per_seq_;
  std::vector<int32_t> free_;   // free page ids, a stack: the most recently returned page is taken first
  std::vector<int32_t> held_;   // [max_seqs] pages each sequence holds
  std::vector<int32_t> table_;  // [max_seqs, max_pages_per_seq]
};

}  // namespace qllm
