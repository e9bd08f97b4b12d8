// Host side of the W4A16 GEMM: validation, kernel choice, split-K planning, workspace.
#include "kernels/gemm/w4a16.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <utility>

#include "kernels/gemm/pad_copy.h"
#include "kernels/gemm/plan_rules.h"
#include "kernels/gemm/skinny_plan.h"
#include "kernels/gemm/w4a16_launch.h"
#include "kernels/runtime/tma.h"
#include "qllm/error.h"

namespace qllm {

namespace {

using kernels::W4A16PlanRules;

const W4A16PlanRules& plan_rules() {
  return sm90a_kernels_available() ? kernels::kW4A16RulesSm90 : kernels::kW4A16RulesPreSm90;
}

// The wgmma kernel's token tile for M tokens: 64 up to 64 tokens, then whichever of 128 and 256 costs less
// over the tiles M needs.
int wgmma_tokens_per_cta(const W4A16PlanRules& r, int64_t m) {
  if (m <= 64) return 64;
  const int64_t cost128 = r.token_tile_128_cost * ceil_div(m, 128);
  const int64_t cost256 = r.token_tile_256_cost * ceil_div(m, 256) +
                          (m % 256 != 0 && m % 256 < 192 ? r.token_tile_256_underfill : 0);
  return cost256 < cost128 ? 256 : 128;
}

// A wgmma tile (tokens x weight rows per CTA), its split-K factor and its estimated cost (eighths of a wide
// tile's k step).
struct WgmmaTile {
  int tokens = 0, rows = 0;
  int64_t splits = 1, cost = INT64_MAX;
};

int64_t wgmma_step_cost(const W4A16PlanRules& r, int rows) {
  return rows == 64 ? r.narrow_step_cost : r.wide_step_cost;
}

// The wgmma kernel's split-K factor for an [m, n] output of `ctas` tiles: the fewest waves of CTAs times the
// k steps each runs, plus a fill per wave and, when split, the reduction (a launch and the fp32 partials
// written and read). Splitting past one wave, or a grid just short of one, costs a whole extra wave.
WgmmaTile wgmma_splits(const W4A16PlanRules& r, WgmmaTile tile, int64_t ctas, int64_t k_steps, int64_t m,
                       int64_t n, int64_t sms) {
  const int64_t step_cost = wgmma_step_cost(r, tile.rows);
  for (int64_t s = 1; s <= std::min<int64_t>(16, std::max<int64_t>(1, k_steps / 4)); ++s) {
    const int64_t reduce =
        s > 1 ? r.wide_step_cost * (r.reduce_launch_steps + s * m * n / r.reduce_elements_per_step) : 0;
    const int64_t cost =
        ceil_div(ctas * s, sms) * (ceil_div(k_steps, s) * step_cost + r.wide_step_cost * r.wave_fill_steps) +
        reduce;
    if (cost < tile.cost) tile.splits = s, tile.cost = cost;
  }
  return tile;
}

// The wgmma tile for M tokens: the wide tile (128 or 256 weight rows: wgmma_tokens_per_cta) or, from
// tiled_up_to_tokens + 1 to wgmma_narrow_up_to_tokens, a 64-row tile whose two consumer warpgroups split 128
// tokens, whichever the cost model puts first (with its splits).
WgmmaTile wgmma_tile(const W4A16PlanRules& r, int64_t m, int64_t n, int64_t k_steps, int64_t sms) {
  const int wide = wgmma_tokens_per_cta(r, m);
  const WgmmaTile candidates[] = {{wide, kernels::w4a16_wgmma_rows_per_cta(wide)}, {128, 64}};
  WgmmaTile best;
  for (const WgmmaTile& c : candidates) {
    if (c.rows == 64 && (m <= r.tiled_up_to_tokens || m > r.wgmma_narrow_up_to_tokens)) continue;
    const int64_t ctas = ceil_div(n, c.rows) * ceil_div(m, c.tokens);
    const WgmmaTile t = wgmma_splits(r, c, ctas, k_steps, m, n, sms);
    if (t.cost < best.cost) best = t;
  }
  return best;
}

// Whether the wgmma kernel's best `tile` suits M tokens: a 64-row tile, or K long enough that splitting
// pays, or a grid that fills the GPU twice over without split-K.
bool wgmma_fills_gpu(const W4A16PlanRules& r, const WgmmaTile& tile, int64_t m, int64_t n, int64_t k_steps,
                     int64_t sms) {
  if (tile.rows == 64) return true;
  if (tile.splits > 1) return m > r.tiled_up_to_tokens && k_steps >= r.wgmma_split_min_k_steps;
  return 2 * ceil_div(n, tile.rows) * ceil_div(m, tile.tokens) >= sms;
}

constexpr std::pair<W4A16Kernel, std::string_view> kKernelNames[] = {{W4A16Kernel::Auto, "auto"},
                                                                     {W4A16Kernel::Skinny, "skinny"},
                                                                     {W4A16Kernel::Tiled, "tiled"},
                                                                     {W4A16Kernel::Wgmma, "wgmma"},
                                                                     {W4A16Kernel::Dequant, "dequant"}};
}  // namespace

std::string_view w4a16_kernel_name(W4A16Kernel kernel) {
  for (const auto& [k, name] : kKernelNames) {
    if (k == kernel) return name;
  }
  return "?";
}

W4A16Kernel parse_w4a16_kernel(std::string_view name) {
  for (const auto& [k, known] : kKernelNames) {
    if (known == name) return k;
  }
  fail("unknown W4A16 kernel '{}' (expected auto, skinny, tiled, wgmma or dequant)", name);
}

W4A16DeviceWeights W4A16DeviceWeights::upload(const W4A16Weights& w) {
  W4A16DeviceWeights d;
  d.layout = w.layout;
  d.qweight = to_device(std::span<const uint8_t>(w.qweight), "W4A16 packed weights");
  d.scales = to_device(std::span<const uint16_t>(w.scales), "W4A16 scales");
  if (w.layout.zero_point || w.layout.min_offset)
    d.zero_offsets = to_device(std::span<const uint16_t>(w.zero_offsets), "W4A16 zeros / minimums");
  d.encode_maps();
  return d;
}

namespace {

constexpr int kWgmmaRowChoices[] = {64, 128, 256};

}  // namespace

void W4A16DeviceWeights::encode_maps() {
  const int group_steps = static_cast<int>(layout.group_k / 16);
  const int scale_groups = kernels::w4a16_wgmma_scale_groups(group_steps);
  // The wgmma kernel runs min-offset weights in groups of 32 only (plan()).
  has_maps = sm90a_kernels_available() && scale_groups > 0 &&
             (!layout.min_offset || kernels::w4a16_wgmma_min_offset_supported(group_steps));
  if (!has_maps) return;
  const int64_t unit_rows = layout.padded_n() / 16, pair_words = layout.groups_per_row() * 8;
  for (int i = 0; i < 3; ++i) {
    const int box_rows = kWgmmaRowChoices[i] / 16;
    W4A16WeightMaps& m = maps[i];
    m.units = make_word_tensor_map_2d(qweight.data(), unit_rows, layout.padded_k() / 64 * 128, box_rows, 128);
    m.scales = make_word_tensor_map_2d(scales.data(), unit_rows, pair_words, box_rows, 8 * scale_groups);
    m.zeros =
        layout.zero_point || layout.min_offset
            ? make_word_tensor_map_2d(zero_offsets.data(), unit_rows, pair_words, box_rows, 8 * scale_groups)
            : m.scales;
  }
}

const W4A16WeightMaps& W4A16DeviceWeights::maps_for_rows(int rows_per_cta) const {
  QLLM_CHECK(has_maps, "W4A16 weights [{}, {}]: no wgmma tensor maps (no sm_90a GPU, or groups of {})",
             layout.n, layout.k, layout.group_k);
  for (int i = 0; i < 3; ++i) {
    if (kWgmmaRowChoices[i] == rows_per_cta) return maps[i];
  }
  fail("W4A16 weights: no tensor maps for {}-row CTAs", rows_per_cta);
}

W4A16Plan W4A16Gemm::plan(int64_t m, const W4A16Layout& layout, W4A16Kernel kernel) const {
  const W4A16PlanRules& r = plan_rules();
  const bool wgmma = r.wgmma;
  // The kernels run on the padded weight (padding rows and columns are a few percent at most).
  const int64_t n = layout.padded_n(), k_steps = layout.padded_k() / kW4A16TileK;
  const int64_t sms = multiprocessor_count();
  // Min-offset weights (GGUF Q4_1) run on the wgmma kernel in Q4_1's groups of 32 only (the one variant
  // compiled); other group sizes take the skinny, tiled and dequant kernels by the same thresholds.
  const int group_steps = static_cast<int>(layout.group_k / 16);
  const bool wgmma_groups = kernels::w4a16_wgmma_scale_groups(group_steps) > 0 &&
                            (!layout.min_offset || kernels::w4a16_wgmma_min_offset_supported(group_steps));
  // The wgmma kernel's best tile, derived once and only where asked for (not on the skinny path).
  std::optional<WgmmaTile> wgmma_best;
  auto best_wgmma_tile = [&]() -> const WgmmaTile& {
    if (!wgmma_best) wgmma_best = wgmma_tile(r, m, n, k_steps, sms);
    return *wgmma_best;
  };
  if (kernel == W4A16Kernel::Auto) {
    // The skinny kernel while memory-bound, the wgmma kernel where its tiles fill the GPU, the tiled kernel
    // while it beats the dequant path (the bigger the weights, the longer), then the dequant path.
    const bool large = n * k_steps * kW4A16TileK >= r.large_weight_elements;
    if (m <= r.skinny_up_to_tokens) {
      kernel = W4A16Kernel::Skinny;
    } else if (wgmma && wgmma_groups && wgmma_fills_gpu(r, best_wgmma_tile(), m, n, k_steps, sms)) {
      kernel = W4A16Kernel::Wgmma;
    } else if (m <= (large ? r.tiled_large_up_to_tokens : r.tiled_up_to_tokens)) {
      kernel = W4A16Kernel::Tiled;
    } else {
      kernel = W4A16Kernel::Dequant;
    }
  }
  QLLM_CHECK(
      kernel == W4A16Kernel::Skinny || kernel == W4A16Kernel::Tiled || kernel == W4A16Kernel::Dequant ||
          wgmma,
      "the {} W4A16 kernel needs an sm_90 GPU and a build for sm_90a (CMAKE_CUDA_ARCHITECTURES with 90)",
      w4a16_kernel_name(kernel));
  W4A16Plan p;
  p.kernel = kernel;
  int64_t splits = 1;
  if (kernel == W4A16Kernel::Skinny) {
    // Warps splitting K: kernels::skinny_warps_k. No split across CTAs for occupancy (the partial sums'
    // extra round trips cost more than the idle SMs of a small grid), only when the activation slice would
    // not fit in shared memory.
    p.tokens_per_cta = tuning.tokens_per_cta ? tuning.tokens_per_cta : (m <= 8 ? 8 : (m <= 16 ? 16 : 32));
    QLLM_CHECK(p.tokens_per_cta == 8 || p.tokens_per_cta == 16 || p.tokens_per_cta == 32,
               "skinny W4A16 kernel: tokens per CTA must be 8, 16 or 32, not {}", p.tokens_per_cta);
    const int64_t max_steps = kernels::kSkinnyMaxActivationBytes / (p.tokens_per_cta * kW4A16TileK * 2);
    splits = ceil_div(k_steps, max_steps);
    p.warps_k = tuning.warps_k ? tuning.warps_k
                               : kernels::skinny_warps_k(n / kW4A16TileN, ceil_div(m, p.tokens_per_cta),
                                                         splits, p.tokens_per_cta, sms);
    QLLM_CHECK(p.warps_k == 1 || p.warps_k == 2 || p.warps_k == 4 || p.warps_k == 8,
               "skinny W4A16 kernel: warps_k must be 1, 2, 4 or 8, not {}", p.warps_k);
    p.rows_per_cta = 16 * (8 / p.warps_k);
  } else if (kernel == W4A16Kernel::Tiled) {
    // 32-token tiles, up to 64 tokens on weights smaller than lm_head's (which have CTAs enough with 64).
    const bool small_tiles =
        m <= r.tiled_small_tile_tokens || (m <= 64 && n * k_steps * kW4A16TileK < r.large_weight_elements);
    p.tokens_per_cta =
        tuning.tokens_per_cta ? tuning.tokens_per_cta : (small_tiles ? 32 : (m <= 64 ? 64 : 128));
    QLLM_CHECK(p.tokens_per_cta == 32 || p.tokens_per_cta == 64 || p.tokens_per_cta == 128,
               "tiled W4A16 kernel: tokens per CTA must be 32, 64 or 128, not {}", p.tokens_per_cta);
    p.rows_per_cta = 128;
    const int64_t ctas = ceil_div(n, p.rows_per_cta) * ceil_div(m, p.tokens_per_cta);
    if (ctas < sms) {
      splits = std::min(ceil_div(sms, ctas), std::max<int64_t>(1, k_steps / 4));
      if (kernels::w4a16_tiled_cluster_reduction_available())
        splits = std::min<int64_t>(splits, kernels::kTiledMaxClusterSplits);
    }
  } else if (kernel == W4A16Kernel::Dequant) {
    p.tokens_per_cta = static_cast<int>(std::min<int64_t>(m, 1 << 30));
    p.rows_per_cta = static_cast<int>(n);
  } else {
    QLLM_CHECK(!layout.min_offset || wgmma_groups,
               "wgmma W4A16 kernel: min-offset weights (GGUF Q4_1) in groups of 32 only, not {} (the skinny, "
               "tiled and dequant kernels take any)",
               layout.group_k);
    QLLM_CHECK(wgmma_groups,
               "wgmma W4A16 kernel: scale groups of {} are not supported (16, 32 or a multiple of 64)",
               layout.group_k);
    const WgmmaTile& best = best_wgmma_tile();
    p.tokens_per_cta = tuning.tokens_per_cta       ? tuning.tokens_per_cta
                       : tuning.rows_per_cta == 64 ? 128  // the one token tile of the 64-row tiles
                                                   : best.tokens;
    p.rows_per_cta = tuning.rows_per_cta     ? tuning.rows_per_cta
                     : tuning.tokens_per_cta ? kernels::w4a16_wgmma_rows_per_cta(p.tokens_per_cta)
                                             : best.rows;
    QLLM_CHECK(kernels::w4a16_wgmma_tile_supported(p.tokens_per_cta, p.rows_per_cta),
               "wgmma W4A16 kernel: no {} tokens x {} rows tile (64 x 256, 128 x 256, 256 x 128 or 128 x 64)",
               p.tokens_per_cta, p.rows_per_cta);
    const bool forced = best.tokens != p.tokens_per_cta || best.rows != p.rows_per_cta;
    splits =
        forced ? wgmma_splits(r, {p.tokens_per_cta, p.rows_per_cta},
                              ceil_div(n, p.rows_per_cta) * ceil_div(m, p.tokens_per_cta), k_steps, m, n, sms)
                     .splits
               : best.splits;
  }
  if (tuning.splits && kernel != W4A16Kernel::Dequant) splits = tuning.splits;  // cuBLAS splits its own K
  QLLM_CHECK(splits >= 1 && splits <= k_steps, "W4A16 GEMM: {} splits of {} k steps", splits, k_steps);
  p.steps_per_split = static_cast<int>(ceil_div(k_steps, splits));
  p.splits = static_cast<int>(ceil_div(k_steps, p.steps_per_split));
  if (kernel == W4A16Kernel::Skinny) {
    QLLM_CHECK(static_cast<int64_t>(p.steps_per_split) * kW4A16TileK * p.tokens_per_cta * 2 <=
                   kernels::kSkinnyMaxActivationBytes,
               "skinny W4A16 kernel: {} splits leave {} k steps per CTA, more than shared memory holds",
               p.splits, p.steps_per_split);
  }
  // The tiled kernel's splits reduce inside a thread-block cluster where they can (no partials in memory).
  if (kernel == W4A16Kernel::Tiled && p.splits > 1 && p.splits <= kernels::kTiledMaxClusterSplits &&
      kernels::w4a16_tiled_cluster_reduction_available()) {
    p.cluster_splits = p.splits;
  }
  return p;
}

namespace {

// Split-K partials live in memory only for split plans whose splits do not add up inside a cluster.
bool uses_splitk_workspace(const W4A16Plan& p) {
  return p.kernel != W4A16Kernel::Dequant && p.splits > 1 && p.cluster_splits == 0;
}

int64_t output_tiles(const W4A16Plan& p, int64_t m, int64_t n) {
  return ceil_div(n, p.rows_per_cta) * ceil_div(m, p.tokens_per_cta);
}

// Sets the attributes of the kernel `p` launches (what its first launch would otherwise do).
void configure_kernel(const W4A16Layout& l, const W4A16Plan& p) {
  kernels::W4A16KernelArgs args;
  args.group_steps = static_cast<int>(l.group_k / 16);
  args.min_offset = l.min_offset;  // the skinny kernel's min-offset variant is another instantiation
  args.cluster_splits = p.cluster_splits;
  args.configure_only = true;
  kernels::dispatch_16bit(l.activation, "W4A16 GEMM", [&](auto tag) {
    using T = decltype(tag);
    if (p.kernel == W4A16Kernel::Skinny) {
      kernels::launch_w4a16_skinny<T>(args, p.tokens_per_cta / 8, p.warps_k, nullptr);
    } else if (p.kernel == W4A16Kernel::Tiled) {
      kernels::launch_w4a16_tiled<T>(args, p.tokens_per_cta, nullptr);
    } else if (p.kernel == W4A16Kernel::Wgmma) {
      kernels::launch_w4a16_wgmma<T>(args, {}, p.tokens_per_cta, p.rows_per_cta, nullptr);
    }
  });
}

// X is read in place when its rows are 16-byte aligned (K % 8 == 0; the kernels zero-fill columns K to the
// padded K); otherwise it is first copied into rows of the padded K (a zero-filled workspace).
bool pads_x(const W4A16Layout& l) {
  return l.k % 8 != 0;
}

// The kernels' argument block for `plan` (the split-K workspace is the caller's to add).
kernels::W4A16KernelArgs kernel_args(const void* x, int64_t x_cols, const W4A16DeviceWeights& w, void* y,
                                     int64_t m, const W4A16Plan& p) {
  const W4A16Layout& l = w.layout;
  kernels::W4A16KernelArgs args;
  args.x = x;
  args.qweight = w.qweight.data();
  args.scales = reinterpret_cast<const uint32_t*>(w.scales.data());
  args.zero_offsets =
      l.zero_point || l.min_offset ? reinterpret_cast<const uint32_t*>(w.zero_offsets.data()) : nullptr;
  args.min_offset = l.min_offset;
  args.y = y;
  args.m = static_cast<int>(m);
  args.n = static_cast<int>(l.padded_n());
  args.k = static_cast<int>(l.padded_k());
  args.n_out = static_cast<int>(l.n);
  args.x_cols = static_cast<int>(x_cols);
  args.group_steps = static_cast<int>(l.group_k / 16);
  args.groups = static_cast<int>(l.groups_per_row());
  args.splits = p.splits;
  args.steps_per_split = p.steps_per_split;
  args.cluster_splits = p.cluster_splits;
  return args;
}

}  // namespace

void W4A16Gemm::reserve(const W4A16Layout& l, int64_t max_m, W4A16Kernel kernel) {
  QLLM_CHECK(max_m >= 1 && max_m <= INT_MAX / 2, "W4A16 GEMM: reserve for M = {} out of range", max_m);
  int64_t max_partials = 0, max_tiles = 0;
  bool dequant = false;
  for (int64_t m = 1; m <= max_m; ++m) {
    const W4A16Plan p = plan(m, l, kernel);
    configure_kernel(l, p);
    if (p.kernel == W4A16Kernel::Dequant) dequant = true;
    if (uses_splitk_workspace(p)) {
      max_partials = std::max(max_partials, p.splits * m);
      max_tiles = std::max(max_tiles, output_tiles(p, m, l.padded_n()));
    }
  }
  if (max_partials > 0) splitk_.reserve(1, max_partials, l.padded_n(), max_tiles);
  const int64_t x_cols = pads_x(l) ? l.padded_k() : l.k;
  const size_t scratch_count = static_cast<size_t>(l.n * x_cols);
  if (dequant && scratch_.size() < scratch_count)
    scratch_ = DeviceBuffer<uint16_t>(scratch_count, "dequantized weights (W4A16 dequant path)");
  const size_t x_count = static_cast<size_t>(max_m * l.padded_k());
  if (pads_x(l) && x_pad_.size() < x_count)
    x_pad_ = DeviceBuffer<uint16_t>(x_count, "zero-padded activations (W4A16, K not a multiple of 8)");
}

void W4A16Gemm::run(const void* x, const W4A16DeviceWeights& w, void* y, int64_t m, cudaStream_t stream,
                    W4A16Kernel kernel) {
  const W4A16Layout& l = w.layout;
  const int64_t n = l.padded_n(), k = l.padded_k();
  QLLM_CHECK(m >= 1 && m <= INT_MAX / 2, "W4A16 GEMM: M = {} out of range", m);
  QLLM_CHECK(n <= INT_MAX && k <= INT_MAX && n * l.groups_per_row() <= INT_MAX,
             "W4A16 GEMM: weight shape [{}, {}] with groups of {} too large (32-bit scale indices)", l.n, l.k,
             l.group_k);
  QLLM_CHECK(x != nullptr && y != nullptr && is_aligned(x, 16) && is_aligned(y, 16),
             "W4A16 GEMM: X and Y must be non-null, 16-byte aligned device pointers");
  QLLM_CHECK(is_aligned(w.qweight.data(), 16) && w.qweight.size() == static_cast<size_t>(n * k / 2),
             "W4A16 GEMM: packed weights hold {} bytes, [{}, {}] padded to [{}, {}] needs {}",
             w.qweight.size(), l.n, l.k, n, k, n * k / 2);

  const W4A16Plan p = plan(m, l, kernel);
  int64_t x_cols = l.k;
  if (pads_x(l)) {
    QLLM_CHECK(
        x_pad_.size() >= static_cast<size_t>(m * k),
        "W4A16 GEMM [{}, {}] at M = {}: padded-activation workspace not reserved (call reserve() first)", l.n,
        l.k, m);
    kernels::launch_copy_rows_16(x, l.k, x_pad_.data(), k, m, l.k, stream);
    x = x_pad_.data();
    x_cols = k;
  }
  kernels::W4A16KernelArgs args = kernel_args(x, x_cols, w, y, m, p);
  attach_splitk(args, p, l);
  kernels::dispatch_16bit(l.activation, "W4A16 GEMM", [&](auto tag) {
    using T = decltype(tag);
    if (p.kernel == W4A16Kernel::Dequant) {
      QLLM_CHECK(scratch_.size() >= static_cast<size_t>(l.n * x_cols),
                 "W4A16 GEMM [{}, {}] at M = {}: dequant scratch not reserved (call reserve() first)", l.n,
                 l.k, m);
      kernels::launch_w4a16_dequantize<T>(args, scratch_.data(), stream);  // [N, x_cols]: no padding rows
      QLLM_CUDA_CHECK_LAUNCH();
      cublas_.run(x, scratch_.data(), y, m, l.n, x_cols, l.activation, stream);
      return;
    }
    if (p.kernel == W4A16Kernel::Skinny) {
      kernels::launch_w4a16_skinny<T>(args, p.tokens_per_cta / 8, p.warps_k, stream);
    } else if (p.kernel == W4A16Kernel::Tiled) {
      kernels::launch_w4a16_tiled<T>(args, p.tokens_per_cta, stream);
      if (uses_splitk_workspace(p)) kernels::launch_splitk_reduce<T>(args, stream);
    } else {
      // X's real columns: the TMA zero-fills the box past them (the padded K of the weights).
      const XMapKey x_key{x, m, x_cols, p.tokens_per_cta};
      if (!(x_map_key_ == x_key)) {
        x_map_ = make_tensor_map_2d(x, 2, m, x_cols, x_key.box_rows, 64);
        x_map_key_ = x_key;
      }
      const W4A16WeightMaps& maps = w.maps_for_rows(p.rows_per_cta);
      kernels::launch_w4a16_wgmma<T>(args, {x_map_, maps.units, maps.scales, maps.zeros}, p.tokens_per_cta,
                                     p.rows_per_cta, stream);
      if (p.splits > 1) kernels::launch_splitk_reduce<T>(args, stream);
    }
    QLLM_CUDA_CHECK_LAUNCH();
  });
}

namespace {

// The largest M that folds prologues: the rule, or QLLM_FUSED_PROLOGUE_TOKENS (0: never), the baseline of a
// same-run measurement.
int64_t fused_prologue_up_to_tokens() {
  static const int64_t from_env = [] {
    const char* value = std::getenv("QLLM_FUSED_PROLOGUE_TOKENS");
    return value != nullptr ? std::strtoll(value, nullptr, 10) : int64_t{-1};
  }();
  return from_env >= 0 ? from_env : plan_rules().fused_prologue_up_to_tokens;
}

}  // namespace

bool W4A16Gemm::run_fused(const XPrologue& prologue, const W4A16DeviceWeights& w, void* y, int64_t m,
                          cudaStream_t stream) {
  const W4A16Layout& l = w.layout;
  const int64_t bound =
      tuning.fused_prologue_up_to_tokens ? tuning.fused_prologue_up_to_tokens : fused_prologue_up_to_tokens();
  if (prologue.kind == XPrologueKind::None || m < 1 || m > bound || l.k % 8 != 0) return false;
  // The norm: not in the min-offset variants (w4a16_skinny.cuh), and rows of at most 4096 values.
  if (prologue.kind == XPrologueKind::ResidualRmsNorm &&
      (l.min_offset || l.k > int64_t{8} * kernels::kPrologueMaxChunksPerThread * kernels::kSkinnyThreads))
    return false;
  const W4A16Plan p = plan(m, l);
  if (p.kernel != W4A16Kernel::Skinny || p.tokens_per_cta != 8) return false;

  QLLM_CHECK(y != nullptr && is_aligned(y, 16),
             "W4A16 GEMM: Y must be a non-null, 16-byte aligned device pointer");
  if (prologue.kind == XPrologueKind::ResidualRmsNorm) {
    QLLM_CHECK(prologue.residual != nullptr && prologue.norm_weight != nullptr &&
                   is_aligned(prologue.residual, 16) && is_aligned(prologue.norm_weight, 16) &&
                   is_aligned(prologue.delta, 16) && is_aligned(prologue.residual_out, 16) &&
                   (prologue.delta == nullptr ||
                    (prologue.residual_out != nullptr && prologue.residual_out != prologue.residual)),
               "W4A16 GEMM with RMSNorm: residual, weight, delta and residual_out must be 16-byte aligned "
               "device pointers, and with a delta residual_out set apart from residual");
  } else {
    QLLM_CHECK(prologue.gate_up != nullptr && is_aligned(prologue.gate_up, 16),
               "W4A16 GEMM with SwiGLU: gate_up must be a non-null, 16-byte aligned device pointer");
  }
  kernels::W4A16KernelArgs args = kernel_args(nullptr, l.k, w, y, m, p);
  attach_splitk(args, p, l);
  kernels::dispatch_16bit(l.activation, "W4A16 GEMM", [&](auto tag) {
    kernels::launch_w4a16_skinny<decltype(tag)>(args, 1, p.warps_k, stream, prologue);
    QLLM_CUDA_CHECK_LAUNCH();
  });
  return true;
}

void W4A16Gemm::attach_splitk(kernels::W4A16KernelArgs& args, const W4A16Plan& p, const W4A16Layout& l) {
  if (!uses_splitk_workspace(p)) return;
  const int64_t m = args.m, n = l.padded_n();
  QLLM_CHECK(splitk_.fits(1, p.splits * m, n, output_tiles(p, m, n)),
             "W4A16 GEMM [{}, {}] at M = {}: split-K workspace not reserved (call reserve() first)", l.n, l.k,
             m);
  args.partials = splitk_.partials();
  args.counters = splitk_.counters();
}

}  // namespace qllm
