// CUDA INT4 quantize/dequantize against the CPU reference: bit for bit, on fresh random inputs over a sweep
// of shapes, group sizes (warp path, block path, global path; partial last groups where g does not divide
// K), both input dtypes, both scale dtypes, symmetric and asymmetric, every scale search. Outputs are
// poisoned before each run.
#include <gtest/gtest.h>

#include <limits>
#include <tuple>

#include "kernels/quantize/quantize_int4.h"
#include "qllm/error.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::error_of;
using testing::fresh_seed;
using testing::random_normal;

struct Case {
  int64_t rows, cols;
  Int4Scheme scheme;
};

std::vector<Case> sweep() {
  std::vector<Case> cases;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 16},
      {3, 96},
      {5, 128},
      {64, 256},
      {17, 4096 + 16},
      {2, 8192},
      {33, 1024},
      {7, 6},
      {16, 4096},
      // partial last groups: SmolLM2's K = 576 with g128, the `small` preset's 192 and 320, odd tails
      {64, 576},
      {192, 320},
      {16, 192},
      {8, 100},
      {5, 34}};
  for (auto [rows, cols] : shapes) {
    for (bool zp : {false, true}) {
      for (ScaleSearch search : {ScaleSearch::None, ScaleSearch::Mse, ScaleSearch::Mae}) {
        for (DType scale_dtype : {DType::F16, DType::BF16}) {
          Int4Scheme base{.zero_point = zp, .scale_dtype = scale_dtype, .search = search};
          for (Granularity g : {Granularity::Global, Granularity::Rowwise}) {
            Int4Scheme s = base;
            s.granularity = g;
            cases.push_back({rows, cols, s});
          }
          for (int64_t g : {8, 16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048, 4096}) {
            if (g > cols) continue;  // one partial group per row: the ROWWISE case above
            Int4Scheme s = base;
            s.group_size = g;
            cases.push_back({rows, cols, s});
          }
        }
      }
    }
  }
  return cases;
}

// The CUDA dequantizers (to f16 and to bf16) equal the reference's bit for bit.
void expect_dequantize_bit_identical(const Int4Matrix& m) {
  const auto half_ref = dequantize_int4_to_half_ref(m);
  const auto half_gpu = dequantize_int4_to_half_cuda(m);
  const auto bf16_ref = dequantize_int4_to_bf16_ref(m);
  const auto bf16_gpu = dequantize_int4_to_bf16_cuda(m);
  for (size_t i = 0; i < half_ref.size(); ++i) {
    ASSERT_EQ(half_gpu[i].bits, half_ref[i].bits) << "fp16 dequant element " << i;
    ASSERT_EQ(bf16_gpu[i].bits, bf16_ref[i].bits) << "bf16 dequant element " << i;
  }
}

template <typename T>
void expect_bit_identical(const Case& c, Rng& rng) {
  const auto w = random_normal<T>(static_cast<size_t>(c.rows * c.cols), rng, 0.02 + rng.uniform());
  const Int4Matrix ref = quantize_int4_ref(std::span<const T>(w), c.rows, c.cols, c.scheme);
  const Int4Matrix gpu = quantize_int4_cuda(std::span<const T>(w), c.rows, c.cols, c.scheme);
  ASSERT_EQ(gpu.packed, ref.packed);
  ASSERT_EQ(gpu.scales, ref.scales);
  ASSERT_EQ(gpu.zeros, ref.zeros);
  expect_dequantize_bit_identical(ref);
}

// Min offset (GGUF Q4_1, never produced by the quantizer): the CUDA dequantizer gives the reference's u * s + m
// (ggml's f32 value, rounded once to the output) bit for bit, f16 and bf16 scales, partial last groups.
TEST(QuantizeInt4Cuda, MinOffsetDequantizeBitIdentical) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  for (const DType scale_dtype : {DType::F16, DType::BF16}) {
    for (const auto& [rows, cols, g] :
         {std::tuple<int64_t, int64_t, int64_t>{7, 96, 32}, {64, 576, 128}, {5, 100, 32}, {3, 34, 0}}) {
      const Int4Matrix m = testing::random_min_offset(rows, cols, g, scale_dtype, rng);
      SCOPED_TRACE(fmt::format("[{}, {}] {}", rows, cols, m.scheme.describe()));
      expect_dequantize_bit_identical(m);
    }
  }
}

TEST(QuantizeInt4Cuda, BitIdenticalToReferenceOverSweep) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  for (const Case& c : sweep()) {
    for (DType dtype : {DType::F16, DType::BF16}) {
      SCOPED_TRACE(
          fmt::format("[{}, {}] {} input {}", c.rows, c.cols, c.scheme.describe(), dtype_name(dtype)));
      if (dtype == DType::F16) {
        expect_bit_identical<Half>(c, rng);
      } else {
        expect_bit_identical<BFloat16>(c, rng);
      }
      if (HasFatalFailure()) return;
    }
  }
}

TEST(QuantizeInt4Cuda, LargeMatrixEveryGranularity) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  for (const Int4Scheme& s :
       {Int4Scheme{.granularity = Granularity::Global, .search = ScaleSearch::Mae},
        Int4Scheme{.granularity = Granularity::Rowwise, .search = ScaleSearch::Mse},
        Int4Scheme{.group_size = 128, .zero_point = true, .search = ScaleSearch::Mae}}) {
    SCOPED_TRACE(s.describe());
    expect_bit_identical<Half>({512, 8192, s}, rng);
  }
}

TEST(QuantizeInt4Cuda, ZeroAndTinyGroups) {
  QLLM_SKIP_WITHOUT_GPU();
  std::vector<Half> w(4 * 256, to_half(0.0f));
  for (int k = 0; k < 256; ++k) w[256 + k] = to_half(1e-7f * static_cast<float>(k));  // scale underflows fp16
  for (bool zp : {false, true}) {
    for (Granularity g : {Granularity::Global, Granularity::Rowwise, Granularity::Groupwise}) {
      const Int4Scheme s{.granularity = g, .group_size = 64, .zero_point = zp, .search = ScaleSearch::Mse};
      SCOPED_TRACE(s.describe());
      const auto ref = quantize_int4_ref(std::span<const Half>(w), 4, 256, s);
      const auto gpu = quantize_int4_cuda(std::span<const Half>(w), 4, 256, s);
      ASSERT_EQ(gpu.packed, ref.packed);
      ASSERT_EQ(gpu.scales, ref.scales);
      ASSERT_EQ(gpu.zeros, ref.zeros);
    }
  }
}

// A weights pointer that is only 4-byte aligned must take the block path and still be exact.
TEST(QuantizeInt4Cuda, UnalignedWeightsUseTheGeneralPath) {
  QLLM_SKIP_WITHOUT_GPU();
  Rng rng(fresh_seed());
  const int64_t rows = 9, cols = 128;
  const auto w = random_normal<Half>(rows * cols + 2, rng);
  const std::span<const Half> shifted(w.data() + 2, rows * cols);
  const Int4Scheme s{.group_size = 32, .search = ScaleSearch::Mae};
  const auto ref = quantize_int4_ref(shifted, rows, cols, s);
  auto device = to_device(std::span<const Half>(w), "weights");
  Int4DeviceMatrix m(rows, cols, s);
  m.packed.fill_bytes(0xa5);
  Int4QuantizerCuda q;
  q.launch(device.data() + 2, DType::F16, rows, cols, s, m.view(), nullptr);
  q.check(nullptr);
  const auto gpu = m.download();
  EXPECT_EQ(gpu.packed, ref.packed);
  EXPECT_EQ(gpu.scales, ref.scales);
}

TEST(QuantizeInt4Cuda, BadInputIsReported) {
  QLLM_SKIP_WITHOUT_GPU();
  std::vector<Half> w(4 * 64, to_half(0.25f));
  w[2 * 64 + 9] = to_half(std::numeric_limits<float>::quiet_NaN());
  for (Granularity g : {Granularity::Global, Granularity::Rowwise, Granularity::Groupwise}) {
    const Int4Scheme s{.granularity = g, .group_size = 32};
    EXPECT_NE(
        error_of([&] { quantize_int4_cuda(std::span<const Half>(w), 4, 64, s); }).find("row 2, column 9"),
        std::string::npos)
        << s.describe();
  }
  w[2 * 64 + 9] = to_half(std::numeric_limits<float>::infinity());
  EXPECT_NE(error_of([&] {  // groups of 48 and a partial 16: the block path finds the row's own range
              quantize_int4_cuda(std::span<const Half>(w), 4, 64, Int4Scheme{.group_size = 48});
            })
                .find("row 2, column 9"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              quantize_int4_cuda(std::span<const Half>(w), 4, 64, Int4Scheme{.group_size = 6});
            }).find("row 2, column 9"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              quantize_int4_cuda(std::span<const Half>(w), 4, 64, Int4Scheme{.group_size = 16});
            }).find("row 2, column 9"),
            std::string::npos);
  std::vector<BFloat16> big(64, to_bf16(1e30f));
  EXPECT_NE(error_of([&] {
              quantize_int4_cuda(std::span<const BFloat16>(big), 1, 64, Int4Scheme{.group_size = 32});
            }).find("overflows"),
            std::string::npos);
}

}  // namespace
}  // namespace qllm
