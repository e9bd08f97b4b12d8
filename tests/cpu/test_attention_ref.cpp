// The attention ops on the CPU: (1) the index math of attention_layout.h that the CUDA kernels use, checked
// against an emulation of ldmatrix.x4 (plain and .trans) and mma.sync m16n8k16 written from the PTX ISA's
// fragment tables ("Matrix fragments for mma.m16n8k16", "ldmatrix"): each fragment holds the elements the
// tables name, a warp's S = Q K^T and O = P V through the emulated fragments equal the plain products, and
// every ldmatrix phase is free of shared-memory bank conflicts; the decode split of the key range;
// (2) the references: paged attention vs a plain dense softmax attention in double (GQA ratios 1, 3, 4,
// scrambled page orders, prefixes in the cache, batches of different lengths), rope_kv vs a direct rotation;
// (3) the validation errors.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <set>

#include "kernels/attention/attention_layout.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/attention/rope_kv.h"
#include "tests/support/paged_batch.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using namespace qllm::attention;  // NOLINT: the layout functions under test
using testing::error_of;
using testing::fresh_seed;

// ---- An emulation of the warp-level instructions, from the PTX ISA tables ----

// A shared-memory tile of `rows` x `head_dim` elements in the kernels' swizzled layout; element (r, d) holds
// a value that names it.
struct Tile {
  int rows, head_dim;
  std::vector<float> smem;
  Tile(int rows_, int head_dim_)
      : rows(rows_), head_dim(head_dim_), smem(static_cast<size_t>(rows_ * head_dim_), NAN) {
    for (int r = 0; r < rows; ++r) {
      for (int d = 0; d < head_dim; ++d)
        smem[static_cast<size_t>(swizzled_offset(r, d / 8, head_dim) + d % 8)] = value(r, d);
    }
  }
  static float value(int r, int d) { return static_cast<float>(r * 1000 + d); }
};

// A register of a 16-bit fragment: two elements, the lower one first.
using Reg = std::array<float, 2>;
using Regs = std::array<std::array<Reg, 4>, 32>;  // [lane][register]

// ldmatrix.sync.aligned.m8n8.x4(.trans).b16: lane 8j + r names row r of matrix j (`row_offset` of it, in
// elements). Without .trans lane i receives row i / 4, columns 2 (i % 4) and 2 (i % 4) + 1 of each matrix;
// with .trans rows 2 (i % 4) and 2 (i % 4) + 1 of column i / 4.
Regs ldmatrix_x4(const std::vector<float>& smem, const std::array<int, 32>& row_offset, bool trans) {
  Regs regs{};
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < 4; ++j) {
      for (int e = 0; e < 2; ++e) {
        const int offset = trans ? row_offset[static_cast<size_t>(8 * j + 2 * (lane % 4) + e)] + lane / 4
                                 : row_offset[static_cast<size_t>(8 * j + lane / 4)] + 2 * (lane % 4) + e;
        regs[static_cast<size_t>(lane)][static_cast<size_t>(j)][static_cast<size_t>(e)] =
            smem[static_cast<size_t>(offset)];
      }
    }
  }
  return regs;
}

// mma.m16n8k16 fragments (g = lane / 4, t = lane % 4): A register i, element e is (row g + 8 (i % 2), column
// 2t + 8 (i / 2) + e); B register i, element e is (row 2t + 8i + e, column g); C element i is (row g + 8 (i / 2),
// column 2t + i % 2).
struct Coord {
  int row, col;
};
Coord a_element(int lane, int reg, int e) {
  return {lane / 4 + 8 * (reg % 2), 2 * (lane % 4) + 8 * (reg / 2) + e};
}
Coord b_element(int lane, int reg, int e) {
  return {2 * (lane % 4) + 8 * reg + e, lane / 4};
}
Coord c_element(int lane, int i) {
  return {lane / 4 + 8 * (i / 2), 2 * (lane % 4) + i % 2};
}

// D (16x8, per lane 4 values) += A (16x16) B (16x8), the matrices gathered from the lanes' fragments.
void mma_16816(std::array<std::array<float, 4>, 32>& d, const std::array<std::array<Reg, 4>, 32>& a,
               const std::array<std::array<Reg, 2>, 32>& b) {
  float A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg) {
      for (int e = 0; e < 2; ++e) {
        const Coord c = a_element(lane, reg, e);
        A[c.row][c.col] = a[static_cast<size_t>(lane)][static_cast<size_t>(reg)][static_cast<size_t>(e)];
        if (reg < 2) {
          const Coord cb = b_element(lane, reg, e);
          B[cb.row][cb.col] = b[static_cast<size_t>(lane)][static_cast<size_t>(reg)][static_cast<size_t>(e)];
        }
      }
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const Coord c = c_element(lane, i);
      double sum = 0;
      for (int k = 0; k < 16; ++k) sum += static_cast<double>(A[c.row][k]) * B[k][c.col];
      d[static_cast<size_t>(lane)][static_cast<size_t>(i)] += static_cast<float>(sum);
    }
  }
}

template <typename Source>
std::array<int, 32> lane_offsets(int head_dim, Source source) {
  std::array<int, 32> offsets{};
  for (int lane = 0; lane < 32; ++lane) {
    const TileCoord c = source(lane);
    offsets[static_cast<size_t>(lane)] = swizzled_offset(c.row, c.chunk, head_dim);
  }
  return offsets;
}

// The 8 lanes of each ldmatrix phase read 16-byte rows in 8 different 16-byte bank groups (no conflicts).
void expect_conflict_free(const std::array<int, 32>& offsets) {
  for (int j = 0; j < 4; ++j) {
    std::set<int> groups;
    for (int r = 0; r < 8; ++r) groups.insert((offsets[static_cast<size_t>(8 * j + r)] * 2 / 16) % 8);
    EXPECT_EQ(groups.size(), 8u) << "matrix " << j;
  }
}

class Layout : public ::testing::TestWithParam<int> {};  // head_dim

TEST_P(Layout, SwizzleIsABijectionPerRow) {
  const int D = GetParam();
  std::set<int> seen;
  for (int r = 0; r < kTileRows; ++r) {
    for (int chunk = 0; chunk < D / 8; ++chunk) {
      const int offset = swizzled_offset(r, chunk, D);
      EXPECT_EQ(offset % 8, 0);
      EXPECT_EQ(offset / D, r) << "chunk " << chunk << " leaves row " << r;
      EXPECT_TRUE(seen.insert(offset).second);
    }
  }
}

TEST_P(Layout, QFragmentsAreTheARegisters) {
  const int D = GetParam();
  const Tile q(kTileRows, D);
  for (int warp = 0; warp < kPrefillWarps; ++warp) {
    for (int ks = 0; ks < D / 16; ++ks) {
      const auto offsets = lane_offsets(D, [&](int lane) { return q_fragment_source(lane, warp, ks); });
      expect_conflict_free(offsets);
      const Regs regs = ldmatrix_x4(q.smem, offsets, false);
      for (int lane = 0; lane < 32; ++lane) {
        for (int reg = 0; reg < 4; ++reg) {
          for (int e = 0; e < 2; ++e) {
            const Coord c = a_element(lane, reg, e);
            ASSERT_EQ(regs[lane][reg][e], Tile::value(warp * 16 + c.row, ks * 16 + c.col))
                << "warp " << warp << " k step " << ks << " lane " << lane << " a" << reg;
          }
        }
      }
    }
  }
}

TEST_P(Layout, KFragmentsAreTheBRegistersOfTwoKeyTiles) {
  const int D = GetParam();
  const Tile k(kTileKeys, D);
  for (int kp = 0; kp < kTileKeys / 16; ++kp) {
    for (int ks = 0; ks < D / 16; ++ks) {
      const auto offsets = lane_offsets(D, [&](int lane) { return k_fragment_source(lane, kp, ks); });
      expect_conflict_free(offsets);
      const Regs regs = ldmatrix_x4(k.smem, offsets, false);
      for (int lane = 0; lane < 32; ++lane) {
        for (int reg = 0; reg < 4; ++reg) {  // b0, b1 of key tile 2kp, then of 2kp + 1
          for (int e = 0; e < 2; ++e) {
            const Coord c =
                b_element(lane, reg % 2, e);  // row = d within the k step, col = key within the tile
            ASSERT_EQ(regs[lane][reg][e], Tile::value(kp * 16 + (reg / 2) * 8 + c.col, ks * 16 + c.row))
                << "key pair " << kp << " k step " << ks << " lane " << lane << " register " << reg;
          }
        }
      }
    }
  }
}

TEST_P(Layout, VFragmentsAreTheTransposedBRegistersOfTwoDTiles) {
  const int D = GetParam();
  const Tile v(kTileKeys, D);
  for (int kk = 0; kk < kTileKeys / 16; ++kk) {
    for (int dp = 0; dp < D / 16; ++dp) {
      const auto offsets = lane_offsets(D, [&](int lane) { return v_fragment_source(lane, kk, dp); });
      expect_conflict_free(offsets);
      const Regs regs = ldmatrix_x4(v.smem, offsets, true);
      for (int lane = 0; lane < 32; ++lane) {
        for (int reg = 0; reg < 4; ++reg) {  // b0, b1 of d tile 2dp, then of 2dp + 1
          for (int e = 0; e < 2; ++e) {
            const Coord c =
                b_element(lane, reg % 2, e);  // row = key within the k step, col = d within the tile
            ASSERT_EQ(regs[lane][reg][e], Tile::value(kk * 16 + c.row, (2 * dp + reg / 2) * 8 + c.col))
                << "key step " << kk << " d pair " << dp << " lane " << lane << " register " << reg;
          }
        }
      }
    }
  }
}

TEST(AttentionLayout, AccumulatorCoordinatesCoverTheTileOnce) {
  std::set<std::pair<int, int>> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(accumulator_row(lane, i), c_element(lane, i).row);
      EXPECT_EQ(accumulator_col(lane, i), c_element(lane, i).col);
      seen.insert({accumulator_row(lane, i), accumulator_col(lane, i)});
    }
  }
  EXPECT_EQ(seen.size(), 16u * 8u);
}

// P, held as the S accumulators of two key tiles, reused as the A operand of the next k16 step: the register
// a lane builds from its accumulators holds the probabilities the A table asks for.
TEST(AttentionLayout, AccumulatorsOfTwoKeyTilesAreTheAOperand) {
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg) {
      for (int e = 0; e < 2; ++e) {
        const int i = p_fragment_element(reg, e);
        const Coord held = {accumulator_row(lane, i), 8 * p_fragment_tile(reg) + accumulator_col(lane, i)};
        const Coord wanted = a_element(lane, reg, e);
        EXPECT_EQ(held.row, wanted.row) << "lane " << lane << " a" << reg << " element " << e;
        EXPECT_EQ(held.col, wanted.col) << "lane " << lane << " a" << reg << " element " << e;
      }
    }
  }
}

// One warp's 16 rows of S = Q K^T over a 64-key tile and O = S V, composed exactly as the prefill kernel
// does (ldmatrix sources, mma calls, accumulator reuse), equal the plain products.
TEST_P(Layout, WarpProductsThroughTheFragmentsMatchPlainProducts) {
  const int D = GetParam();
  Rng rng(fresh_seed());
  auto random_tile = [&](int rows) {
    std::vector<float> dense(static_cast<size_t>(rows * D)), smem(dense.size());
    for (float& x : dense)
      x = static_cast<float>(static_cast<int>(rng.below(9)) - 4);  // small integers: exact
    for (int r = 0; r < rows; ++r) {
      for (int d = 0; d < D; ++d)
        smem[static_cast<size_t>(swizzled_offset(r, d / 8, D) + d % 8)] =
            dense[static_cast<size_t>(r * D + d)];
    }
    return std::pair(dense, smem);
  };
  const auto [q, q_smem] = random_tile(kTileRows);
  const auto [k, k_smem] = random_tile(kTileKeys);
  const auto [v, v_smem] = random_tile(kTileKeys);
  const int warp = static_cast<int>(rng.below(kPrefillWarps));

  using Acc = std::array<std::array<float, 4>, 32>;
  std::vector<Acc> s(8, Acc{});
  for (int kp = 0; kp < 4; ++kp) {
    for (int ks = 0; ks < D / 16; ++ks) {
      const Regs qf =
          ldmatrix_x4(q_smem, lane_offsets(D, [&](int l) { return q_fragment_source(l, warp, ks); }), false);
      const Regs kf =
          ldmatrix_x4(k_smem, lane_offsets(D, [&](int l) { return k_fragment_source(l, kp, ks); }), false);
      std::array<std::array<Reg, 2>, 32> b0{}, b1{};
      for (int lane = 0; lane < 32; ++lane) {
        b0[lane] = {kf[lane][0], kf[lane][1]};
        b1[lane] = {kf[lane][2], kf[lane][3]};
      }
      mma_16816(s[static_cast<size_t>(2 * kp)], qf, b0);
      mma_16816(s[static_cast<size_t>(2 * kp + 1)], qf, b1);
    }
  }
  std::vector<Acc> o(static_cast<size_t>(D / 8), Acc{});
  for (int kk = 0; kk < 4; ++kk) {
    std::array<std::array<Reg, 4>, 32> a{};
    for (int lane = 0; lane < 32; ++lane) {
      for (int reg = 0; reg < 4; ++reg) {
        const auto& acc = s[static_cast<size_t>(2 * kk + p_fragment_tile(reg))][static_cast<size_t>(lane)];
        a[lane][reg] = {acc[static_cast<size_t>(p_fragment_element(reg, 0))],
                        acc[static_cast<size_t>(p_fragment_element(reg, 1))]};
      }
    }
    for (int dp = 0; dp < D / 16; ++dp) {
      const Regs vf =
          ldmatrix_x4(v_smem, lane_offsets(D, [&](int l) { return v_fragment_source(l, kk, dp); }), true);
      std::array<std::array<Reg, 2>, 32> b0{}, b1{};
      for (int lane = 0; lane < 32; ++lane) {
        b0[lane] = {vf[lane][0], vf[lane][1]};
        b1[lane] = {vf[lane][2], vf[lane][3]};
      }
      mma_16816(o[static_cast<size_t>(2 * dp)], a, b0);
      mma_16816(o[static_cast<size_t>(2 * dp + 1)], a, b1);
    }
  }

  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const int row = warp * 16 + accumulator_row(lane, i);
      std::vector<double> s_row(kTileKeys);
      for (int key = 0; key < kTileKeys; ++key) {
        for (int d = 0; d < D; ++d)
          s_row[static_cast<size_t>(key)] +=
              q[static_cast<size_t>(row * D + d)] * k[static_cast<size_t>(key * D + d)];
      }
      for (int j = 0; j < 8; ++j) {
        ASSERT_EQ(s[static_cast<size_t>(j)][lane][i],
                  s_row[static_cast<size_t>(8 * j + accumulator_col(lane, i))])
            << "S lane " << lane << " n-tile " << j << " element " << i;
      }
      for (int j = 0; j < D / 8; ++j) {
        const int d = 8 * j + accumulator_col(lane, i);
        double expected = 0;
        for (int key = 0; key < kTileKeys; ++key)
          expected += s_row[static_cast<size_t>(key)] * v[static_cast<size_t>(key * D + d)];
        ASSERT_EQ(o[static_cast<size_t>(j)][lane][i], expected)
            << "O lane " << lane << " d-tile " << j << " element " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, Layout, ::testing::Values(64, 128));

TEST(AttentionLayout, GqaRowPackingIsABijection) {
  for (int group : {1, 3, 4, 8}) {
    const int q_len = 7, kv_head = 2;
    std::set<std::pair<int, int>> seen;
    for (int row = 0; row < q_len * group; ++row) {
      const int query = packed_row_query(row, group), head = packed_row_head(row, group, kv_head);
      EXPECT_GE(query, 0);
      EXPECT_LT(query, q_len);
      EXPECT_EQ(head / group, kv_head) << "row " << row << " left its kv head's group";
      seen.insert({query, head});
      if (row > 0) {
        EXPECT_GE(query, packed_row_query(row - 1, group)) << "positions grow down the tile";
      }
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(q_len * group));
  }
}

TEST(AttentionLayout, DecodeSplitsCoverTheKeysOnce) {
  for (int64_t kv_len : {0, 1, 7, 63, 64, 65, 300, 2000, 4097}) {
    for (int splits : {1, 2, 3, 7, 16, 64}) {
      const int used = decode_splits_used(kv_len, splits);
      EXPECT_LE(used, splits);
      int64_t next = 0;
      for (int split = 0; split < splits; ++split) {
        const KeyRange r = decode_split_keys(kv_len, splits, split);
        if (split < used) {
          EXPECT_EQ(r.begin, next) << "kv_len " << kv_len << " splits " << splits << " split " << split;
          EXPECT_GT(r.end, r.begin);
          EXPECT_EQ(r.begin % kDecodeGranule, 0);
          next = r.end;
        } else {
          EXPECT_EQ(r.begin, r.end) << "split " << split << " past the used " << used;
        }
      }
      EXPECT_EQ(next, kv_len) << "kv_len " << kv_len << " splits " << splits;
    }
  }
}

TEST(AttentionPlanning, DecodeHeadsAndSplits) {
  EXPECT_EQ(decode_heads_per_cta(32, 32), 1);
  EXPECT_EQ(decode_heads_per_cta(8, 4), 2);
  EXPECT_EQ(decode_heads_per_cta(9, 3), 4);  // SmolLM2: group 3 in a CTA of 4 heads
  EXPECT_EQ(decode_heads_per_cta(32, 8), 4);
  EXPECT_EQ(decode_heads_per_cta(40, 8), 8);
  EXPECT_EQ(decode_heads_per_cta(32, 2), 8);
  EXPECT_EQ(decode_head_groups(9, 3), 1);
  EXPECT_EQ(decode_head_groups(32, 2), 2);  // group 16: two CTAs of 8
  EXPECT_EQ(decode_splits(4, 32, 8, 64, 132), 1);
  int previous = 1;
  for (int64_t len = 1; len <= 20000; len += 97) {
    const int splits = decode_splits(1, 9, 3, len, 132);
    EXPECT_GE(splits, 1);
    EXPECT_LE(splits, (len + 63) / 64) << "len " << len;
    EXPECT_GE(splits, std::min<int64_t>((len + 1023) / 1024, (len + 63) / 64)) << "len " << len;
    EXPECT_GE(splits, previous) << "the workspace bound assumes splits grow with max_kv_len";
    previous = splits;
  }
  EXPECT_EQ(decode_splits(256, 32, 8, 2048, 132), 2);  // many CTAs already: only the per-1024 floor
}

// ---- The paged reference ----

struct RefCase {
  int num_q_heads, num_kv_heads, head_dim, page_size;
  std::vector<std::pair<int64_t, int64_t>> seqs;
};

std::string describe(const RefCase& c) {
  std::string s = std::to_string(c.num_q_heads) + "/" + std::to_string(c.num_kv_heads) + " heads, D " +
                  std::to_string(c.head_dim) + ", pages of " + std::to_string(c.page_size) + ", seqs";
  for (const auto& [q, kv] : c.seqs) s += " (" + std::to_string(q) + "," + std::to_string(kv) + ")";
  return s;
}

TEST(PagedAttentionReference, MatchesDenseAttentionInF32) {
  const std::vector<RefCase> cases = {
      {4, 4, 8, 4, {{5, 5}}},                           // ratio 1, prefill
      {6, 2, 16, 4, {{1, 9}, {3, 3}, {4, 13}}},         // ratio 3: decode, prefill, cached prefix
      {8, 2, 8, 2, {{7, 20}, {1, 1}, {0, 6}, {2, 2}}},  // ratio 4, a padding sequence
      {3, 1, 4, 8, {{9, 9}, {2, 31}}},                  // ratio 3, one kv head
      {4, 1, 64, 16, {{3, 40}, {16, 16}}},              // ratio 4, D 64
  };
  for (const RefCase& c : cases) {
    SCOPED_TRACE(describe(c));
    testing::PagedBatchSpec spec{c.num_q_heads, c.num_kv_heads, c.head_dim,  c.page_size,
                                 DType::F32,    c.seqs,         fresh_seed()};
    spec.q_scale = 2.0;  // scores of a few units: a softmax far from uniform
    const testing::PagedBatch b = testing::make_paged_batch(spec);
    std::vector<uint8_t> out(b.q_bytes.size(), 0xff);  // NaN
    paged_attention_reference(b.host_params(out));
    const std::vector<float> got = testing::decode(out, DType::F32);
    const std::vector<double> want = testing::dense_attention(b);
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::isnan(want[i])) {
        ASSERT_TRUE(std::isnan(got[i])) << "element " << i << " of a padding row was written";
      } else {
        ASSERT_NEAR(got[i], want[i], 1e-6 * std::max(1.0, std::abs(want[i]))) << "element " << i;
      }
    }
  }
}

// 16-bit storage: the reference reads the stored values and rounds the output to T (through f32: within half
// an ulp of T of the exact result, plus the f32 rounding).
TEST(PagedAttentionReference, Bf16AndF16RoundTheOutputOnce) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    const testing::PagedBatch b =
        testing::make_paged_batch({9, 3, 64, 16, dtype, {{1, 70}, {5, 21}}, fresh_seed()});
    std::vector<uint8_t> out(b.q_bytes.size(), 0xff);
    paged_attention_reference(b.host_params(out));
    const std::vector<float> got = testing::decode(out, dtype);
    const std::vector<double> want = testing::dense_attention(b);
    const double unit = dtype == DType::BF16 ? 0x1p-8 : 0x1p-11;  // half an ulp, relative
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_LE(std::abs(got[i] - want[i]), (unit + 1e-6) * std::abs(want[i]) + 1e-7)
          << dtype_name(dtype) << " element " << i;
    }
  }
}

TEST(PagedAttentionReference, PageOrderDoesNotMatter) {
  // The same keys in two different page orders (and page sizes) give the same output.
  Rng rng(fresh_seed());
  const int64_t q_len = 4, kv_len = 37;
  const int Hq = 4, Hkv = 2, D = 8;
  auto q = testing::random_normal<float>(static_cast<size_t>(q_len * Hq * D), rng);
  auto k = testing::random_normal<float>(static_cast<size_t>(kv_len * Hkv * D), rng);
  auto v = testing::random_normal<float>(static_cast<size_t>(kv_len * Hkv * D), rng);
  const auto a = attention_contiguous_reference(q, k, v, q_len, kv_len, Hq, Hkv, D, 4);
  const auto b = attention_contiguous_reference(q, k, v, q_len, kv_len, Hq, Hkv, D, 16);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "element " << i;
  // The last query sees every key: changing the last key's value changes it; the first query does not.
  v[static_cast<size_t>((kv_len - 1) * Hkv * D)] += 10.f;
  const auto c = attention_contiguous_reference(q, k, v, q_len, kv_len, Hq, Hkv, D, 4);
  EXPECT_EQ(c[0], a[0]);
  EXPECT_NE(c[static_cast<size_t>((q_len - 1) * Hq * D)], a[static_cast<size_t>((q_len - 1) * Hq * D)]);
}

TEST(PagedAttentionReference, RefusesBadBatchDescriptions) {
  const testing::PagedBatch b =
      testing::make_paged_batch({4, 2, 8, 4, DType::F32, {{2, 6}, {1, 9}}, fresh_seed()});
  std::vector<uint8_t> out(b.q_bytes.size());
  auto run = [&](auto edit) {
    testing::PagedBatch copy = b;
    PagedAttentionParams p = copy.host_params(out);
    edit(copy, p);
    return error_of([&] { paged_attention_reference(p); });
  };
  EXPECT_NE(run([](testing::PagedBatch& c, PagedAttentionParams&) {
              c.seq_kv_len[0] = 1;
            }).find("sequence 0 has 1 keys for 2 query rows"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch&, PagedAttentionParams& p) {
              p.max_q_len = 1;
            }).find("sequence 0 has 2 query rows, above max_q_len 1"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch& c, PagedAttentionParams&) {
              c.block_table[c.max_pages_per_seq + 1] = 99;
            }).find("sequence 1 position 4 is in page 99"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch& c, PagedAttentionParams&) {
              c.seq_q_start[1] = 4;
            }).find("sequence 0 has query rows [0, 4), outside [0, 3)"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch&, PagedAttentionParams& p) {
              p.max_kv_len = 100;
            }).find("max_kv_len 100 outside"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch&, PagedAttentionParams& p) {
              p.out = const_cast<void*>(p.q);
            }).find("out overlaps q"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch&, PagedAttentionParams& p) {
              p.num_kv_heads = 3;
            }).find("4 q heads are not a multiple of 3 kv heads"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch&, PagedAttentionParams& p) {
              p.block_table = nullptr;
            }).find("a null buffer"),
            std::string::npos);
  EXPECT_NE(run([](testing::PagedBatch&, PagedAttentionParams& p) {
              p.num_pages = int64_t{1} << 40;
            }).find("page ids are int32"),
            std::string::npos);
}

TEST(PagedAttentionReference, CudaTargetLimits) {
  const testing::PagedBatch b = testing::make_paged_batch({4, 2, 8, 4, DType::F32, {{2, 6}}, fresh_seed()});
  std::vector<uint8_t> out(b.q_bytes.size());
  PagedAttentionParams p = b.host_params(out);
  EXPECT_NE(
      error_of([&] { validate_paged_attention(p, KernelTarget::Cuda); }).find("head_dim 8 (the CUDA kernels"),
      std::string::npos);
  p.head_dim = 64;
  p.num_tokens = 0;  // shapes only: no buffer is read
  p.max_q_len = 0;
  EXPECT_NE(error_of([&] { validate_paged_attention(p, KernelTarget::Cuda); }).find("dtype f32"),
            std::string::npos);
  p.dtype = DType::BF16;
  p.page_size = 24;
  p.max_kv_len = 0;
  EXPECT_NE(error_of([&] { validate_paged_attention(p, KernelTarget::Cuda); }).find("page size 24"),
            std::string::npos);
}

// ---- rope_kv ----

struct RopeFixture {
  int Hq = 6, Hkv = 2, D = 16, page_size = 4;
  int64_t tokens = 5, num_pages = 4;
  DType dtype = DType::F32;
  std::vector<float> qkv, inv_freq;
  std::vector<int32_t> positions = {0, 1, 17, 1000, 131071};
  std::vector<int32_t> slots = {5, -1, 0, 15, 6};
  std::vector<uint8_t> qkv_bytes, q_out, k_pool, v_pool;

  explicit RopeFixture(uint64_t seed, DType dtype_ = DType::F32) : dtype(dtype_) {
    Rng rng(seed);
    qkv.resize(static_cast<size_t>(tokens * (Hq + 2 * Hkv) * D));
    for (float& x : qkv) x = testing::round_to(static_cast<float>(rng.normal()), dtype);
    for (int j = 0; j < D / 2; ++j) inv_freq.push_back(static_cast<float>(std::pow(10000.0, -2.0 * j / D)));
    qkv_bytes = testing::encode(qkv, dtype);
    q_out.assign(static_cast<size_t>(tokens * Hq * D) * dtype_size(dtype), 0xff);
    k_pool.assign(static_cast<size_t>(num_pages * Hkv * page_size * D) * dtype_size(dtype), 0xff);
    v_pool = k_pool;
  }
  RopeKvParams params() {
    RopeKvParams p;
    p.qkv = qkv_bytes.data();
    p.q_out = q_out.data();
    p.k_pool = k_pool.data();
    p.v_pool = v_pool.data();
    p.inv_freq = inv_freq.data();
    p.positions = positions.data();
    p.slot_mapping = slots.data();
    p.dtype = dtype;
    p.num_tokens = tokens;
    p.num_q_heads = Hq;
    p.num_kv_heads = Hkv;
    p.head_dim = D;
    p.page_size = page_size;
    p.num_pages = num_pages;
    return p;
  }
  // The rotated head h of token t (q heads, then k heads), in double from the f32 angle.
  std::vector<double> rotated(int64_t t, int64_t h) const {
    std::vector<double> y(static_cast<size_t>(D));
    const float* x = qkv.data() + (t * (Hq + 2 * Hkv) + h) * D;
    for (int j = 0; j < D / 2; ++j) {
      const double angle =
          static_cast<float>(positions[static_cast<size_t>(t)]) * inv_freq[static_cast<size_t>(j)];
      y[static_cast<size_t>(j)] = x[j] * std::cos(angle) - x[j + D / 2] * std::sin(angle);
      y[static_cast<size_t>(j + D / 2)] = x[j + D / 2] * std::cos(angle) + x[j] * std::sin(angle);
    }
    return y;
  }
};

TEST(RopeKvReference, RotatesQAndKAndStoresKvAtTheSlots) {
  RopeFixture f(fresh_seed());
  const std::vector<uint8_t> untouched = f.k_pool;
  rope_kv_reference(f.params());
  const auto q_out = testing::decode(f.q_out, f.dtype);
  const auto k_pool = testing::decode(f.k_pool, f.dtype), v_pool = testing::decode(f.v_pool, f.dtype);
  std::vector<bool> written(static_cast<size_t>(f.num_pages * f.Hkv * f.page_size), false);
  for (int64_t t = 0; t < f.tokens; ++t) {
    for (int64_t h = 0; h < f.Hq; ++h) {
      const auto y = f.rotated(t, h);
      for (int d = 0; d < f.D; ++d) {
        ASSERT_NEAR(q_out[static_cast<size_t>((t * f.Hq + h) * f.D + d)], y[static_cast<size_t>(d)], 1e-5)
            << "token " << t << " q head " << h << " d " << d;
      }
    }
    const int64_t slot = f.slots[static_cast<size_t>(t)];
    if (slot < 0) continue;
    const int64_t page = slot / f.page_size, offset = slot % f.page_size;
    for (int64_t h = 0; h < f.Hkv; ++h) {
      const int64_t base = ((page * f.Hkv + h) * f.page_size + offset) * f.D;
      written[static_cast<size_t>((page * f.Hkv + h) * f.page_size + offset)] = true;
      const auto y = f.rotated(t, f.Hq + h);
      for (int d = 0; d < f.D; ++d) {
        ASSERT_NEAR(k_pool[static_cast<size_t>(base + d)], y[static_cast<size_t>(d)], 1e-5)
            << "token " << t << " k";
        ASSERT_EQ(v_pool[static_cast<size_t>(base + d)],
                  f.qkv[static_cast<size_t>((t * (f.Hq + 2 * f.Hkv) + f.Hq + f.Hkv + h) * f.D + d)])
            << "token " << t << " v";
      }
    }
  }
  // Slot -1 and the slots nobody named are untouched; position 0 is the identity.
  for (size_t row = 0; row < written.size(); ++row) {
    if (written[row]) continue;
    const size_t bytes = static_cast<size_t>(f.D) * 4;
    ASSERT_EQ(std::memcmp(f.k_pool.data() + row * bytes, untouched.data() + row * bytes, bytes), 0)
        << "row " << row;
    ASSERT_EQ(std::memcmp(f.v_pool.data() + row * bytes, untouched.data() + row * bytes, bytes), 0)
        << "row " << row;
  }
  for (int d = 0; d < f.D; ++d) ASSERT_EQ(q_out[static_cast<size_t>(d)], f.qkv[static_cast<size_t>(d)]);
}

TEST(RopeKvReference, Bf16OutputIsTheRoundedRotation) {
  RopeFixture f(fresh_seed(), DType::BF16);
  rope_kv_reference(f.params());
  const auto q_out = testing::decode(f.q_out, f.dtype);
  for (int64_t t = 0; t < f.tokens; ++t) {
    for (int64_t h = 0; h < f.Hq; ++h) {
      const auto y = f.rotated(t, h);
      for (int d = 0; d < f.D; ++d) {
        const double want = y[static_cast<size_t>(d)];
        ASSERT_LE(std::abs(q_out[static_cast<size_t>((t * f.Hq + h) * f.D + d)] - want),
                  0x1p-8 * std::abs(want) + 1e-6)
            << "token " << t << " head " << h << " d " << d;
      }
    }
  }
}

TEST(RopeKvReference, RefusesBadParams) {
  RopeFixture f(fresh_seed());
  f.slots[2] = 16;  // 4 pages of 4 slots
  EXPECT_NE(error_of([&] {
              rope_kv_reference(f.params());
            }).find("token 2 has slot 16, outside the pool's 16 slots"),
            std::string::npos);
  RopeKvParams p = f.params();
  p.q_out = const_cast<void*>(p.qkv);
  EXPECT_NE(error_of([&] { rope_kv_reference(p); }).find("q_out overlaps qkv"), std::string::npos);
  p = f.params();
  p.head_dim = 15;
  EXPECT_NE(error_of([&] { rope_kv_reference(p); }).find("head_dim 15"), std::string::npos);
  p = f.params();
  EXPECT_NE(error_of([&] { validate_rope_kv(p, KernelTarget::Cuda); }).find("head_dim 16 (the CUDA kernel"),
            std::string::npos);
  p.head_dim = 64;
  p.num_tokens = 0;
  EXPECT_NE(error_of([&] { validate_rope_kv(p, KernelTarget::Cuda); }).find("dtype f32"), std::string::npos);
  p = f.params();
  p.slot_mapping = nullptr;
  EXPECT_NE(error_of([&] { rope_kv_reference(p); }).find("a null buffer"), std::string::npos);
}

}  // namespace
}  // namespace qllm
