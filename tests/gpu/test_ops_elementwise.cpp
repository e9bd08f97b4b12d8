// Op-harness rows of SwiGLU and the embedding gather (src/kernels/elementwise), against their references.
// SwiGLU: one ulp of the output type relative (device expf vs the host's exp may differ by an f32 ulp before
// the rounding). Embedding: exact (a gather; the INT4 values are exact products), out-of-range ids included
// (zero rows and the error flag, as the reference).
#include <fmt/format.h>

#include <cmath>
#include <tuple>

#include "kernels/elementwise/embedding.h"
#include "kernels/elementwise/swiglu.h"
#include "qllm/quant.h"
#include "quant/w4a16_layout.h"
#include "tests/cpu/q4_gguf_test_support.h"
#include "tests/gpu/op_harness.h"
#include "tests/gpu/ops_test_util.h"

namespace qllm::testing {
namespace {

OpResult run_swiglu(int64_t tokens, int64_t width, DType dtype, uint64_t seed) {
  Rng rng(seed);
  const std::vector<uint16_t> gate_up =
      random_bits16(static_cast<size_t>(tokens * 2 * width), rng, dtype, 3.0);
  std::vector<uint16_t> ref(static_cast<size_t>(tokens * width));
  swiglu_ref({.tokens = tokens,
              .intermediate = width,
              .dtype = dtype,
              .gate_up = gate_up.data(),
              .out = ref.data()});
  TestStream stream;
  DeviceBuffer<uint16_t> d_in = to_device(gate_up), d_out(ref.size());
  poison(d_out);
  launch_swiglu(
      {.tokens = tokens, .intermediate = width, .dtype = dtype, .gate_up = d_in.data(), .out = d_out.data()},
      stream.get());
  stream.sync();
  return compare(bits16_to_floats(d_out.download(), dtype), bits16_to_floats(ref, dtype), Metric::MaxRel);
}

QLLM_OP_CASES(swiglu) {
  std::vector<OpCase> cases;
  uint64_t seed = 100;
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t width : {72, 100, 1536, 8192}) {
      for (int64_t tokens : {1, 7, 33}) {
        cases.push_back({"swiglu", fmt::format("tokens={} intermediate={}", tokens, width),
                         dtype_label(dtype), Metric::MaxRel, dtype == DType::BF16 ? 0x1p-7 : 0x1p-10,
                         [=] { return run_swiglu(tokens, width, dtype, seed); }});
        ++seed;
      }
    }
  }
  return cases;
}

struct EmbeddingCase {
  EmbeddingStorage storage;
  int64_t vocab, hidden, tokens;
  DType dtype;
  int64_t group = 0;  // Int4: group size (0: rowwise)
  bool zero_point = false;
  int64_t int8_stride = 0;  // Int8Rows: values between rows (0: hidden), as a QuantLinear's padded weight
  bool min_offset = false;  // Int4: GGUF Q4_1's u * s + m (random nibbles, scales and minimums)
};

OpResult run_embedding(const EmbeddingCase& c, uint64_t seed) {
  Rng rng(seed);
  const auto size = static_cast<size_t>(c.vocab * c.hidden);
  std::vector<uint16_t> dense;
  std::vector<int8_t> int8_values;
  std::vector<float> absmax;
  W4A16Weights int4;
  EmbeddingTable host{.storage = c.storage, .vocab = c.vocab, .hidden = c.hidden, .dtype = c.dtype};
  if (c.storage == EmbeddingStorage::Dense) {
    dense = random_bits16(size, rng, c.dtype);
    host.dense = dense.data();
  } else if (c.storage == EmbeddingStorage::Int8Rows) {
    int8_values.resize(static_cast<size_t>(c.vocab * (c.int8_stride ? c.int8_stride : c.hidden)));
    host.int8_row_stride = c.int8_stride;
    absmax.resize(static_cast<size_t>(c.vocab));
    for (auto& q : int8_values) q = static_cast<int8_t>(std::lround(rng.uniform() * 254 - 127));
    for (auto& a : absmax) a = static_cast<float>(rng.uniform() * 3);
    host.int8_values = int8_values.data();
    host.int8_absmax = absmax.data();
  } else {
    std::vector<float> w(size);
    for (auto& v : w) v = static_cast<float>(0.05 * rng.normal());
    Int4Scheme scheme{.group_size = c.group, .zero_point = c.zero_point, .scale_dtype = c.dtype};
    if (c.group == 0) scheme.granularity = Granularity::Rowwise;
    int4 = repack_w4a16(c.min_offset ? random_min_offset(c.vocab, c.hidden, c.group, c.dtype, rng)
                                     : quantize_int4_ref(w, c.vocab, c.hidden, scheme),
                        c.dtype);
    host.int4_qweight = int4.qweight.data();
    host.int4_scales = int4.scales.data();
    host.int4_zero_offsets = c.zero_point ? int4.zero_offsets.data() : nullptr;
    host.int4_mins = c.min_offset ? int4.zero_offsets.data() : nullptr;
    host.int4_group_k = int4.layout.group_k;
  }
  std::vector<int32_t> ids(static_cast<size_t>(c.tokens));
  for (auto& id : ids) id = static_cast<int32_t>(rng.uniform() * static_cast<double>(c.vocab));
  ids.front() = static_cast<int32_t>(c.vocab - 1);  // the last row: the far end of the table
  if (c.tokens > 2) ids[1] = -1;                    // out of range: zeros and the flag
  std::vector<float> ref(static_cast<size_t>(c.tokens * c.hidden));
  int ref_flag = 0;
  embedding_ref(
      {.table = host, .tokens = c.tokens, .ids = ids.data(), .out = ref.data(), .error_flag = &ref_flag});

  TestStream stream;
  DeviceBuffer<uint16_t> d_dense = to_device(dense), d_scales = to_device(int4.scales),
                         d_zeros = to_device(int4.zero_offsets);
  DeviceBuffer<int8_t> d_int8 = to_device(int8_values);
  DeviceBuffer<float> d_absmax = to_device(absmax), d_out(ref.size());
  DeviceBuffer<uint8_t> d_qweight = to_device(int4.qweight);
  DeviceBuffer<int32_t> d_ids = to_device(ids);
  DeviceBuffer<int> d_flag = to_device(std::vector<int>{0});
  poison(d_out);
  EmbeddingTable device = host;
  device.dense = d_dense.data();
  device.int8_values = d_int8.data();
  device.int8_absmax = d_absmax.data();
  device.int4_qweight = d_qweight.data();
  device.int4_scales = d_scales.data();
  device.int4_zero_offsets = c.zero_point ? d_zeros.data() : nullptr;
  device.int4_mins = c.min_offset ? d_zeros.data() : nullptr;
  launch_embedding({.table = device,
                    .tokens = c.tokens,
                    .ids = d_ids.data(),
                    .out = d_out.data(),
                    .error_flag = d_flag.data()},
                   stream.get());
  stream.sync();
  OpResult r = compare(d_out.download(), ref, Metric::Exact);
  if (d_flag.download()[0] != ref_flag)
    r = {INFINITY, fmt::format("error flag {} != {}", d_flag.download()[0], ref_flag)};
  return r;
}

QLLM_OP_CASES(embedding) {
  std::vector<OpCase> cases;
  uint64_t seed = 200;
  auto add = [&](EmbeddingCase c, std::string label) {
    cases.push_back({"embedding", fmt::format("vocab={} hidden={} tokens={}", c.vocab, c.hidden, c.tokens),
                     std::move(label), Metric::Exact, 0.0, [c, s = seed++] { return run_embedding(c, s); }});
  };
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t tokens : {1, 7}) {
      add({EmbeddingStorage::Dense, 49152, 576, tokens, dtype}, fmt::format("dense-{}", dtype_label(dtype)));
      add({EmbeddingStorage::Dense, 4096, 2048, tokens, dtype}, fmt::format("dense-{}", dtype_label(dtype)));
      add({EmbeddingStorage::Dense, 1000, 100, tokens, dtype}, fmt::format("dense-{}", dtype_label(dtype)));
      // Whole tiles, a partial last group (576 and 192 with g128), and the tails the W4A16 layout pads
      // (vocab 272 and 17; hidden 200 and 100).
      for (auto [vocab, hidden, group] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{256, 576, 64},
                                                                                            {256, 2048, 128},
                                                                                            {256, 512, 0},
                                                                                            {256, 576, 128},
                                                                                            {272, 192, 128},
                                                                                            {272, 200, 32},
                                                                                            {17, 100, 0},
                                                                                            {17, 100, 32}}) {
        for (bool zp : {false, true}) {
          add({EmbeddingStorage::Int4, vocab, hidden, tokens, dtype, group, zp},
              fmt::format("int4-{}-g{}{}", dtype_label(dtype), group, zp ? "-zp" : ""));
        }
      }
      // Min offset (a Q4_1 token_embd tied to the lm_head): SmolLM2's table shape and the padded tails.
      for (auto [vocab, hidden, group] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {49152, 576, 32}, {256, 576, 128}, {272, 200, 32}, {17, 100, 32}}) {
        add({.storage = EmbeddingStorage::Int4,
             .vocab = vocab,
             .hidden = hidden,
             .tokens = tokens,
             .dtype = dtype,
             .group = group,
             .min_offset = true},
            fmt::format("int4-{}-g{}-min", dtype_label(dtype), group));
      }
    }
  }
  for (int64_t tokens : {1, 7}) {
    for (auto [vocab, hidden] :
         std::vector<std::pair<int64_t, int64_t>>{{49152, 576}, {4096, 2048}, {333, 72}, {100, 101}}) {
      add({EmbeddingStorage::Int8Rows, vocab, hidden, tokens, DType::BF16}, "int8rows");
    }
    // QuantLinear's int8 weights are stored padded to multiples of 64: rows further apart than hidden.
    add({.storage = EmbeddingStorage::Int8Rows,
         .vocab = 272,
         .hidden = 200,
         .tokens = tokens,
         .dtype = DType::BF16,
         .int8_stride = 256},
        "int8rows-stride256");
    add({.storage = EmbeddingStorage::Int8Rows,
         .vocab = 100,
         .hidden = 101,
         .tokens = tokens,
         .dtype = DType::BF16,
         .int8_stride = 128},
        "int8rows-stride128");
  }
  return cases;
}

}  // namespace
}  // namespace qllm::testing
