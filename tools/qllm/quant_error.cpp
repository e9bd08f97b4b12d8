// qllm quant-error: quantization error and compression of every INT4 scheme and of LLM.int8()'s vector-wise
// int8 on a seeded random matrix (the seed project's first table), on the CPU reference or the CUDA kernels.
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/checked_math.h"
#include "core/random.h"
#include "core/table.h"
#include "kernels/runtime/device_info.h"
#include "qllm/error.h"
#include "qllm/int8.h"
#include "qllm/quant.h"
#include "tools/qllm/commands.h"

#if QLLM_HAVE_CUDA
#include "bench/gpu_timing.h"
#include "kernels/gemm/int8.h"
#include "kernels/quantize/quantize_int4.h"
#endif

namespace qllm::cli {

namespace {

struct QuantErrorOptions {
  int64_t rows = 4096;
  int64_t cols = 4096;
  uint64_t seed = 0;
  std::string dtype = "f16";
  std::string device = "cpu";
  bool zero_point = false;
  std::string scale_search = "mae";
  std::string scale_dtype = "f16";
  std::vector<int64_t> group_sizes = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  bool group_sizes_given = false;  // explicit sizes may leave a partial last group; the default list keeps
                                   // those up to K (a larger group is ROWWISE again)
  int reps = 20;
  bool int8 = true;  // also the LLM.int8() row
  bool json = false;
};

// The rows of the table: GLOBAL, ROWWISE, then GROUPWISE for every requested size (a size that does not
// divide K leaves a partial last group in each row, docs/FORMATS.md).
std::vector<Int4Scheme> table_schemes(const QuantErrorOptions& o) {
  Int4Scheme base;
  base.zero_point = o.zero_point;
  base.search = parse_scale_search(o.scale_search);
  base.scale_dtype = parse_dtype(o.scale_dtype);
  std::vector<Int4Scheme> schemes;
  for (Granularity g : {Granularity::Global, Granularity::Rowwise}) {
    Int4Scheme s = base;
    s.granularity = g;
    schemes.push_back(s);
  }
  for (int64_t g : o.group_sizes) {
    if (o.group_sizes_given) {
      QLLM_CHECK(g > 0 && g % 2 == 0, "--group-sizes: {} is not a positive even number", g);
    } else if (g > o.cols) {
      continue;
    }
    Int4Scheme s = base;
    s.granularity = Granularity::Groupwise;
    s.group_size = g;
    schemes.push_back(s);
  }
  return schemes;
}

struct RowResult {
  Int4Matrix matrix;
  double gbps = 0;  // CUDA only: (weights read + bytes stored) / median kernel time
};

// Quantizes on the chosen device; for CUDA also times the kernel with L2 flushed between repetitions.
// `device_weights` is the same matrix already on the GPU (nullptr for the CPU reference).
template <typename T>
RowResult quantize_row(const std::vector<T>& w, const T* device_weights, DType dtype,
                       const Int4Scheme& scheme, const QuantErrorOptions& o) {
  RowResult r;
  if (device_weights == nullptr) {
    r.matrix = quantize_int4_ref(std::span<const T>(w), o.rows, o.cols, scheme);
    return r;
  }
#if QLLM_HAVE_CUDA
  Int4DeviceMatrix m(o.rows, o.cols, scheme);
  Int4QuantizerCuda quantizer;
  quantizer.launch(device_weights, dtype, o.rows, o.cols, scheme, m.view(), nullptr);
  quantizer.check(nullptr);
  const bench::Timing t = bench::time_cuda(
      [&](int) { quantizer.launch(device_weights, dtype, o.rows, o.cols, scheme, m.view(), nullptr); },
      {.warmup = 3, .reps = o.reps});
  quantizer.check(nullptr);
  r.matrix = m.download();
  const double bytes = static_cast<double>(w.size() * sizeof(T) + r.matrix.stored_bytes());
  r.gbps = bytes / (t.median_ms * 1e-3) / 1e9;
#else
  (void)dtype;
#endif
  return r;
}

// LLM.int8()'s vector-wise quantization of the same matrix: one absmax (float) per row.
template <typename T>
std::vector<Cell> int8_row(const std::vector<T>& w, const std::vector<float>& original,
                           const T* device_weights, DType dtype, const QuantErrorOptions& o) {
  Int8Rows q;
  if (device_weights == nullptr) {
    q = quantize_int8_rows_ref(original, o.rows, o.cols);
  } else {
#if QLLM_HAVE_CUDA
    q = quantize_int8_weights_cuda(device_weights, dtype, o.rows, o.cols, nullptr).download();
#else
    (void)dtype;
#endif
  }
  const QuantError e = measure_error(original, dequantize_int8_rows_ref(q));
  std::vector<Cell> row = {
      "INT8_VECTORWISE",
      Cell::missing(),
      Cell::number(e.mae, 6),
      Cell::number(static_cast<double>(w.size() * sizeof(T)) / static_cast<double>(q.stored_bytes()), 6),
      Cell::number(e.max_abs_err, 6),
      Cell::number(e.rel_fro_err, 6)};
  if (device_weights != nullptr) {
    // No bandwidth: the one-call API allocates its output and synchronizes for the NaN check, so a timing
    // of it would not be the kernel's (an offline step, once per weight matrix).
    row.push_back(Cell::missing());
    row.push_back(Cell::missing());
  }
  return row;
}

template <typename T>
void run_table(const QuantErrorOptions& o, DType dtype) {
  const bool cuda = o.device == "cuda";
  std::vector<T> w(static_cast<size_t>(o.rows * o.cols));
  Rng rng(o.seed);
  fill_normal(std::span<T>(w), rng);
  std::vector<float> original(w.size());
  for (size_t i = 0; i < w.size(); ++i) original[i] = to_float(w[i]);

  std::string device_label = "cpu (reference)";
  double copy_gbps = 0;
  const T* device_weights = nullptr;
#if QLLM_HAVE_CUDA
  DeviceBuffer<T> weights_on_device;
  if (cuda) {
    device_label = bench::device_name();
    copy_gbps = bench::measure_copy_bandwidth_gbps();
    weights_on_device = to_device(std::span<const T>(w), "weights");
    device_weights = weights_on_device.data();
  }
#endif

  std::vector<std::string> columns = {"quantization_type", "group_size",  "mae",
                                      "compression",       "max_abs_err", "rel_fro_err"};
  if (cuda) columns.insert(columns.end(), {"GB/s", "pct_of_copy"});
  Table table(columns);
  const auto schemes = table_schemes(o);
  for (size_t i = 0; i < schemes.size(); ++i) {
    const Int4Scheme& s = schemes[i];
    if (!o.json) fmt::print(stderr, "[{}/{}] {}\n", i + 1, schemes.size(), s.describe());
    const RowResult r = quantize_row(w, device_weights, dtype, s, o);
    const QuantError e = measure_error(original, dequantize_int4_ref(r.matrix));
    std::vector<Cell> row = {std::string(granularity_name(s.granularity)),
                             s.granularity == Granularity::Groupwise ? Cell(s.group_size) : Cell::missing(),
                             Cell::number(e.mae, 6),
                             Cell::number(r.matrix.compression(dtype), 6),
                             Cell::number(e.max_abs_err, 6),
                             Cell::number(e.rel_fro_err, 6)};
    if (cuda) {
      row.push_back(Cell::number(r.gbps, 1));
      row.push_back(Cell::number(100.0 * r.gbps / copy_gbps, 1));
    }
    table.add_row(std::move(row));
  }

  if (o.int8) table.add_row(int8_row(w, original, device_weights, dtype, o));

  const std::string date = [] {
#if QLLM_HAVE_CUDA
    return bench::today_iso();
#else
    return std::string();
#endif
  }();
  if (o.json) {
    nlohmann::json out = {{"command", "quant-error"},
                          {"rows", o.rows},
                          {"cols", o.cols},
                          {"seed", o.seed},
                          {"dtype", o.dtype},
                          {"zero_point", o.zero_point},
                          {"scale_search", o.scale_search},
                          {"scale_dtype", o.scale_dtype},
                          {"device", device_label},
                          {"table", table.to_json()}};
    if (cuda) out["copy_gbps"] = copy_gbps, out["date"] = date;
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("Quantization error: {} x {} {} N(0,1), seed {}; INT4 {}, {} scales, scale search {}\n", o.rows,
             o.cols, o.dtype, o.seed, o.zero_point ? "asymmetric (zero point)" : "symmetric", o.scale_dtype,
             o.scale_search);
  fmt::print("device: {}{}\n\n", device_label,
             cuda ? fmt::format(", measured copy bandwidth {:.0f} GB/s, {}", copy_gbps, date) : "");
  fmt::print("{}", table.to_text());
}

void run(const QuantErrorOptions& o) {
  QLLM_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, not '{}'", o.device);
  if (o.device == "cuda") {
    const DeviceInfo info = query_device();
    QLLM_CHECK(info.available, "--device cuda: {}", info.reason);
  }
  const DType dtype = parse_dtype(o.dtype);
  QLLM_CHECK(dtype == DType::F16 || dtype == DType::BF16, "--dtype must be f16 or bf16, not {}", o.dtype);
  const GroupLayout layout =
      validate_int4_shape(o.rows, o.cols, Int4Scheme{.granularity = Granularity::Rowwise});
  // The source matrix, its f32 copy, a dequantized copy and the packed result are held at once.
  const int64_t elements = layout.group_elems * layout.num_groups;
  check_fits_in_memory(static_cast<uint64_t>(checked_mul(elements, 16, "--rows x --cols")),
                       fmt::format("a {} x {} matrix", o.rows, o.cols));
  if (dtype == DType::F16) {
    run_table<Half>(o, dtype);
  } else {
    run_table<BFloat16>(o, dtype);
  }
}

}  // namespace

void add_quant_error(CLI::App& app) {
  auto options = std::make_shared<QuantErrorOptions>();
  CLI::App* cmd = app.add_subcommand("quant-error", "INT4 quantization error and compression table");
  cmd->add_option("--rows", options->rows, "rows (N, output features)")->capture_default_str();
  cmd->add_option("--cols", options->cols, "columns (K, input features)")->capture_default_str();
  cmd->add_option("--seed", options->seed, "seed of the N(0,1) matrix")
      ->check(kSeedValidator)
      ->capture_default_str();
  cmd->add_option("--dtype", options->dtype, "element type of the matrix: f16 or bf16")
      ->capture_default_str();
  cmd->add_option("--device", options->device, "cpu (reference) or cuda")->capture_default_str();
  cmd->add_flag("--zero-point", options->zero_point, "asymmetric quantization with a zero point per group");
  cmd->add_option("--scale-search", options->scale_search, "none, mse or mae")->capture_default_str();
  cmd->add_option("--scale-dtype", options->scale_dtype, "f16 or bf16")->capture_default_str();
  cmd->add_option("--group-sizes", options->group_sizes, "GROUPWISE rows to print")->capture_default_str();
  cmd->add_option("--reps", options->reps, "timed repetitions per row (cuda)")->capture_default_str();
  cmd->add_flag("!--no-int8", options->int8, "leave out the INT8_VECTORWISE row");
  cmd->add_flag("--json", options->json, "print JSON instead of a table");
  cmd->callback([options, cmd] {
    options->group_sizes_given = cmd->count("--group-sizes") > 0;
    run(*options);
  });
}

}  // namespace qllm::cli
