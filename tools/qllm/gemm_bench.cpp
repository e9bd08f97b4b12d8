// qllm gemm-bench: the W4A16 GEMM against cuBLAS bf16 on the weight shapes of Llama-3.2-1B (the seed
// project's second table), measured in the same run: CUDA-event medians, weights rotated through copies
// that together exceed 2x the L2 size, mean |Y_int4 - Y_bf16| on seeded N(0,1) activations and
// N(0, 0.02^2) weights, and a check against cuBLAS on the dequantized weights.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/table.h"
#include "kernels/device_info.h"
#include "qllm/error.h"
#include "qllm/quant.h"
#include "tools/qllm/commands.h"

#if QLLM_HAVE_CUDA
#include "bench/bench_kernels.h"
#include "bench/cublas_gemm.h"
#include "bench/gpu_timing.h"
#include "kernels/gemm_w4a16.h"
#include "kernels/quantize_int4.h"
#endif

namespace qllm::cli {

namespace {

// Mirrors W4A16Tuning (kernels/gemm_w4a16.h), which CPU-only builds do not have.
struct W4A16TuningOptions {
  int tokens_per_cta = 0;
  int warps_k = 0;
  int warpgroups = 0;
  int splits = 0;
};

struct GemmBenchOptions {
  std::vector<int64_t> m = {1, 16, 128, 512, 2048};
  std::vector<std::string> shapes = {"128256x2048", "2048x2048", "512x2048", "8192x2048", "2048x8192"};
  std::vector<std::string> modes = {"global", "rowwise", "g128"};
  std::string kernel = "auto";
  std::string dtype = "bf16";
  std::string scale_search = "mse";
  bool zero_point = false;
  W4A16TuningOptions tuning;
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

Int4Scheme parse_mode(const std::string& mode, const GemmBenchOptions& o) {
  Int4Scheme s;
  s.zero_point = o.zero_point;
  s.search = parse_scale_search(o.scale_search);
  s.scale_dtype = parse_dtype(o.dtype);  // scales in the activation dtype: the GEMM uses them as they are
  if (mode == "global") {
    s.granularity = Granularity::Global;
  } else if (mode == "rowwise") {
    s.granularity = Granularity::Rowwise;
  } else if (mode.size() > 1 && mode[0] == 'g' && mode.find_first_not_of("0123456789", 1) == std::string::npos) {
    s.granularity = Granularity::Groupwise;
    s.group_size = std::stoll(mode.substr(1));
  } else {
    fail("--modes: unknown mode '{}' (expected global, rowwise or g<group size>, e.g. g128)", mode);
  }
  return s;
}

#if QLLM_HAVE_CUDA

// Enough copies of a `bytes`-sized buffer to exceed 2x the L2 size together.
int rotation_copies(size_t bytes) {
  const DeviceInfo info = query_device();
  return static_cast<int>(std::max<size_t>(1, (2 * info.l2_bytes) / std::max<size_t>(bytes, 1) + 1));
}

template <typename T>
std::vector<T> make_copies(int count, const std::function<T()>& make) {
  std::vector<T> copies;
  for (int i = 0; i < count; ++i) copies.push_back(make());
  return copies;
}

struct BaselineResult {
  bench::Timing timing;
  DeviceBuffer<uint16_t> y;  // cuBLAS output on the unquantized weights (for mae_vs_bf16)
};

void run_bench(const GemmBenchOptions& o, const std::vector<Shape>& shapes) {
  const DType dtype = parse_dtype(o.dtype);
  const W4A16Kernel kernel = parse_w4a16_kernel(o.kernel);
  const bench::TimingOptions timing{.warmup = o.warmup, .reps = o.reps, .flush_l2 = false, .spacer_us = 20};

  bench::CublasGemm cublas;
  W4A16Gemm gemm;
  gemm.tuning = {.tokens_per_cta = o.tuning.tokens_per_cta,
                 .warps_k = o.tuning.warps_k,
                 .warpgroups = o.tuning.warpgroups,
                 .splits = o.tuning.splits};
  Table table({"M", "mode", "out x in", "time_ms", "bf16_ms", "speedup_vs_bf16", "mae_vs_bf16", "TB/s", "TFLOP/s",
               "kernel", "rel_err_vs_dequant"});
  nlohmann::json raw = nlohmann::json::array();
  const size_t rows_total = shapes.size() * o.modes.size() * o.m.size();

  for (const Shape& shape : shapes) {
    // Unquantized weights, rotated for the baseline.
    const size_t w_bytes = static_cast<size_t>(shape.n * shape.k) * 2;
    const int w_copies = rotation_copies(w_bytes);
    auto weights = make_copies<DeviceBuffer<uint16_t>>(w_copies, [&] {
      return DeviceBuffer<uint16_t>(static_cast<size_t>(shape.n * shape.k), "bf16 weights");
    });
    for (auto& w : weights) bench::fill_normal_device(w.data(), dtype, shape.n * shape.k, o.seed + 1, 0.f, 0.02f);
    std::map<int64_t, BaselineResult> baseline;  // per M, measured once and shared by the modes

    for (const std::string& mode : o.modes) {
      const Int4Scheme scheme = parse_mode(mode, o);
      Int4DeviceMatrix quantized(shape.n, shape.k, scheme);
      Int4QuantizerCuda quantizer;
      quantizer.launch(weights[0].data(), dtype, shape.n, shape.k, scheme, quantized.view());
      quantizer.check();
      const W4A16Weights packed = repack_w4a16(quantized.download(), dtype);
      auto q_copies = make_copies<W4A16DeviceWeights>(rotation_copies(packed.qweight.size()),
                                                      [&] { return W4A16DeviceWeights::upload(packed); });
      // The dequantized weights, for the correctness column.
      DeviceBuffer<uint16_t> dequantized(static_cast<size_t>(shape.n * shape.k), "dequantized weights");
      launch_dequantize_int4(quantized.packed.data(), quantized.scales.data(), quantized.zeros.data(), shape.n,
                             shape.k, scheme, dequantized.data(), dtype);

      for (int64_t m : o.m) {
        fmt::print(stderr, "[{}/{}] M={} {} {}\n", table.rows() + 1, rows_total, m, mode, shape.label);
        DeviceBuffer<uint16_t> x(static_cast<size_t>(m * shape.k), "activations");
        bench::fill_normal_device(x.data(), dtype, m * shape.k, o.seed + 2 + static_cast<uint64_t>(m), 0.f, 1.f);
        const size_t y_count = static_cast<size_t>(m * shape.n);
        if (!baseline.contains(m)) {
          BaselineResult b;
          b.y = DeviceBuffer<uint16_t>(y_count, "bf16 output");
          cublas.run(x.data(), weights[0].data(), b.y.data(), m, shape.n, shape.k, dtype);
          DeviceBuffer<uint16_t> scratch(y_count, "bf16 output (timed)");
          b.timing = bench::time_cuda(
              [&](int rep) {
                cublas.run(x.data(), weights[rep % w_copies].data(), scratch.data(), m, shape.n, shape.k, dtype);
              },
              timing);
          baseline.emplace(m, std::move(b));
        }
        const BaselineResult& base = baseline.at(m);

        DeviceBuffer<uint16_t> y(y_count, "int4 output");
        y.fill_bytes(0xff);  // poison: NaN where nothing is written
        gemm.run(x.data(), m, shape.k, q_copies[0], y.data(), nullptr, kernel);
        const bench::Timing t = bench::time_cuda(
            [&](int rep) {
              gemm.run(x.data(), m, shape.k, q_copies[rep % q_copies.size()], y.data(), nullptr, kernel);
            },
            timing);
        DeviceBuffer<uint16_t> y_dequant(y_count, "output on dequantized weights");
        cublas.run(x.data(), dequantized.data(), y_dequant.data(), m, shape.n, shape.k, dtype);
        const bench::DiffStats vs_bf16 = bench::diff_stats_device(y.data(), base.y.data(), dtype, m * shape.n);
        const bench::DiffStats vs_dequant = bench::diff_stats_device(y.data(), y_dequant.data(), dtype, m * shape.n);
        QLLM_CHECK(vs_bf16.nonfinite == 0, "M={} {} {}: {} non-finite outputs", m, mode, shape.label,
                   vs_bf16.nonfinite);

        const double bytes = static_cast<double>(packed.qweight.size() + packed.scales.size() * 2 +
                                                 packed.zero_offsets.size() * 2 + (m * shape.k + y_count) * 2);
        const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(shape.n * shape.k);
        const W4A16Plan plan = gemm.plan(m, packed.layout, kernel);
        const std::string kernel_label =
            plan.kernel == W4A16Kernel::Skinny
                ? fmt::format("skinny t{} k{} s{}", plan.tokens_per_cta, plan.warps_k, plan.splits)
                : fmt::format("wgmma t{} w{} s{}", plan.tokens_per_cta, plan.warpgroups, plan.splits);
        table.add_row({m, mode, shape.label, Cell::number(t.median_ms, 4), Cell::number(base.timing.median_ms, 4),
                       Cell::number(base.timing.median_ms / t.median_ms, 2),
                       Cell::number(vs_bf16.mean_abs_diff(m * shape.n), 4),
                       Cell::number(bytes / (t.median_ms * 1e-3) / 1e12, 2),
                       Cell::number(flops / (t.median_ms * 1e-3) / 1e12, 1), kernel_label,
                       Cell::number(vs_dequant.rel_fro(), 5)});
        raw.push_back({{"m", m}, {"mode", mode}, {"shape", shape.label}, {"qllm_ms", t.median_ms},
                       {"qllm_min_ms", t.min_ms}, {"qllm_max_ms", t.max_ms}, {"bf16_ms", base.timing.median_ms},
                       {"bf16_min_ms", base.timing.min_ms}, {"reps", t.reps}, {"weight_copies", q_copies.size()},
                       {"bf16_weight_copies", w_copies}, {"kernel", kernel_label}});
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
  fmt::print("W4A16 GEMM vs cuBLAS {} (same run), {}, {}; median of {} CUDA-event timings, weights rotated "
             "through copies > 2x L2; X ~ N(0,1), W ~ N(0,0.02^2), {} scales, scale search {}\n\n",
             o.dtype, device, date, o.reps, o.zero_point ? "asymmetric" : "symmetric", o.scale_search);
  fmt::print("{}", table.to_text());
}

#endif  // QLLM_HAVE_CUDA

void run(const GemmBenchOptions& o) {
  // Arguments first, so that mistakes are reported on any machine.
  std::vector<Shape> shapes;
  for (const auto& s : o.shapes) shapes.push_back(parse_shape(s));
  for (const auto& mode : o.modes) parse_mode(mode, o);
  for (int64_t m : o.m) QLLM_CHECK(m >= 1, "--m: {} must be at least 1", m);
  const DType dtype = parse_dtype(o.dtype);
  QLLM_CHECK(dtype == DType::BF16 || dtype == DType::F16, "--dtype must be bf16 or f16, not {}", o.dtype);
  QLLM_CHECK(o.kernel == "auto" || o.kernel == "skinny" || o.kernel == "wgmma",
             "--kernel must be auto, skinny or wgmma, not '{}'", o.kernel);
  const DeviceInfo info = query_device();
  QLLM_CHECK(info.available, "gemm-bench needs a CUDA GPU ({})", info.reason);
#if QLLM_HAVE_CUDA
  run_bench(o, shapes);
#endif
}

}  // namespace

void add_gemm_bench(CLI::App& app) {
  auto o = std::make_shared<GemmBenchOptions>();
  CLI::App* cmd = app.add_subcommand("gemm-bench", "W4A16 GEMM vs cuBLAS bf16 on the Llama-3.2-1B weight shapes");
  cmd->add_option("--m", o->m, "token counts (rows of X)")->delimiter(',')->capture_default_str();
  cmd->add_option("--shapes", o->shapes, "weight shapes OUTxIN")->delimiter(',')->capture_default_str();
  cmd->add_option("--modes", o->modes, "global, rowwise, g<group size>")->delimiter(',')->capture_default_str();
  cmd->add_option("--kernel", o->kernel, "auto, skinny or wgmma")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "activation dtype: bf16 or f16")->capture_default_str();
  cmd->add_option("--scale-search", o->scale_search, "none, mse or mae")->capture_default_str();
  cmd->add_flag("--zero-point", o->zero_point, "asymmetric quantization");
  cmd->add_option("--tokens-per-cta", o->tuning.tokens_per_cta, "tuning: token tile (0 = automatic)");
  cmd->add_option("--warps-k", o->tuning.warps_k, "tuning: skinny warps splitting K (0 = automatic)");
  cmd->add_option("--warpgroups", o->tuning.warpgroups, "tuning: wgmma warpgroups per CTA (0 = automatic)");
  cmd->add_option("--splits", o->tuning.splits, "tuning: CTAs splitting K (0 = automatic)");
  cmd->add_option("--reps", o->reps, "timed repetitions")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed repetitions first")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of X and W")->capture_default_str();
  cmd->add_flag("--json", o->json, "print JSON instead of a table");
  cmd->callback([o] { run(*o); });
}

}  // namespace qllm::cli
