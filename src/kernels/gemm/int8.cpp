// Host side of LLM.int8(): validation, planning, workspaces, launches.
#include "kernels/gemm/int8.h"

#include <algorithm>
#include <climits>
#include <type_traits>

#include "kernels/gemm/int8_launch.h"
#include "kernels/gemm/skinny_plan.h"
#include "kernels/runtime/tma.h"
#include "qllm/error.h"

namespace qllm {

namespace {

constexpr int64_t kFusedPrepMaxK = 4096;

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
  return w;
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
  return w;
}

Int8Plan Int8Gemm::plan(int64_t m, int64_t n, int64_t k, Int8Kernel kernel) const {
  const bool wide = sm90a_kernels_available();
  if (kernel == Int8Kernel::Auto) kernel = (m > 32 && wide) ? Int8Kernel::Wide : Int8Kernel::Skinny;
  QLLM_CHECK(
      kernel != Int8Kernel::Wide || wide,
      "the wide int8 kernel needs an sm_90 GPU and a build for sm_90a (CMAKE_CUDA_ARCHITECTURES with 90)");
  const int64_t sms = multiprocessor_count();
  Int8Plan p;
  p.kernel = kernel;
  int64_t splits = 1, k_units = 0;
  if (kernel == Int8Kernel::Skinny) {
    // 16-token CTAs from one token on, after a separate prep pass, except on long rows (H200, with the weight
    // loads fetching whole L2 lines): at K = 2048 they beat 8-token CTAs with the fused prep on every Llama
    // shape (M=1: lm_head 70.8 against 80.6 us, 2048x2048 9.9 against 11.3, 512x2048 9.2 against 10.6; M=8
    // 2048x2048 10.9 against 14.9), while 2048x8192 keeps 8-token CTAs (16.4 against 18.5 us at M=1).
    const int decode_tokens = k > kFusedPrepMaxK ? 8 : 16;
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
    // From sweeps of the configurations on the Llama shapes (H200, docs/RESULTS.md): wide weights take
    // 256-row tiles while those alone fill the GPU and 128-row tiles two per SM at prefill sizes; narrow
    // weights take 64-row tiles two per SM for a few tokens (more CTAs without splitting K), 128-row ones
    // past 256 tokens.
    const int64_t token_tiles = ceil_div(m, 128);
    if (n >= 4096) {
      p.block_n = m > 1024 ? 128 : (ceil_div(n, 256) * token_tiles >= sms ? 256 : 128);
      p.ctas_per_sm = m > 1024 ? 2 : 1;
    } else {
      p.block_n = m > 256 ? 128 : 64;
      p.ctas_per_sm = m > 256 ? 1 : 2;
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
    // Split K (within a cluster) only as far as the CTAs still run in one wave: a second, partial wave cost
    // more than the split saved (2048x2048 at M = 512: 27.8 us with 3 splits of 128-row tiles over 132 CTA
    // slots, 19.8 with 2). At most 4 ways: clusters of 8 CTAs with ~100 KB of shared memory each must find
    // 8 free SMs in one GPC (2048x8192 at M = 128 took 36.6 us with 8 splits, 26.8 us with 4).
    const int64_t ctas = ceil_div(n, p.block_n) * token_tiles, slots = sms * p.ctas_per_sm;
    splits = std::clamp<int64_t>(slots / ctas, 1, std::min<int64_t>(4, std::max<int64_t>(1, k_units / 4)));
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

void Int8Gemm::reserve(int64_t m, int64_t k) {
  auto grow = [](auto& buffer, size_t count, const char* what) {
    using T = std::remove_reference_t<decltype(*buffer.data())>;
    if (buffer.size() < count) buffer = DeviceBuffer<T>(count, what);
  };
  grow(xq_, static_cast<size_t>(m * k), "int8 activations");
  grow(x_absmax_, static_cast<size_t>(m), "activation scales");
  if (outlier_bits_.size() < static_cast<size_t>(2 * (k / 32))) {  // the prep keeps the next one zero
    outlier_bits_ = DeviceBuffer<uint32_t>(static_cast<size_t>(2 * (k / 32)), "outlier bitmaps");
    outlier_bits_.fill_bytes(0);
  }
  grow(outlier_cols_, kernels::kMaxOutlierColumns, "outlier columns");
  grow(x_outliers_, static_cast<size_t>(m) * kernels::kMaxOutlierColumns, "outlier activations");
  if (status_.size() == 0) {
    status_ = DeviceBuffer<unsigned char>(sizeof(kernels::Int8PrepStatus), "int8 status");
    status_.fill_bytes(0xff);  // no NaN seen yet (first_nonfinite = ~0)
  }
}

void Int8Gemm::run(const void* x, DType dtype, int64_t m, int64_t k, const Int8DeviceWeights& w, void* y,
                   cudaStream_t stream, Int8Kernel kernel) {
  QLLM_CHECK(dtype == DType::BF16 || dtype == DType::F16, "int8 GEMM activations must be bf16 or f16, not {}",
             dtype_name(dtype));
  QLLM_CHECK(m >= 1 && m <= INT_MAX / 2, "int8 GEMM: M = {} out of range", m);
  QLLM_CHECK(k == w.k, "int8 GEMM: X has K = {} but the weights are [{}, {}]", k, w.n, w.k);
  QLLM_CHECK(x != nullptr && y != nullptr && is_aligned(x, 16) && is_aligned(y, 16),
             "int8 GEMM: X and Y must be non-null, 16-byte aligned device pointers");
  check_shape(w.n, w.k);
  const Int8Plan p = plan(m, w.n, k, kernel);
  reserve(m, k);
  last_k_ = k;

  auto* status = reinterpret_cast<kernels::Int8PrepStatus*>(status_.data());
  // Fused prep: 8-token CTAs on a decode batch quantize its activations themselves (no prep launch), every
  // CTA scanning all of X for outlier columns. Auto's plan no longer makes such CTAs where the fusion applies
  // (the separate pass with 16-token CTAs measured faster, see plan()); it stays for tuning. Never past
  // K = 4096 (H200, 2048x8192: 34 us fused against 27 us with the separate pass). Otherwise a prep pass
  // first.
  const bool fused = p.kernel == Int8Kernel::Skinny && p.tokens_per_cta == 8 &&
                     m <= kernels::kFusedPrepRows && k <= kFusedPrepMaxK;
  if (!fused) {
    kernels::Int8PrepArgs prep;
    prep.x = x;
    prep.bf16 = dtype == DType::BF16;
    prep.m = static_cast<int>(m);
    prep.k = static_cast<int>(k);
    prep.threshold = outliers_enabled(threshold) ? threshold : 0.0f;
    // The two halves of outlier_bits_ alternate (see Int8PrepArgs); the whole other half is cleared, as a
    // longer K later may read past this call's k / 32 words.
    const size_t half = outlier_bits_.size() / 2;
    prep.outlier_bits = outlier_bits_.data() + (bitmap_parity_ ? half : 0);
    prep.next_outlier_bits = outlier_bits_.data() + (bitmap_parity_ ? 0 : half);
    prep.next_bitmap_words = static_cast<int>(half);
    if (prep.threshold > 0.0f) bitmap_parity_ = !bitmap_parity_;
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
  a.fused_prep = fused;
  a.x = x;
  a.threshold = outliers_enabled(threshold) ? threshold : 0.0f;
  a.y = y;
  a.bf16 = dtype == DType::BF16;
  a.m = static_cast<int>(m);
  a.n = static_cast<int>(w.n);
  a.k = static_cast<int>(k);
  a.splits = p.splits;
  a.steps_per_split = p.steps_per_split;
  if (p.kernel == Int8Kernel::Skinny) {
    if (p.splits > 1) {
      splitk_.reserve(p.splits, m, w.n, ceil_div(w.n, p.rows_per_cta) * ceil_div(m, p.tokens_per_cta),
                      stream);
      a.partials = splitk_.partials();
      a.counters = splitk_.counters();
    }
    kernels::launch_int8_skinny(a, p.tokens_per_cta / 8, p.warps_k, stream);
  } else {
    if (x_map_base_ != xq_.data() || x_map_rows_ != m || x_map_cols_ != k) {
      x_map_ = make_tensor_map_2d(xq_.data(), 1, m, k, 128, 128);
      x_map_base_ = xq_.data(), x_map_rows_ = m, x_map_cols_ = k;
    }
    if (w_map_base_ != w.values.data() || w_map_rows_ != w.n || w_map_cols_ != k || w_map_box_ != p.block_n) {
      w_map_ = make_tensor_map_2d(w.values.data(), 1, w.n, k, p.block_n, 128);
      w_map_base_ = w.values.data(), w_map_rows_ = w.n, w_map_cols_ = k, w_map_box_ = p.block_n;
    }
    kernels::launch_int8_wide(a, x_map_, w_map_, p.block_n, p.ctas_per_sm, stream);
  }
  QLLM_CUDA_CHECK_LAUNCH();
}

int64_t Int8Gemm::check(cudaStream_t stream) {
  QLLM_CHECK(status_.size() > 0, "int8 GEMM: check() before any run()");
  kernels::Int8PrepStatus s{};
  QLLM_CUDA_CHECK(cudaMemcpyAsync(&s, status_.data(), sizeof(s), cudaMemcpyDeviceToHost, stream));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (s.first_nonfinite != ~0ull) {
    status_.fill_bytes(0xff);  // reported once: the next check covers the runs after this one
    const auto i = static_cast<int64_t>(s.first_nonfinite);
    fail("activation at row {}, column {} is NaN or Inf", i / last_k_, i % last_k_);
  }
  QLLM_CHECK(s.outlier_count <= kernels::kMaxOutlierColumns,
             "{} outlier columns (|x| >= {}): more than the {} the int8 GEMM supports; raise the threshold",
             s.outlier_count, threshold, kernels::kMaxOutlierColumns);
  return s.outlier_count;
}

}  // namespace qllm
