// Min-offset INT4 test data (random matrices in GGUF Q4_1's scheme) and a small llama GGUF whose weights are ggml blocks (Q4_0, Q4_1, Q8_0 or F32 per group of tensors), for the
// tests of GGUF Q4 weights run natively (model/gguf_model.h): random weights encoded as llama.cpp's
// quantize_row_q4_0/q4_1/q8_0 encode them (the rounding details do not matter, the blocks are the data), the
// tiny byte-level vocabulary of gguf_tokenizer_test_support.h, head_dim 64 (the GPU engine's).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/random.h"
#include "qllm/half.h"
#include "quant/ggml_blocks.h"
#include "tests/cpu/gguf_test_support.h"
#include "tests/cpu/gguf_tokenizer_test_support.h"

namespace qllm::testing {

// [rows, cols] row-major f32 weights as `type` blocks (F32: the values' bytes).
inline std::vector<std::byte> encode_ggml(GgmlType type, const std::vector<float>& w) {
  std::vector<std::byte> out;
  auto put = [&](const auto& block) {
    const auto* p = reinterpret_cast<const std::byte*>(&block);
    out.insert(out.end(), p, p + sizeof(block));
  };
  if (type == GgmlType::F32) {
    out.resize(w.size() * sizeof(float));
    std::memcpy(out.data(), w.data(), out.size());
    return out;
  }
  for (size_t b = 0; b < w.size() / kGgmlBlock; ++b) {
    const float* x = w.data() + b * kGgmlBlock;
    float lo = x[0], hi = x[0], absmax = 0;
    for (int j = 0; j < kGgmlBlock; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
      absmax = std::max(absmax, std::fabs(x[j]));
    }
    auto nibble = [](float v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 15L)); };
    if (type == GgmlType::Q8_0) {
      GgmlBlockQ8_0 q{};
      const float d = absmax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
      q.d = float_to_half_bits(d);
      for (int j = 0; j < kGgmlBlock; ++j) q.qs[j] = static_cast<int8_t>(std::lround(x[j] * id));
      put(q);
    } else if (type == GgmlType::Q4_1) {
      GgmlBlockQ4_1 q{};
      const float d = (hi - lo) / 15.0f, id = d > 0 ? 1.0f / d : 0.0f;
      q.d = float_to_half_bits(d);
      q.m = float_to_half_bits(lo);
      for (int j = 0; j < 16; ++j)
        q.qs[j] = static_cast<uint8_t>(nibble((x[j] - lo) * id) | nibble((x[j + 16] - lo) * id) << 4);
      put(q);
    } else {  // Q4_0: d = max / -8 with the signed extreme, as ggml
      const float extreme = -lo > hi ? lo : hi;
      GgmlBlockQ4_0 q{};
      const float d = extreme / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
      q.d = float_to_half_bits(d);
      for (int j = 0; j < 16; ++j)
        q.qs[j] = static_cast<uint8_t>(nibble(x[j] * id + 8.0f) | nibble(x[j + 16] * id + 8.0f) << 4);
      put(q);
    }
  }
  return out;
}

// A random min-offset matrix: random nibbles, scales and minimums in `dtype` as a Q4_1 file holds them
// (minimums about -8 scales, of either sign), group size `g` (0: rowwise).
inline Int4Matrix random_min_offset(int64_t n, int64_t k, int64_t g, DType dtype, Rng& rng) {
  Int4Matrix m;
  m.rows = n;
  m.cols = k;
  m.scheme = {.granularity = g ? Granularity::Groupwise : Granularity::Rowwise,
              .group_size = g ? g : 128,
              .zero_point = false,
              .min_offset = true,
              .scale_dtype = dtype,
              .search = ScaleSearch::None};
  const GroupLayout layout = m.layout();
  const bool bf16 = dtype == DType::BF16;
  auto bits = [&](double v) {
    return bf16 ? float_to_bf16_bits(static_cast<float>(v)) : float_to_half_bits(static_cast<float>(v));
  };
  m.packed.resize(static_cast<size_t>(n * k / 2));
  for (auto& b : m.packed) b = static_cast<uint8_t>(rng.below(256));
  for (int64_t i = 0; i < layout.num_groups; ++i) {
    const double s = 0.002 * (0.5 + rng.uniform());
    m.scales.push_back(bits(s));
    m.mins.push_back(bits(-8 * s + 0.004 * rng.normal()));
  }
  return m;
}

struct Q4GgufSpec {
  GgmlType layers = GgmlType::Q4_1;      // the seven weights of every layer
  GgmlType ffn_down = GgmlType::Q4_1;    // another type here makes a mixed file (read as f32 values)
  GgmlType token_embd = GgmlType::Q8_0;  // SmolLM2's; Q4_0 / Q4_1 makes a native head
  bool tied = true;                      // false: an output.weight of type `output`
  GgmlType output = GgmlType::Q4_1;
  uint64_t seed = 1;
  // Every block-quantized tensor written as F32 holding ggml's dequantized values instead: the same model
  // as a file that qllm reads as f32 values.
  bool dequantized = false;
  const char* nan_scale_tensor = nullptr;  // this tensor's second block gets a NaN scale d (a corrupt file)
};

// Writes the model to `path`: 2 layers, hidden 128, 2 heads of 64 (1 KV head), ffn 256, vocab 262.
inline void write_q4_gguf(const std::string& path, const Q4GgufSpec& spec) {
  const GgufVocab vocab = tiny_gguf_vocab();
  const auto vocab_size = static_cast<int64_t>(vocab.tokens.size());
  constexpr int64_t kHidden = 128, kFfn = 256, kKv = 64, kLayers = 2;
  GgufBuilder b;
  add_tiny_llama_keys(b, {.layers = kLayers, .hidden = kHidden, .ffn = kFfn, .heads = 2, .kv_heads = 1});
  Rng rng(spec.seed);
  // A weight [rows, cols] (GGUF shape [cols, rows]) of N(0, scale^2) values.
  auto weight = [&](const std::string& name, int64_t rows, int64_t cols, GgmlType type, double scale) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& x : v) x = static_cast<float>(scale * rng.normal());
    std::vector<std::byte> data = encode_ggml(type, v);
    if (spec.nan_scale_tensor != nullptr && name == spec.nan_scale_tensor) {
      const uint16_t nan = 0x7e00;  // f16 NaN, as d of the second block (its first two bytes)
      std::memcpy(data.data() + data.size() / (rows * cols / kGgmlBlock), &nan, 2);
    }
    if (spec.dequantized && type != GgmlType::F32) {
      dequantize_ggml(type, data, v);
      data = encode_ggml(GgmlType::F32, v);
      type = GgmlType::F32;
    }
    b.tensor({name, {cols, rows}, type, std::move(data), {}});
  };
  auto norm = [&](const std::string& name) {
    std::vector<float> v(kHidden);
    for (float& x : v) x = static_cast<float>(1.0 + 0.1 * rng.normal());
    b.tensor({name, {kHidden}, GgmlType::F32, encode_ggml(GgmlType::F32, v), {}});
  };
  weight("token_embd.weight", vocab_size, kHidden, spec.token_embd, 1.0);
  for (int64_t i = 0; i < kLayers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    norm(p + "attn_norm.weight");
    weight(p + "attn_q.weight", kHidden, kHidden, spec.layers, 0.08);
    weight(p + "attn_k.weight", kKv, kHidden, spec.layers, 0.08);
    weight(p + "attn_v.weight", kKv, kHidden, spec.layers, 0.08);
    weight(p + "attn_output.weight", kHidden, kHidden, spec.layers, 0.08);
    norm(p + "ffn_norm.weight");
    weight(p + "ffn_gate.weight", kFfn, kHidden, spec.layers, 0.08);
    weight(p + "ffn_up.weight", kFfn, kHidden, spec.layers, 0.08);
    weight(p + "ffn_down.weight", kHidden, kFfn, spec.ffn_down, 0.06);
  }
  norm("output_norm.weight");
  if (!spec.tied) weight("output.weight", vocab_size, kHidden, spec.output, 0.08);
  const std::vector<std::byte> image = b.build();
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
}

}  // namespace qllm::testing
