// Paged attention, prefill path (any number of query rows per sequence; spec: paged_attention_ref.cpp).
// FlashAttention-2 style, on mma.sync m16n8k16 (bf16/f16 in, f32 accumulators):
//  - a CTA (4 warps) takes 64 rows of one sequence and one kv head; rows are (query, q head of the GQA group)
//    pairs (attention_layout.h: packed_row_*), so the group's heads share every K/V tile, and each warp owns
//    16 rows whose Q fragments stay in registers;
//  - keys are walked in tiles of 64 gathered from the pages (a block-table read per key row) by cp.async
//    into a double-buffered, XOR-swizzled shared-memory ring (the next tile loads while this one computes);
//    tiles wholly above the tile's last position are never loaded, the masking test runs only on tiles that
//    reach past its first position;
//  - S = Q K^T stays in registers, the online softmax (f32, exp2 of log2e-scaled scores, running max per
//    row, row sums of the unrounded probabilities) rescales the output accumulators, and P, rounded to T,
//    is reused in place as the A operand of O += P V (V through ldmatrix.trans). No n x n matrix exists.
// What bounds it: tensor-core issue on long prompts (4 x 64 x 64 x D MMA flops per tile per warp group
// against 2 x 64 x D x 2 bytes of K/V from L2), the serial dependency of the softmax between the two MMA
// phases, and on short or chunked prompts the number of CTAs (ceil(q_len x group / 64) x Hkv x sequences).
#include <cmath>
#include <cstdint>

#include "kernels/attention/attention_device.cuh"
#include "kernels/attention/attention_launch.h"
#include "kernels/attention/attention_layout.h"
#include "kernels/runtime/cuda_utils.h"

namespace qllm::kernels::attention {

namespace {

using qllm::attention::accumulator_col;
using qllm::attention::k_fragment_source;
using qllm::attention::kPrefillWarps;
using qllm::attention::kTileKeys;
using qllm::attention::kTileRows;
using qllm::attention::p_fragment_element;
using qllm::attention::p_fragment_tile;
using qllm::attention::packed_row_head;
using qllm::attention::packed_row_query;
using qllm::attention::q_fragment_source;
using qllm::attention::swizzled_offset;
using qllm::attention::TileCoord;
using qllm::attention::v_fragment_source;

constexpr int kThreads = kPrefillWarps * 32;
constexpr unsigned kFullMask = 0xffffffffu;
static_assert(kTileRows == kPrefillWarps * 16, "each warp owns 16 rows of the tile");
static_assert(kTileKeys == 64, "the softmax code walks 8 n-tiles of 8 keys");

template <int D>
struct PrefillShape {
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  static constexpr int kChunks = D / 8;                  // 16-byte chunks per row
  static constexpr int kTileElems = kTileRows * D;       // one Q, K or V tile (kTileKeys == kTileRows)
  static constexpr int kSmemBytes = 5 * kTileElems * 2;  // Q + two stages of K and V
  static constexpr int kKSteps = D / 16;                 // k16 steps of S = Q K^T
  static constexpr int kDTiles = D / 8;                  // n8 tiles of O
  // log2(e) / sqrt(D): scores go straight to the exp2 domain.
  static constexpr float kScaleLog2 =
      static_cast<float>(1.4426950408889634 * (D == 64 ? 0.125 : 0.08838834764831845));
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) prefill_kernel(const PagedAttentionParams p) {
  using Shape = PrefillShape<D>;
  extern __shared__ __align__(128) uint16_t smem[];
  uint16_t* const s_q = smem;
  uint16_t* const s_k = smem + Shape::kTileElems;      // stages 0, 1
  uint16_t* const s_v = smem + 3 * Shape::kTileElems;  // stages 0, 1

  const int seq = blockIdx.z, kv_head = blockIdx.y;
  const int tile = gridDim.x - 1 - blockIdx.x;  // the tiles with the most keys start first
  const SequenceRows rows = sequence_rows(p, seq);
  const int group = p.num_q_heads / p.num_kv_heads;
  const int rows_total = rows.q_len * group;
  const int row0 = tile * kTileRows;
  if (row0 >= rows_total) return;  // a shorter sequence of the batch

  // Positions: query i sits at first_pos + i (negative only for bad data kv_len < q_len: no keys, zeros).
  const int first_pos = rows.kv_len - rows.q_len;
  const int last_row = min(row0 + kTileRows, rows_total) - 1;
  const int min_pos = first_pos + packed_row_query(row0, group);
  const int max_pos = first_pos + packed_row_query(last_row, group);
  const int key_end = min(rows.kv_len, max_pos + 1);  // the tile needs keys [0, key_end)
  const int num_blocks = key_end > 0 ? (key_end + kTileKeys - 1) / kTileKeys : 0;
  const int page_shift = log2_of_power_of_two(p.page_size);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const auto* q = static_cast<const uint16_t*>(p.q);
  const auto* k_pool = static_cast<const uint16_t*>(p.k_pool);
  const auto* v_pool = static_cast<const uint16_t*>(p.v_pool);

  // The Q tile; rows past the sequence are zero-filled (their results are never stored).
  for (int c = tid; c < kTileRows * Shape::kChunks; c += kThreads) {
    const int r = c / Shape::kChunks, chunk = c % Shape::kChunks;
    const int row = row0 + r;
    const bool valid = row < rows_total;
    const uint16_t* src = q;
    if (valid) {
      const int64_t token = rows.q_begin + packed_row_query(row, group);
      src = q + (token * p.num_q_heads + packed_row_head(row, group, kv_head)) * D + chunk * 8;
    }
    cp_async_16(s_q + swizzled_offset(r, chunk, D), src, valid);
  }
  cp_async_commit();

  // Key tile `block` into `stage`; keys past kv_len (or on a bad page id) are zero-filled, so that masked
  // probabilities (exactly 0) never meet stale data (0 x NaN).
  auto load_kv = [&](int block, int stage) {
    uint16_t* const k_dst = s_k + stage * Shape::kTileElems;
    uint16_t* const v_dst = s_v + stage * Shape::kTileElems;
    for (int c = tid; c < kTileKeys * Shape::kChunks; c += kThreads) {
      const int r = c / Shape::kChunks, chunk = c % Shape::kChunks;
      const int64_t offset = kv_row_offset(p, seq, kv_head, block * kTileKeys + r, rows.kv_len, page_shift);
      const bool valid = offset >= 0;
      const int64_t src = valid ? offset + chunk * 8 : 0;
      const int dst = swizzled_offset(r, chunk, D);
      cp_async_16(k_dst + dst, k_pool + src, valid);
      cp_async_16(v_dst + dst, v_pool + src, valid);
    }
  };

  // This thread's accumulator rows: tile rows row_a (elements 0, 1) and row_a + 8 (elements 2, 3). Rows past
  // the sequence take the last row's position (never stored; a finite max keeps them NaN-free).
  const int row_a = warp * 16 + (lane >> 2);
  int pos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h)
    pos[h] = first_pos + packed_row_query(min(row0 + row_a + 8 * h, last_row), group);

  float o[Shape::kDTiles][4];
#pragma unroll
  for (int j = 0; j < Shape::kDTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  uint32_t qf[Shape::kKSteps][4];

  if (num_blocks > 0) load_kv(0, 0);
  cp_async_commit();
  for (int b = 0; b < num_blocks; ++b) {
    const int stage = b & 1;
    if (b + 1 < num_blocks) {
      load_kv(b + 1,
              stage ^ 1);  // its stage was last read in iteration b - 1, before that iteration's barrier
      cp_async_commit();
      cp_async_wait<1>();  // everything but the tile just issued: Q and tile b
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (b == 0) {
#pragma unroll
      for (int ks = 0; ks < Shape::kKSteps; ++ks) {
        const TileCoord src = q_fragment_source(lane, warp, ks);
        ldmatrix_x4(qf[ks], s_q + swizzled_offset(src.row, src.chunk, D));
      }
    }
    const uint16_t* const k_tile = s_k + stage * Shape::kTileElems;
    const uint16_t* const v_tile = s_v + stage * Shape::kTileElems;

    // S = Q K^T: 16 rows x 64 keys per warp, 8 n-tiles.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kp = 0; kp < 4; ++kp) {
#pragma unroll
      for (int ks = 0; ks < Shape::kKSteps; ++ks) {
        const TileCoord src = k_fragment_source(lane, kp, ks);
        uint32_t kf[4];
        ldmatrix_x4(kf, k_tile + swizzled_offset(src.row, src.chunk, D));
        mma_16816<T>(s[2 * kp], qf[ks], kf[0], kf[1]);
        mma_16816<T>(s[2 * kp + 1], qf[ks], kf[2], kf[3]);
      }
    }

    // Scale to the exp2 domain; mask keys above each row's position (past kv_len is above every position).
    const int key0 = b * kTileKeys;
    const bool needs_mask = key0 + kTileKeys - 1 > min_pos;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float x = s[j][i] * Shape::kScaleLog2;
        if (needs_mask && key0 + 8 * j + accumulator_col(lane, i) > pos[i >> 1]) x = -INFINITY;
        s[j][i] = x;
      }
    }

    // Online softmax of the two rows (a row's 64 scores sit in the 4 lanes of a quad).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float block_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 8; ++j) block_max = fmaxf(block_max, fmaxf(s[j][2 * h], s[j][2 * h + 1]));
      block_max = fmaxf(block_max, __shfl_xor_sync(kFullMask, block_max, 1));
      block_max = fmaxf(block_max, __shfl_xor_sync(kFullMask, block_max, 2));
      const float m_new = fmaxf(m[h], block_max);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;  // a row with no key yet: exp2(-inf) = 0
      const float alpha = exp2f(m[h] - m_use);
      m[h] = m_new;
      l[h] *= alpha;
#pragma unroll
      for (int j = 0; j < Shape::kDTiles; ++j) {
        o[j][2 * h] *= alpha;
        o[j][2 * h + 1] *= alpha;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float prob = exp2f(s[j][2 * h + e] - m_use);
          s[j][2 * h + e] = prob;
          l[h] += prob;
        }
      }
    }

    // O += P V: the accumulators of n-tiles 2kk, 2kk+1 are the A fragment of k16 step kk.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t a[4];
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        const float(&acc)[4] = s[2 * kk + p_fragment_tile(reg)];
        a[reg] = pack2<T>(acc[p_fragment_element(reg, 0)], acc[p_fragment_element(reg, 1)]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        const TileCoord src = v_fragment_source(lane, kk, dp);
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, v_tile + swizzled_offset(src.row, src.chunk, D));
        mma_16816<T>(o[2 * dp], a, vf[0], vf[1]);
        mma_16816<T>(o[2 * dp + 1], a, vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done with this stage before iteration b + 1 refills it
  }
  cp_async_wait<0>();  // nothing may land in shared memory after the CTA exits

  // Normalise and store: row sums over the quad, then two T values (4 bytes) per accumulator pair.
  auto* out = static_cast<uint16_t*>(p.out);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(kFullMask, l[h], 1);
    l[h] += __shfl_xor_sync(kFullMask, l[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + row_a + 8 * h;
    if (row >= rows_total) continue;
    const float inv = l[h] > 0.f ? 1.f / l[h] : 0.f;
    const int64_t token = rows.q_begin + packed_row_query(row, group);
    uint16_t* dst = out + (token * p.num_q_heads + packed_row_head(row, group, kv_head)) * D + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < Shape::kDTiles; ++j) {
      *reinterpret_cast<uint32_t*>(dst + 8 * j) = pack2<T>(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);
    }
  }
}

template <typename T, int D>
void launch_prefill_typed(const PagedAttentionParams& p, cudaStream_t stream) {
  const int64_t group = p.num_q_heads / p.num_kv_heads;
  const int64_t tiles = (p.max_q_len * group + kTileRows - 1) / kTileRows;
  if (tiles == 0) return;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(p.num_kv_heads),
                  static_cast<unsigned>(p.num_seqs));
  prefill_kernel<T, D><<<grid, kThreads, PrefillShape<D>::kSmemBytes, stream>>>(p);
}

template <int D>
void allow_prefill_shared_memory() {
  QLLM_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<Bf16, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       PrefillShape<D>::kSmemBytes));
  QLLM_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<F16, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       PrefillShape<D>::kSmemBytes));
}

}  // namespace

int prefill_shared_bytes(int head_dim) {
  return head_dim == 64 ? PrefillShape<64>::kSmemBytes : PrefillShape<128>::kSmemBytes;
}

void configure_prefill_kernels() {
  allow_prefill_shared_memory<64>();
  allow_prefill_shared_memory<128>();
}

void launch_prefill(const PagedAttentionParams& p, cudaStream_t stream) {
  const bool bf16 = p.dtype == DType::BF16;
  if (p.head_dim == 64) {
    bf16 ? launch_prefill_typed<Bf16, 64>(p, stream) : launch_prefill_typed<F16, 64>(p, stream);
  } else {
    bf16 ? launch_prefill_typed<Bf16, 128>(p, stream) : launch_prefill_typed<F16, 128>(p, stream);
  }
}

}  // namespace qllm::kernels::attention
