// qllm gemm-bench: the quantized GEMMs against cuBLAS bf16 on the weight shapes of Llama-3.2-1B (the seed
// project's second table), measured in the same run: CUDA-event medians, a GPU spin before each repetition
// (host enqueue time stays outside the events), weights rotated through copies that together exceed 2x the L2
// size, mean |Y_q - Y_bf16| on seeded N(0,1) activations and N(0, 0.02^2) weights, and the error against
// cuBLAS on the dequantized weights (a correctness check of the kernel itself).
//
// Modes: global, rowwise, g<N> (W4A16 with that INT4 scheme); int8 (LLM.int8(), outlier threshold 6) with
// --int8-outlier-frac of X's columns made outliers, or int8@<fraction> for an explicit fraction.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/table.h"
#include "kernels/runtime/device_info.h"
#include "qllm/error.h"
#include "qllm/quant.h"
#include "tools/qllm/commands.h"

#if QLLM_HAVE_CUDA
#include "bench/bench_kernels.h"
#include "bench/gpu_timing.h"
#include "kernels/gemm/cublas_gemm.h"
#include "kernels/gemm/int8.h"
#include "kernels/gemm/w4a16.h"
#include "kernels/quantize/quantize_int4.h"
#endif

namespace qllm::cli {

namespace {

struct TuningOptions {  // mirrors W4A16Tuning / Int8Tuning, which CPU-only builds do not have
  int tokens_per_cta = 0, warps_k = 0, block_n = 0, ctas_per_sm = 0, splits = 0;
};

struct GemmBenchOptions {
  std::vector<int64_t> m = {1, 16, 128, 512, 2048};
  std::vector<std::string> shapes = {"128256x2048", "2048x2048", "512x2048", "8192x2048", "2048x8192"};
  std::vector<std::string> modes = {"global", "rowwise", "g128"};
  std::string kernel = "auto";
  std::string dtype = "bf16";
  std::string scale_search = "mse";
  bool zero_point = false;
  double int8_outlier_frac = 0.0;
  TuningOptions tuning;
  int reps = 50;
  int warmup = 10;
  uint64_t seed = 0;
  bool json = false;
};

struct Shape {
  int64_t n = 0, k = 0;  // weight [out, in]
  std::string label;
};

Shape parse_shape(const std::string& text) {
  const auto x = text.find('x');
  QLLM_CHECK(x != std::string::npos, "--shapes: '{}' is not OUTxIN (e.g. 128256x2048)", text);
  Shape s;
  try {
    s.n = std::stoll(text.substr(0, x));
    s.k = std::stoll(text.substr(x + 1));
  } catch (const std::exception&) {
    fail("--shapes: '{}' is not OUTxIN (e.g. 128256x2048)", text);
  }
  QLLM_CHECK(s.n > 0 && s.k > 0, "--shapes: '{}' must be positive", text);
  s.label = text;
  return s;
}

// A mode: an INT4 scheme for W4A16, or int8 with a fraction of outlier columns planted in X.
struct Mode {
  std::string label;
  bool int8 = false;
  double outlier_frac = 0;
  Int4Scheme scheme;
};

Mode parse_mode(const std::string& text, const GemmBenchOptions& o) {
  Mode mode;
  mode.label = text;
  if (text == "int8" || text.starts_with("int8@")) {
    mode.int8 = true;
    mode.outlier_frac = o.int8_outlier_frac;
    if (text.size() > 5) {
      try {
        mode.outlier_frac = std::stod(text.substr(5));
      } catch (const std::exception&) {
        fail("--modes: '{}' is not int8@<fraction of outlier columns>", text);
      }
    }
    QLLM_CHECK(mode.outlier_frac >= 0 && mode.outlier_frac <= 0.5,
               "--modes: outlier fraction {} not in [0, 0.5]", mode.outlier_frac);
    return mode;
  }
  Int4Scheme& s = mode.scheme;
  s.zero_point = o.zero_point;
  s.search = parse_scale_search(o.scale_search);
  s.scale_dtype = parse_dtype(o.dtype);  // scales in the activation dtype: the GEMM uses them as they are
  if (text == "global") {
    s.granularity = Granularity::Global;
  } else if (text == "rowwise") {
    s.granularity = Granularity::Rowwise;
  } else if (text.size() > 1 && text[0] == 'g' &&
             text.find_first_not_of("0123456789", 1) == std::string::npos) {
    s.granularity = Granularity::Groupwise;
    s.group_size = std::stoll(text.substr(1));
  } else {
    fail("--modes: unknown mode '{}' (expected global, rowwise, g<group size>, int8 or int8@<fraction>)",
         text);
  }
  return mode;
}

#if QLLM_HAVE_CUDA

// Enough copies of a `bytes`-sized buffer to exceed 2x the L2 size together.
int rotation_copies(size_t bytes) {
  static const size_t l2_bytes = query_device().l2_bytes;  // one device per process
  return static_cast<int>(std::max<size_t>(1, (2 * l2_bytes) / std::max<size_t>(bytes, 1) + 1));
}

// One mode's quantized GEMM on one weight shape, built from the bf16 weights.
class QuantizedGemm {
 public:
  virtual ~QuantizedGemm() = default;
  virtual void reserve(int64_t m) = 0;  // workspaces for M tokens, before any timed run
  virtual void run(const void* x, int64_t m, void* y, int rep) = 0;  // rep selects the rotated weight copy
  virtual int copies() const = 0;
  virtual size_t weight_bytes() const = 0;
  virtual std::string plan_label(int64_t m) const = 0;
  virtual const void* dequantized() const = 0;  // 16-bit weights whose cuBLAS product the result should match
};

class W4A16Bench final : public QuantizedGemm {
 public:
  W4A16Bench(const void* w, const Shape& shape, const Mode& mode, DType dtype, const GemmBenchOptions& o)
      : shape_(shape), kernel_(parse_w4a16_kernel(o.kernel)) {
    Int4DeviceMatrix quantized(shape.n, shape.k, mode.scheme);
    Int4QuantizerCuda quantizer;
    quantizer.launch(w, dtype, shape.n, shape.k, mode.scheme, quantized.view(), nullptr);
    quantizer.check(nullptr);
    const W4A16Weights packed = repack_w4a16(quantized.download(), dtype);
    for (int i = 0, n = rotation_copies(packed.qweight.size()); i < n; ++i) {
      copies_.push_back(W4A16DeviceWeights::upload(packed));
    }
    dequantized_ = DeviceBuffer<uint16_t>(static_cast<size_t>(shape.n * shape.k), "dequantized weights");
    launch_dequantize_int4(quantized.packed.data(), quantized.scales.data(), quantized.zeros.data(), shape.n,
                           shape.k, mode.scheme, dequantized_.data(), dtype, nullptr);
    gemm_.tuning = {.tokens_per_cta = o.tuning.tokens_per_cta,
                    .rows_per_cta = o.tuning.block_n,
                    .warps_k = o.tuning.warps_k,
                    .splits = o.tuning.splits};
  }
  void reserve(int64_t m) override { gemm_.reserve(copies_[0].layout, m, kernel_); }
  void run(const void* x, int64_t m, void* y, int rep) override {
    gemm_.run(x, copies_[static_cast<size_t>(rep) % copies_.size()], y, m, nullptr, kernel_);
  }
  int copies() const override { return static_cast<int>(copies_.size()); }
  size_t weight_bytes() const override { return copies_[0].bytes(); }
  std::string plan_label(int64_t m) const override {
    const W4A16Plan p = gemm_.plan(m, copies_[0].layout, kernel_);
    if (p.kernel == W4A16Kernel::Skinny)
      return fmt::format("skinny t{} k{} s{}", p.tokens_per_cta, p.warps_k, p.splits);
    if (p.kernel == W4A16Kernel::Dequant) return "dequant+cublas";
    if (p.kernel == W4A16Kernel::Tiled)
      return fmt::format("tiled t{} s{}{}", p.tokens_per_cta, p.splits, p.cluster_splits ? " cluster" : "");
    return fmt::format("wgmma t{} n{} s{}", p.tokens_per_cta, p.rows_per_cta, p.splits);
  }
  const void* dequantized() const override { return dequantized_.data(); }

 private:
  Shape shape_;
  W4A16Kernel kernel_;
  W4A16Gemm gemm_;
  std::vector<W4A16DeviceWeights> copies_;
  DeviceBuffer<uint16_t> dequantized_;
};

class Int8Bench final : public QuantizedGemm {
 public:
  Int8Bench(const void* w, const Shape& shape, DType dtype, const GemmBenchOptions& o)
      : shape_(shape), dtype_(dtype), kernel_(parse_int8_kernel(o.kernel == "wgmma" ? "wide" : o.kernel)) {
    Int8DeviceWeights first = quantize_int8_weights_cuda(w, dtype, shape.n, shape.k, nullptr);
    dequantized_ = DeviceBuffer<uint16_t>(static_cast<size_t>(shape.n * shape.k), "dequantized weights");
    bench::dequantize_int8_rows_device(first.values.data(), first.absmax.data(), shape.n, shape.k,
                                       dequantized_.data(), dtype);
    const int n = rotation_copies(first.bytes());
    copies_.push_back(std::move(first));
    for (int i = 1; i < n; ++i)
      copies_.push_back(quantize_int8_weights_cuda(w, dtype, shape.n, shape.k, nullptr));
    gemm_.tuning = {.tokens_per_cta = o.tuning.tokens_per_cta,
                    .warps_k = o.tuning.warps_k,
                    .block_n = o.tuning.block_n,
                    .ctas_per_sm = o.tuning.ctas_per_sm,
                    .splits = o.tuning.splits};
  }
  void reserve(int64_t m) override {
    gemm_.reserve(shape_.n, shape_.k, m, kernel_);
    gemm_.clear_status(nullptr);
  }
  void run(const void* x, int64_t m, void* y, int rep) override {
    gemm_.run(x, copies_[static_cast<size_t>(rep) % copies_.size()], y, m, dtype_, nullptr, kernel_);
  }
  int copies() const override { return static_cast<int>(copies_.size()); }
  size_t weight_bytes() const override { return copies_[0].bytes(); }
  std::string plan_label(int64_t m) const override {
    const Int8Plan p = gemm_.plan(m, shape_.n, shape_.k, kernel_);
    return p.kernel == Int8Kernel::Skinny
               ? fmt::format("skinny t{} k{} s{}", p.tokens_per_cta, p.warps_k, p.splits)
               : fmt::format("wide n{} c{} s{}", p.block_n, p.ctas_per_sm, p.splits);
  }
  const void* dequantized() const override { return dequantized_.data(); }
  int64_t outliers() {
    gemm_.fetch_status(nullptr);
    QLLM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    return gemm_.check();
  }

 private:
  Shape shape_;
  DType dtype_;
  Int8Kernel kernel_;
  Int8Gemm gemm_;
  std::vector<Int8DeviceWeights> copies_;
  DeviceBuffer<uint16_t> dequantized_;
};

struct Baseline {
  bench::Timing timing;  // cuBLAS bf16 on the unquantized weights, rotated
};

void run_bench(const GemmBenchOptions& o, const std::vector<Shape>& shapes, const std::vector<Mode>& modes) {
  const DType dtype = parse_dtype(o.dtype);
  const bench::TimingOptions timing{.warmup = o.warmup, .reps = o.reps, .flush_l2 = false, .spacer_us = 20};
  CublasGemm cublas;
  Table table({"M", "mode", "out x in", "time_ms", "bf16_ms", "speedup_vs_bf16", "mae_vs_bf16", "TB/s",
               "TFLOP/s", "kernel", "rel_err_vs_dequant"});
  nlohmann::json raw = nlohmann::json::array();
  const size_t rows_total = shapes.size() * modes.size() * o.m.size();

  for (const Shape& shape : shapes) {
    const size_t w_count = static_cast<size_t>(shape.n * shape.k);
    std::vector<DeviceBuffer<uint16_t>> weights;
    for (int i = 0, n = rotation_copies(w_count * 2); i < n; ++i) {
      weights.emplace_back(w_count, "bf16 weights");
      bench::fill_normal_device(weights.back().data(), dtype, shape.n * shape.k, o.seed + 1, 0.f, 0.02f);
    }
    std::map<int64_t, Baseline> baselines;  // per M, measured once and shared by the modes

    for (const Mode& mode : modes) {
      std::unique_ptr<QuantizedGemm> q;
      if (mode.int8) {
        q = std::make_unique<Int8Bench>(weights[0].data(), shape, dtype, o);
      } else {
        q = std::make_unique<W4A16Bench>(weights[0].data(), shape, mode, dtype, o);
      }
      for (int64_t m : o.m) {
        fmt::print(stderr, "[{}/{}] M={} {} {}\n", table.rows() + 1, rows_total, m, mode.label, shape.label);
        const size_t y_count = static_cast<size_t>(m * shape.n);
        DeviceBuffer<uint16_t> x(static_cast<size_t>(m * shape.k), "activations");
        bench::fill_normal_device(x.data(), dtype, m * shape.k, o.seed + 2 + static_cast<uint64_t>(m), 0.f,
                                  1.f);
        const int planted =
            mode.int8 ? static_cast<int>(std::lround(mode.outlier_frac * static_cast<double>(shape.k))) : 0;
        if (mode.int8 && mode.outlier_frac > 0) {
          bench::plant_outlier_columns_device(x.data(), dtype, m, shape.k, std::max(planted, 1), o.seed + 3,
                                              10.f);
        }
        if (!baselines.contains(m)) {
          DeviceBuffer<uint16_t> scratch(y_count, "bf16 output (timed)");
          Baseline b;
          b.timing = bench::time_cuda(
              [&](int rep) {
                cublas.run(x.data(), weights[static_cast<size_t>(rep) % weights.size()].data(),
                           scratch.data(), m, shape.n, shape.k, dtype, nullptr);
              },
              timing);
          baselines.emplace(m, b);
        }
        const Baseline& base = baselines.at(m);
        DeviceBuffer<uint16_t> y_bf16(y_count, "bf16 output"),
            y_dequant(y_count, "output on dequantized weights");
        cublas.run(x.data(), weights[0].data(), y_bf16.data(), m, shape.n, shape.k, dtype, nullptr);
        cublas.run(x.data(), q->dequantized(), y_dequant.data(), m, shape.n, shape.k, dtype, nullptr);

        DeviceBuffer<uint16_t> y(y_count, "quantized output");
        y.fill_bytes(0xff);  // poison: NaN where nothing is written
        q->reserve(m);
        q->run(x.data(), m, y.data(), 0);
        const bench::Timing t =
            bench::time_cuda([&](int rep) { q->run(x.data(), m, y.data(), rep); }, timing);
        int64_t outliers = 0;
        if (mode.int8) outliers = static_cast<Int8Bench*>(q.get())->outliers();
        const bench::DiffStats vs_bf16 =
            bench::diff_stats_device(y.data(), y_bf16.data(), dtype, m * shape.n);
        const bench::DiffStats vs_dequant =
            bench::diff_stats_device(y.data(), y_dequant.data(), dtype, m * shape.n);
        QLLM_CHECK(vs_bf16.nonfinite == 0, "M={} {} {}: {} non-finite outputs", m, mode.label, shape.label,
                   vs_bf16.nonfinite);

        const double bytes = static_cast<double>(q->weight_bytes() + (m * shape.k + y_count) * 2);
        const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(shape.n * shape.k);
        const std::string label = q->plan_label(m);
        table.add_row({m, mode.label, shape.label, Cell::number(t.median_ms, 4),
                       Cell::number(base.timing.median_ms, 4),
                       Cell::number(base.timing.median_ms / t.median_ms, 2),
                       Cell::number(vs_bf16.mean_abs_diff(m * shape.n), 4),
                       Cell::number(bytes / (t.median_ms * 1e-3) / 1e12, 2),
                       Cell::number(flops / (t.median_ms * 1e-3) / 1e12, 1), label,
                       Cell::number(vs_dequant.rel_fro(), 5)});
        raw.push_back({{"m", m},
                       {"mode", mode.label},
                       {"shape", shape.label},
                       {"qllm_ms", t.median_ms},
                       {"qllm_min_ms", t.min_ms},
                       {"qllm_max_ms", t.max_ms},
                       {"bf16_ms", base.timing.median_ms},
                       {"bf16_min_ms", base.timing.min_ms},
                       {"reps", t.reps},
                       {"weight_copies", q->copies()},
                       {"bf16_weight_copies", weights.size()},
                       {"kernel", label},
                       {"outlier_columns", outliers}});
      }
    }
  }

  const std::string device = bench::device_name(), date = bench::today_iso();
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"command", "gemm-bench"},
                                      {"device", device},
                                      {"date", date},
                                      {"dtype", o.dtype},
                                      {"scale_search", o.scale_search},
                                      {"zero_point", o.zero_point},
                                      {"table", table.to_json()},
                                      {"timings", raw}}
                           .dump(2));
    return;
  }
  fmt::print(
      "Quantized GEMM vs cuBLAS {} (same run), {}, {}; median of {} CUDA-event timings, weights rotated "
      "through copies > 2x L2; X ~ N(0,1), W ~ N(0,0.02^2), INT4 {} scales, scale search {}\n\n",
      o.dtype, device, date, o.reps, o.zero_point ? "asymmetric" : "symmetric", o.scale_search);
  fmt::print("{}", table.to_text());
}

#endif  // QLLM_HAVE_CUDA

void run(const GemmBenchOptions& o) {
  // Arguments first, so that mistakes are reported on any machine.
  std::vector<Shape> shapes;
  for (const auto& s : o.shapes) shapes.push_back(parse_shape(s));
  std::vector<Mode> modes;
  for (const auto& mode : o.modes) modes.push_back(parse_mode(mode, o));
  for (int64_t m : o.m) QLLM_CHECK(m >= 1, "--m: {} must be at least 1", m);
  const DType dtype = parse_dtype(o.dtype);
  QLLM_CHECK(dtype == DType::BF16 || dtype == DType::F16, "--dtype must be bf16 or f16, not {}", o.dtype);
  QLLM_CHECK(o.kernel == "auto" || o.kernel == "skinny" || o.kernel == "tiled" || o.kernel == "wgmma" ||
                 o.kernel == "wide" || o.kernel == "dequant",
             "--kernel must be auto, skinny, tiled, wgmma, dequant (W4A16) or wide (int8), not '{}'",
             o.kernel);
  const DeviceInfo info = query_device();
  QLLM_CHECK(info.available, "gemm-bench needs a CUDA GPU: {}", info.reason);
#if QLLM_HAVE_CUDA
  run_bench(o, shapes, modes);
#endif
}

}  // namespace

void add_gemm_bench(CLI::App& app) {
  auto o = std::make_shared<GemmBenchOptions>();
  CLI::App* cmd =
      app.add_subcommand("gemm-bench", "quantized GEMMs vs cuBLAS bf16 on the Llama-3.2-1B weight shapes");
  cmd->add_option("--m", o->m, "token counts (rows of X)")->delimiter(',')->capture_default_str();
  cmd->add_option("--shapes", o->shapes, "weight shapes OUTxIN")->delimiter(',')->capture_default_str();
  cmd->add_option("--modes", o->modes, "global, rowwise, g<group size>, int8, int8@<outlier fraction>")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--kernel", o->kernel,
                  "auto; skinny, tiled, wgmma or dequant (W4A16); skinny or wide (int8)")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "activation dtype: bf16 or f16")->capture_default_str();
  cmd->add_option("--scale-search", o->scale_search, "INT4 scale search: none, mse or mae")
      ->capture_default_str();
  cmd->add_flag("--zero-point", o->zero_point, "asymmetric INT4 quantization");
  cmd->add_option("--int8-outlier-frac", o->int8_outlier_frac,
                  "fraction of X's columns made outliers (int8 mode)")
      ->capture_default_str();
  cmd->add_option("--tokens-per-cta", o->tuning.tokens_per_cta, "tuning: token tile (0 = automatic)");
  cmd->add_option("--warps-k", o->tuning.warps_k, "tuning: skinny warps splitting K (0 = automatic)");
  cmd->add_option("--block-n", o->tuning.block_n,
                  "tuning: weight rows per CTA of the wide int8 and wgmma W4A16 kernels (0 = automatic)");
  cmd->add_option("--ctas-per-sm", o->tuning.ctas_per_sm,
                  "tuning: wide int8 kernel's resident CTAs per SM, 1 or 2 (0 = automatic)");
  cmd->add_option("--splits", o->tuning.splits, "tuning: CTAs splitting K (0 = automatic)");
  cmd->add_option("--reps", o->reps, "timed repetitions")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed repetitions first")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of X and W")->check(kSeedValidator)->capture_default_str();
  cmd->add_flag("--json", o->json, "print JSON instead of a table");
  cmd->callback([o] { run(*o); });
}

}  // namespace qllm::cli
