// The paged KV cache's page bookkeeping: reserve/truncate/release, all-or-nothing reservations with errors
// that name the numbers, exclusive page ownership under random traffic, block tables and slots, sizing.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/random.h"
#include "model/kv_page_allocator.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;

// Every held page belongs to exactly one sequence, and held + free pages are the whole pool.
void expect_consistent(const KvPageAllocator& a) {
  std::vector<int> owners(static_cast<size_t>(a.num_pages()), 0);
  int64_t held_total = 0;
  for (int s = 0; s < a.max_seqs(); ++s) {
    const auto row = a.block_table_row(s);
    const int64_t held = a.pages_held(s);
    held_total += held;
    for (int64_t i = 0; i < a.max_pages_per_seq(); ++i) {
      const int32_t page = row[static_cast<size_t>(i)];
      if (i < held) {
        ASSERT_GE(page, 0) << "seq " << s << " entry " << i;
        ASSERT_LT(page, a.num_pages());
        ++owners[static_cast<size_t>(page)];
      } else {
        ASSERT_EQ(page, -1) << "seq " << s << " entry " << i << " past its " << held << " pages";
      }
    }
    // The packed table holds the same rows.
    const auto packed = a.block_table().subspan(static_cast<size_t>(s) * a.max_pages_per_seq(), row.size());
    ASSERT_TRUE(std::equal(row.begin(), row.end(), packed.begin()));
  }
  for (int64_t p = 0; p < a.num_pages(); ++p) ASSERT_LE(owners[static_cast<size_t>(p)], 1) << "page " << p;
  EXPECT_EQ(held_total + a.free_pages(), a.num_pages());
}

TEST(KvPageAllocator, ReserveTruncateRelease) {
  KvPageAllocator a(/*num_pages=*/10, /*page_size=*/16, /*max_seqs=*/3, /*max_pages_per_seq=*/6);
  EXPECT_EQ(a.free_pages(), 10);
  a.reserve(0, 1);  // 1 page
  EXPECT_EQ(a.pages_held(0), 1);
  EXPECT_EQ(a.capacity(0), 16);
  a.reserve(0, 16);  // still 1 page
  EXPECT_EQ(a.pages_held(0), 1);
  a.reserve(0, 17);  // 2 pages
  EXPECT_EQ(a.pages_held(0), 2);
  a.reserve(0, 5);  // reserving less keeps what the sequence holds
  EXPECT_EQ(a.pages_held(0), 2);
  a.reserve(1, 96);  // 6 pages: the whole row
  EXPECT_EQ(a.pages_held(1), 6);
  EXPECT_EQ(a.free_pages(), 2);
  expect_consistent(a);

  a.truncate(1, 33);  // keeps 3 pages
  EXPECT_EQ(a.pages_held(1), 3);
  EXPECT_EQ(a.free_pages(), 5);
  a.truncate(1, 1000);  // more than held: nothing changes
  EXPECT_EQ(a.pages_held(1), 3);
  expect_consistent(a);

  a.release(0);
  EXPECT_EQ(a.pages_held(0), 0);
  EXPECT_EQ(a.free_pages(), 7);
  a.reserve(0, 0);  // nothing needed
  EXPECT_EQ(a.pages_held(0), 0);
  expect_consistent(a);
}

TEST(KvPageAllocator, SlotsFollowTheBlockTable) {
  KvPageAllocator a(8, 4, 2, 4);
  a.reserve(0, 4);  // page of seq 0 first, so seq 1's pages are not 0, 1, ...
  a.reserve(1, 10);
  a.reserve(0, 9);
  const auto row = a.block_table_row(1);
  for (int64_t pos = 0; pos < 12; ++pos) {
    EXPECT_EQ(a.slot(1, pos), row[static_cast<size_t>(pos / 4)] * 4 + pos % 4) << "position " << pos;
  }
  // Pages of sequence 0 are interleaved with sequence 1's: its rows are not simply consecutive page ids.
  EXPECT_NE(a.block_table_row(0)[1], a.block_table_row(0)[0] + 1);
  EXPECT_NE(error_of([&] { a.slot(1, 12); }).find("position 12 of sequence 1 is outside its 12 reserved"),
            std::string::npos);
  EXPECT_NE(error_of([&] { a.slot(1, -1); }).find("outside"), std::string::npos);
  EXPECT_NE(error_of([&] { a.slot(2, 0); }).find("sequence 2 out of range [0, 2)"), std::string::npos);
}

TEST(KvPageAllocator, PoolFullIsAllOrNothingAndNamesTheNumbers) {
  KvPageAllocator a(5, 16, 2, 8);
  a.reserve(0, 48);                                                  // 3 pages
  a.reserve(1, 16);                                                  // 1 page
  const std::string message = error_of([&] { a.reserve(1, 100); });  // needs 7 pages, holds 1, 1 free
  EXPECT_NE(message.find("KV cache full: sequence 1 needs 100 positions = 7 pages of 16"), std::string::npos)
      << message;
  EXPECT_NE(message.find("it holds 1, 6 more"), std::string::npos) << message;
  EXPECT_NE(message.find("only 1 of 5 pages are free"), std::string::npos) << message;
  // Nothing was taken.
  EXPECT_EQ(a.pages_held(1), 1);
  EXPECT_EQ(a.free_pages(), 1);
  expect_consistent(a);
  // A request longer than the table row is refused whatever is free.
  const std::string too_long = error_of([&] { a.reserve(0, 8 * 16 + 1); });
  EXPECT_NE(too_long.find("sequence 0 needs 129 positions, more than the context of 128 positions"),
            std::string::npos)
      << too_long;
  // Releasing makes room.
  a.release(0);
  a.reserve(1, 64);
  EXPECT_EQ(a.pages_held(1), 4);
  expect_consistent(a);
}

TEST(KvPageAllocator, BadArgumentsAreErrors) {
  EXPECT_NE(error_of([] { KvPageAllocator(0, 16, 1, 1); }).find("0 pages"), std::string::npos);
  EXPECT_NE(error_of([] { KvPageAllocator(4, 24, 1, 1); }).find("page size 24 is not a power of two"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvPageAllocator(4, 2048, 1, 1); }).find("page size 2048"), std::string::npos);
  EXPECT_NE(error_of([] { KvPageAllocator(4, 16, 0, 1); }).find("0 sequences"), std::string::npos);
  EXPECT_NE(error_of([] { KvPageAllocator(4, 16, 1, 0); }).find("0 pages per sequence"), std::string::npos);
  EXPECT_NE(error_of([] { KvPageAllocator(int64_t{1} << 40, 16, 1, 1); }).find("page ids are int32"),
            std::string::npos);
  KvPageAllocator a(4, 16, 2, 2);
  EXPECT_NE(error_of([&] { a.reserve(-1, 1); }).find("sequence -1 out of range"), std::string::npos);
  EXPECT_NE(error_of([&] { a.reserve(0, -5); }).find("asks for -5 positions"), std::string::npos);
  EXPECT_NE(error_of([&] { a.truncate(0, -1); }).find("truncating sequence 0 to -1"), std::string::npos);
}

TEST(KvPageAllocator, RandomTrafficNeverSharesAPage) {
  Rng rng(fresh_seed());
  const int page_size = 16, max_seqs = 7, max_pages = 9;
  KvPageAllocator a(40, page_size, max_seqs, max_pages);
  std::vector<int64_t> lengths(max_seqs, 0);
  for (int step = 0; step < 3000; ++step) {
    const int seq = static_cast<int>(rng.below(max_seqs));
    const int op = static_cast<int>(rng.below(4));
    if (op <= 1) {
      const int64_t want = lengths[seq] + static_cast<int64_t>(rng.below(40));
      const int64_t before_free = a.free_pages(), before_held = a.pages_held(seq);
      try {
        a.reserve(seq, want);
        lengths[seq] = std::max(lengths[seq], want);
        ASSERT_GE(a.capacity(seq), want);
      } catch (const Error&) {
        ASSERT_EQ(a.free_pages(), before_free);  // all or nothing
        ASSERT_EQ(a.pages_held(seq), before_held);
        ASSERT_TRUE(want > max_pages * page_size ||
                    (want + page_size - 1) / page_size - before_held > before_free);
      }
    } else if (op == 2) {
      const int64_t keep = static_cast<int64_t>(rng.below(static_cast<uint64_t>(lengths[seq] + 1)));
      a.truncate(seq, keep);
      lengths[seq] = keep;
      ASSERT_EQ(a.pages_held(seq), (keep + page_size - 1) / page_size);
    } else {
      a.release(seq);
      lengths[seq] = 0;
    }
    if (step % 50 == 0) expect_consistent(a);
  }
  expect_consistent(a);
  // Slots of different live sequences never coincide.
  std::set<int64_t> slots;
  for (int s = 0; s < max_seqs; ++s) {
    for (int64_t pos = 0; pos < a.capacity(s); ++pos) ASSERT_TRUE(slots.insert(a.slot(s, pos)).second);
  }
}

TEST(KvPageAllocator, Sizing) {
  EXPECT_EQ(kv_pages_per_sequence(2048, 64), 32);
  EXPECT_EQ(kv_pages_per_sequence(2049, 64), 33);
  EXPECT_EQ(kv_pages_for(2048, 8, 64), 256);
  EXPECT_EQ(kv_pages_for(1, 3, 16), 3);
  // Llama-3.2-1B: 16 layers, 8 kv heads, head_dim 64, bf16: 32 KiB a position, 2 MiB a page of 64.
  EXPECT_EQ(kv_bytes_per_page(16, 8, 64, DType::BF16, 64), 2 * 16 * 8 * 64 * 2 * 64);
  EXPECT_EQ(kv_bytes_per_page(1, 1, 1, DType::F32, 1), 8);
  EXPECT_NE(error_of([] { kv_pages_for(0, 1, 64); }).find("context of 0 positions"), std::string::npos);
  EXPECT_NE(error_of([] { kv_pages_for(16, 0, 64); }).find("batch of 0 sequences"), std::string::npos);
  EXPECT_NE(error_of([] { kv_pages_for(int64_t{1} << 62, int64_t{1} << 40, 1); }).find("overflows 64 bits"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              kv_bytes_per_page(int64_t{1} << 40, 1 << 20, 128, DType::BF16, 64);
            }).find("overflows 64 bits"),
            std::string::npos);
  EXPECT_NE(error_of([] { kv_bytes_per_page(16, 0, 64, DType::BF16, 64); }).find("0 kv heads"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
