// Host side of LLM.int8(): validation, planning, workspaces, launches.
#include "kernels/gemm/int8.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include "kernels/gemm/int8_launch.h"
#include "kernels/gemm/plan_rules.h"
#include "kernels/gemm/skinny_plan.h"
#include "kernels/runtime/tma.h"
#include "qllm/error.h"

namespace qllm {

namespace {

void check_shape(int64_t n, int64_t k) {
  QLLM_CHECK(n > 0 && k > 0 && n % 64 == 0 && k % 64 == 0 && n <= INT_MAX && k <= INT_MAX,
             "int8 GEMM needs N and K divisible by 64; weight shape is [{}, {}]", n, k);
}

}  // namespace

std::string_view int8_kernel_name(Int8Kernel kernel) {
  switch (kernel) {
    case Int8Kernel::Auto:
      return "auto";
    case Int8Kernel::Skinny:
      return "skinny";
    case Int8Kernel::Wide:
      return "wide";
  }
  return "?";
}

Int8Kernel parse_int8_kernel(std::string_view name) {
  if (name == "auto") return Int8Kernel::Auto;
  if (name == "skinny") return Int8Kernel::Skinny;
  if (name == "wide") return Int8Kernel::Wide;
  fail("unknown int8 kernel '{}' (expected auto, skinny or wide)", name);
}

Int8DeviceWeights Int8DeviceWeights::upload(const Int8Rows& rows) {
  check_shape(rows.rows, rows.cols);
  Int8DeviceWeights w;
  w.n = rows.rows;
  w.k = rows.cols;
  w.values = to_device(std::span<const int8_t>(rows.values), "int8 weights");
  w.absmax = to_device(std::span<const float>(rows.absmax), "int8 weight scales");
  w.encode_maps();
  return w;
}

namespace {

constexpr int kWideRowChoices[] = {64, 128, 256};

}  // namespace

void Int8DeviceWeights::encode_maps() {
  has_maps = sm90a_kernels_available();
  if (!has_maps) return;
  for (int i = 0; i < 3; ++i) maps[i] = make_tensor_map_2d(values.data(), 1, n, k, kWideRowChoices[i], 128);
}

const CUtensorMap& Int8DeviceWeights::map_for_rows(int block_n) const {
  QLLM_CHECK(has_maps, "int8 weights [{}, {}]: no tensor maps (no sm_90a GPU)", n, k);
  for (int i = 0; i < 3; ++i) {
    if (kWideRowChoices[i] == block_n) return maps[i];
  }
  fail("int8 weights: no tensor map for {}-row CTAs", block_n);
}

Int8Rows Int8DeviceWeights::download() const {
  Int8Rows r;
  r.rows = n;
  r.cols = k;
  r.values = values.download();
  r.absmax = absmax.download();
  return r;
}

Int8DeviceWeights quantize_int8_weights_cuda(const void* weights, DType dtype, int64_t n, int64_t k,
                                             cudaStream_t stream) {
  check_shape(n, k);
  QLLM_CHECK(dtype == DType::BF16 || dtype == DType::F16,
             "int8 weights are quantized from bf16 or f16, not {}", dtype_name(dtype));
  QLLM_CHECK(is_aligned(weights, 16), "int8 weight quantization: the weights must be 16-byte aligned");
  Int8DeviceWeights w;
  w.n = n;
  w.k = k;
  w.values = DeviceBuffer<int8_t>(static_cast<size_t>(n * k), "int8 weights");
  w.absmax = DeviceBuffer<float>(static_cast<size_t>(n), "int8 weight scales");
  DeviceBuffer<kernels::Int8PrepStatus> status(1, "int8 quantization status");
  status.fill_bytes(0xff);
  kernels::Int8PrepArgs a;
  a.x = weights;
  a.bf16 = dtype == DType::BF16;
  a.m = static_cast<int>(n);
  a.k = static_cast<int>(k);
  a.xq = w.values.data();
  a.x_absmax = w.absmax.data();
  a.status = status.data();
  kernels::launch_int8_quantize_rows(a, stream);
  QLLM_CUDA_CHECK_LAUNCH();
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  const kernels::Int8PrepStatus s = status.download()[0];
  if (s.first_nonfinite != ~0ull) {
    const auto i = static_cast<int64_t>(s.first_nonfinite);
    fail("weight at row {}, column {} is NaN or Inf: int8 quantization needs finite weights", i / k, i % k);
  }
  w.encode_maps();
  return w;
}

Int8Plan Int8Gemm::plan(int64_t m, int64_t n, int64_t k, Int8Kernel kernel) const {
  const kernels::Int8PlanRules& r =
      sm90a_kernels_available() ? kernels::kInt8RulesSm90 : kernels::kInt8RulesPreSm90;
  const bool wide = r.wide;
  if (kernel == Int8Kernel::Auto) {
    kernel = (m > r.skinny_up_to_tokens && wide) ? Int8Kernel::Wide : Int8Kernel::Skinny;
  }
  QLLM_CHECK(
      kernel != Int8Kernel::Wide || wide,
      "the wide int8 kernel needs an sm_90 GPU and a build for sm_90a (CMAKE_CUDA_ARCHITECTURES with 90)");
  const int64_t sms = multiprocessor_count();
  Int8Plan p;
  p.kernel = kernel;
  int64_t splits = 1, k_units = 0;
  if (kernel == Int8Kernel::Skinny) {
    // 16-token CTAs from one token on, except on long rows.
    const int decode_tokens = k > r.long_row_k ? 8 : 16;
    p.tokens_per_cta = tuning.tokens_per_cta ? tuning.tokens_per_cta
                                             : (m <= decode_tokens ? decode_tokens : (m <= 16 ? 16 : 32));
    QLLM_CHECK(p.tokens_per_cta == 8 || p.tokens_per_cta == 16 || p.tokens_per_cta == 32,
               "skinny int8 kernel: tokens per CTA must be 8, 16 or 32, not {}", p.tokens_per_cta);
    k_units = k / 64;
    // As the W4A16 skinny plan: split across CTAs only when the activation slice would not fit.
    const int64_t max_steps = kernels::kInt8SkinnyMaxActivationBytes / (p.tokens_per_cta * 64);
    splits = ceil_div(k_units, max_steps);
    p.warps_k = tuning.warps_k ? tuning.warps_k
                               : kernels::skinny_warps_k(n / 16, ceil_div(m, p.tokens_per_cta), splits,
                                                         p.tokens_per_cta, sms);
    QLLM_CHECK(p.warps_k == 1 || p.warps_k == 2 || p.warps_k == 4 || p.warps_k == 8,
               "skinny int8 kernel: warps_k must be 1, 2, 4 or 8, not {}", p.warps_k);
    p.rows_per_cta = 16 * (8 / p.warps_k);
  } else {
    p.tokens_per_cta = 128;
    k_units = ceil_div(k, 128);
    // Wide weights take 256-row tiles while those alone fill the GPU and 128-row tiles two per SM at prefill
    // sizes; narrow weights take 64-row tiles two per SM for a few tokens (more CTAs without splitting K),
    // 128-row ones past that.
    const int64_t token_tiles = ceil_div(m, 128);
    if (n >= r.wide_weight_rows) {
      const bool prefill = m > r.wide_prefill_tokens;
      p.block_n = prefill ? 128 : (ceil_div(n, 256) * token_tiles >= sms ? 256 : 128);
      p.ctas_per_sm = prefill ? 2 : 1;
    } else {
      const bool prefill = m > r.narrow_prefill_tokens;
      p.block_n = prefill ? 128 : 64;
      p.ctas_per_sm = prefill ? 1 : 2;
    }
    if (tuning.block_n) {
      p.block_n = tuning.block_n;
      p.ctas_per_sm = p.block_n == 256 ? 1 : 2;
    }
    QLLM_CHECK(p.block_n == 64 || p.block_n == 128 || p.block_n == 256,
               "wide int8 kernel: block_n must be 64, 128 or 256, not {}", p.block_n);
    if (tuning.ctas_per_sm) p.ctas_per_sm = tuning.ctas_per_sm;
    QLLM_CHECK((p.ctas_per_sm == 1 || p.ctas_per_sm == 2) && !(p.block_n == 256 && p.ctas_per_sm == 2) &&
                   !(p.block_n == 64 && p.ctas_per_sm == 1),
               "wide int8 kernel: {} CTAs per SM with block_n {} (supported: 256 x 1, 128 x 1 or 2, 64 x 2)",
               p.ctas_per_sm, p.block_n);
    p.rows_per_cta = p.block_n;
    // Split K (within a cluster) only as far as the CTAs still run in one wave, and at most max_splits ways
    // (a cluster's CTAs must find free SMs in one GPC).
    const int64_t ctas = ceil_div(n, p.block_n) * token_tiles, slots = sms * p.ctas_per_sm;
    splits = std::clamp<int64_t>(slots / ctas, 1,
                                 std::min<int64_t>(r.max_splits, std::max<int64_t>(1, k_units / 4)));
  }
  if (tuning.splits) splits = tuning.splits;
  QLLM_CHECK(splits >= 1 && splits <= k_units, "int8 GEMM: {} splits of {} k steps", splits, k_units);
  QLLM_CHECK(kernel != Int8Kernel::Wide || splits <= kernels::kInt8WideMaxSplits,
             "wide int8 kernel: at most {} splits (one thread-block cluster), not {}",
             kernels::kInt8WideMaxSplits, splits);
  p.steps_per_split = static_cast<int>(ceil_div(k_units, splits));
  p.splits = static_cast<int>(ceil_div(k_units, p.steps_per_split));
  if (kernel == Int8Kernel::Skinny) {
    QLLM_CHECK(static_cast<int64_t>(p.steps_per_split) * 64 * p.tokens_per_cta <=
                   kernels::kInt8SkinnyMaxActivationBytes,
               "skinny int8 kernel: {} splits leave {} k steps per CTA, more than shared memory holds",
               p.splits, p.steps_per_split);
  }
  return p;
}

Int8Gemm::Int8Gemm() : status_(sizeof(kernels::Int8PrepStatus), "int8 status") {
  status_.fill_bytes(0xff);  // cleared: no NaN seen, no call yet
  QLLM_CUDA_CHECK(cudaMallocHost(&host_status_, sizeof(kernels::Int8PrepStatus)));
  std::memset(host_status_, 0xff, sizeof(kernels::Int8PrepStatus));
}

Int8Gemm::~Int8Gemm() {
  if (host_status_) cudaFreeHost(host_status_);
}

namespace {

int64_t skinny_tiles(const Int8Plan& p, int64_t m, int64_t n) {
  return ceil_div(n, p.rows_per_cta) * ceil_div(m, p.tokens_per_cta);
}

}  // namespace

void Int8Gemm::reserve(int64_t n, int64_t k, int64_t max_m, Int8Kernel kernel) {
  check_shape(n, k);
  QLLM_CHECK(max_m >= 1 && max_m <= INT_MAX / 2, "int8 GEMM: reserve for M = {} out of range", max_m);
  auto grow = [](auto& buffer, size_t count, const char* what) {
    using T = std::remove_reference_t<decltype(*buffer.data())>;
    if (buffer.size() < count) buffer = DeviceBuffer<T>(count, what);
  };
  grow(xq_, static_cast<size_t>(max_m * k), "int8 activations");
  grow(x_absmax_, static_cast<size_t>(max_m), "activation scales");
  if (outlier_bits_.size() < static_cast<size_t>(k / 32)) {
    outlier_bits_ = DeviceBuffer<uint32_t>(static_cast<size_t>(k / 32), "outlier bitmap");
    outlier_bits_.fill_bytes(0);
  }
  // Any number of outlier columns, up to all K of them (a real model's down projection can have most of its
  // input columns past the threshold: SmolLM2-135M at 6.0 has over 1400 of 1536).
  grow(outlier_cols_, static_cast<size_t>(k), "outlier columns");
  grow(x_outliers_, static_cast<size_t>(max_m * k), "outlier activations");
  reserved_m_ = std::max(reserved_m_, max_m);
  reserved_k_ = std::max(reserved_k_, k);

  kernels::Int8PrepArgs prep;
  prep.threshold = 1.0f;
  prep.configure_only = true;
  kernels::launch_int8_prep(prep, nullptr);
  int64_t max_partials = 0, max_tiles = 0;
  for (int64_t m = 1; m <= max_m; ++m) {
    const Int8Plan p = plan(m, n, k, kernel);
    kernels::Int8GemmArgs a;
    a.configure_only = true;
    a.splits = p.splits;
    for (const bool bf16 : {true, false}) {
      a.bf16 = bf16;
      if (p.kernel == Int8Kernel::Skinny) {
        kernels::launch_int8_skinny(a, p.tokens_per_cta / 8, p.warps_k, nullptr);
      } else {
        kernels::launch_int8_wide(a, CUtensorMap{}, CUtensorMap{}, p.block_n, p.ctas_per_sm, nullptr);
      }
    }
    if (p.kernel == Int8Kernel::Skinny && p.splits > 1) {
      max_partials = std::max(max_partials, p.splits * m);
      max_tiles = std::max(max_tiles, skinny_tiles(p, m, n));
    }
  }
  if (max_partials > 0) splitk_.reserve(1, max_partials, n, max_tiles);
}

size_t Int8Gemm::workspace_bytes() const {
  return xq_.bytes() + x_absmax_.bytes() + outlier_bits_.bytes() + outlier_cols_.bytes() +
         x_outliers_.bytes() + splitk_.bytes();
}

void Int8Gemm::run(const void* x, const Int8DeviceWeights& w, void* y, int64_t m, DType dtype,
                   cudaStream_t stream, Int8Kernel kernel) {
  const int64_t k = w.k;
  QLLM_CHECK(dtype == DType::BF16 || dtype == DType::F16, "int8 GEMM activations must be bf16 or f16, not {}",
             dtype_name(dtype));
  QLLM_CHECK(m >= 1 && m <= INT_MAX / 2, "int8 GEMM: M = {} out of range", m);
  QLLM_CHECK(x != nullptr && y != nullptr && is_aligned(x, 16) && is_aligned(y, 16),
             "int8 GEMM: X and Y must be non-null, 16-byte aligned device pointers");
  check_shape(w.n, w.k);
  QLLM_CHECK(m <= reserved_m_ && k <= reserved_k_,
             "int8 GEMM [{}, {}] at M = {}: workspaces reserved for M <= {}, K <= {} (call reserve() first)",
             w.n, k, m, reserved_m_, reserved_k_);
  const Int8Plan p = plan(m, w.n, k, kernel);
  last_k_ = k;

  auto* status = reinterpret_cast<kernels::Int8PrepStatus*>(status_.data());
  {
    kernels::Int8PrepArgs prep;
    prep.x = x;
    prep.bf16 = dtype == DType::BF16;
    prep.m = static_cast<int>(m);
    prep.k = static_cast<int>(k);
    prep.threshold = outliers_enabled(threshold) ? threshold : 0.0f;
    prep.outlier_bits = outlier_bits_.data();
    prep.xq = xq_.data();
    prep.x_absmax = x_absmax_.data();
    prep.outlier_cols = outlier_cols_.data();
    prep.x_outliers = x_outliers_.data();
    prep.status = status;
    kernels::launch_int8_prep(prep, stream);
    QLLM_CUDA_CHECK_LAUNCH();
  }

  kernels::Int8GemmArgs a;
  a.xq = xq_.data();
  a.x_absmax = x_absmax_.data();
  a.w = w.values.data();
  a.w_absmax = w.absmax.data();
  a.outlier_cols = outlier_cols_.data();
  a.x_outliers = x_outliers_.data();
  a.status = status;
  if (outliers_enabled(threshold)) {
    a.outlier_bits = outlier_bits_.data();
    a.bitmap_words = static_cast<int>(k / 32);
  }
  a.y = y;
  a.bf16 = dtype == DType::BF16;
  a.m = static_cast<int>(m);
  a.n = static_cast<int>(w.n);
  a.k = static_cast<int>(k);
  a.splits = p.splits;
  a.steps_per_split = p.steps_per_split;
  if (p.kernel == Int8Kernel::Skinny) {
    if (p.splits > 1) {
      QLLM_CHECK(splitk_.fits(1, p.splits * m, w.n, skinny_tiles(p, m, w.n)),
                 "int8 GEMM [{}, {}] at M = {}: split-K workspace not reserved (call reserve() first)", w.n,
                 k, m);
      a.partials = splitk_.partials();
      a.counters = splitk_.counters();
    }
    kernels::launch_int8_skinny(a, p.tokens_per_cta / 8, p.warps_k, stream);
  } else {
    if (x_map_rows_ != m || x_map_cols_ != k) {
      x_map_ = make_tensor_map_2d(xq_.data(), 1, m, k, 128, 128);
      x_map_rows_ = m, x_map_cols_ = k;
    }
    kernels::launch_int8_wide(a, x_map_, w.map_for_rows(p.block_n), p.block_n, p.ctas_per_sm, stream);
  }
  QLLM_CUDA_CHECK_LAUNCH();
}

void Int8Gemm::fetch_status(cudaStream_t stream) {
  QLLM_CUDA_CHECK(
      cudaMemcpyAsync(host_status_, status_.data(), sizeof(*host_status_), cudaMemcpyDeviceToHost, stream));
}

Int8Status Int8Gemm::status() const {
  Int8Status s;
  if (host_status_->first_nonfinite != ~0ull)
    s.first_nonfinite = static_cast<int64_t>(host_status_->first_nonfinite);
  s.max_outliers = std::max(host_status_->max_outlier_count, 0);
  return s;
}

int64_t Int8Gemm::check() const {
  const Int8Status s = status();
  if (s.first_nonfinite >= 0)
    fail("activation at row {}, column {} is NaN or Inf", s.first_nonfinite / last_k_,
         s.first_nonfinite % last_k_);
  return s.max_outliers;
}

void Int8Gemm::clear_status(cudaStream_t stream) {
  status_.fill_bytes_async(0xff, stream);
}

}  // namespace qllm
