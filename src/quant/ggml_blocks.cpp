// Dequantization of ggml blocks. Each function states its formula in the operand order of ggml's reference
// `dequantize_row_*`: integer quants are converted to float and combined with float scales one IEEE float
// operation at a time, left to right (the build disables FMA contraction), so results are bit-identical.
#include "quant/ggml_blocks.h"

#include <bit>
#include <cstring>

#include "qllm/error.h"
#include "qllm/half.h"

namespace qllm {

static_assert(std::endian::native == std::endian::little, "ggml blocks are read as little-endian");

namespace {

template <typename Block>
Block load_block(const std::byte* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

// y[j] = (q - 8) * d, q the low nibble of qs[j] for j < 16 and the high nibble of qs[j - 16] after.
void dequantize_q4_0(const GgmlBlockQ4_0& b, float* y) {
  const float d = half_bits_to_float(b.d);
  for (int j = 0; j < 16; ++j) {
    const int x0 = (b.qs[j] & 0x0F) - 8;
    const int x1 = (b.qs[j] >> 4) - 8;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

// y = q * d + m.
void dequantize_q4_1(const GgmlBlockQ4_1& b, float* y) {
  const float d = half_bits_to_float(b.d);
  const float m = half_bits_to_float(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
  }
}

// The 5-bit quant of element j: its nibble plus bit j of qh as bit 4.
int q5_quant(const uint8_t qs[16], uint32_t qh, int j) {
  const int nibble = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
  return nibble | static_cast<int>(((qh >> j) & 1u) << 4);
}

// y = (q - 16) * d.
void dequantize_q5_0(const GgmlBlockQ5_0& b, float* y) {
  const float d = half_bits_to_float(b.d);
  uint32_t qh;
  std::memcpy(&qh, b.qh, sizeof qh);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(q5_quant(b.qs, qh, j) - 16) * d;
}

// y = q * d + m.
void dequantize_q5_1(const GgmlBlockQ5_1& b, float* y) {
  const float d = half_bits_to_float(b.d);
  const float m = half_bits_to_float(b.m);
  uint32_t qh;
  std::memcpy(&qh, b.qh, sizeof qh);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(q5_quant(b.qs, qh, j)) * d + m;
}

// y = q * d.
void dequantize_q8_0(const GgmlBlockQ8_0& b, float* y) {
  const float d = half_bits_to_float(b.d);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

// The 6-bit scale and minimum of sub-block j (0..7) of a Q4_K / Q5_K block: sub-blocks 0-3 use the low 6
// bits of bytes j and j + 4; sub-blocks 4-7 take their low 4 bits from byte j + 4 (scale: low nibble,
// minimum: high nibble) and their top 2 bits from the top bits of bytes j - 4 (scale) and j (minimum).
void k_scale_min(const uint8_t scales[12], int j, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4));
    min = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// Sub-block s (32 elements) of a 256-element super-block: y = (d * scale_s) * q - (dmin * min_s). Pairs of
// sub-blocks (2i, 2i + 1) share the 32 bytes qs[32i .. 32i + 31]: low nibbles, then high nibbles.
void dequantize_q4_k(const GgmlBlockQ4_K& b, float* y) {
  const float d = half_bits_to_float(b.d);
  const float dmin = half_bits_to_float(b.dmin);
  for (int s = 0; s < 8; ++s) {
    uint8_t scale, min;
    k_scale_min(b.scales, s, scale, min);
    const float ds = d * static_cast<float>(scale);
    const float ms = dmin * static_cast<float>(min);
    const uint8_t* q = b.qs + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    for (int l = 0; l < 32; ++l) *y++ = ds * static_cast<float>((q[l] >> shift) & 0x0F) - ms;
  }
}

// As Q4_K, with bit s of qh[l] adding 16 to element l of sub-block s.
void dequantize_q5_k(const GgmlBlockQ5_K& b, float* y) {
  const float d = half_bits_to_float(b.d);
  const float dmin = half_bits_to_float(b.dmin);
  for (int s = 0; s < 8; ++s) {
    uint8_t scale, min;
    k_scale_min(b.scales, s, scale, min);
    const float ds = d * static_cast<float>(scale);
    const float ms = dmin * static_cast<float>(min);
    const uint8_t* q = b.qs + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    for (int l = 0; l < 32; ++l) {
      const int quant = ((q[l] >> shift) & 0x0F) + (((b.qh[l] >> s) & 1) ? 16 : 0);
      *y++ = ds * static_cast<float>(quant) - ms;
    }
  }
}

// Two halves of 128 elements; in half h, element e (0..127) = 32 * g + l (g = 0..3) has its low 4 bits in
// ql[64h + l + 32 * (g % 2)] (low nibble for g < 2, high nibble after) and its top 2 bits in bits 2g, 2g + 1
// of qh[32h + l]; y = (d * scales[e / 16 + 8h]) * (q - 32).
void dequantize_q6_k(const GgmlBlockQ6_K& b, float* y) {
  const float d = half_bits_to_float(b.d);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    const int8_t* sc = b.scales + 8 * h;
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        const int low = (ql[l + 32 * (g % 2)] >> (4 * (g / 2))) & 0x0F;
        const int high = (qh[l] >> (2 * g)) & 3;
        const int quant = (low | (high << 4)) - 32;
        const int e = 32 * g + l;
        y[128 * h + e] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(quant);
      }
    }
  }
}

template <typename Block, void (*Dequantize)(const Block&, float*)>
void dequantize_blocks(const std::byte* data, size_t blocks, int block_elements, float* out) {
  for (size_t i = 0; i < blocks; ++i) {
    Dequantize(load_block<Block>(data + i * sizeof(Block)), out + i * block_elements);
  }
}

}  // namespace

bool can_dequantize_ggml(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

void dequantize_ggml(GgmlType type, std::span<const std::byte> data, std::span<float> out) {
  QLLM_CHECK(can_dequantize_ggml(type), "dequantizing ggml type {} is not supported", ggml_type_name(type));
  const GgmlTypeInfo& info = ggml_type_info(type);
  const size_t block_elements = static_cast<size_t>(info.block_elements);
  QLLM_CHECK(out.size() % block_elements == 0, "{}: {} elements are not a whole number of {}-element blocks",
             info.name, out.size(), block_elements);
  const size_t blocks = out.size() / block_elements;
  QLLM_CHECK(data.size() / info.block_bytes == blocks && data.size() % info.block_bytes == 0,
             "{}: {} elements need {} bytes, got {}", info.name, out.size(), blocks * info.block_bytes,
             data.size());
  const std::byte* p = data.data();
  float* y = out.data();
  switch (type) {
    case GgmlType::F32:
      if (!out.empty()) std::memcpy(y, p, out.size() * sizeof(float));
      return;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        y[i] = type == GgmlType::F16 ? half_bits_to_float(bits) : bf16_bits_to_float(bits);
      }
      return;
    case GgmlType::Q4_0:
      return dequantize_blocks<GgmlBlockQ4_0, dequantize_q4_0>(p, blocks, kGgmlBlock, y);
    case GgmlType::Q4_1:
      return dequantize_blocks<GgmlBlockQ4_1, dequantize_q4_1>(p, blocks, kGgmlBlock, y);
    case GgmlType::Q5_0:
      return dequantize_blocks<GgmlBlockQ5_0, dequantize_q5_0>(p, blocks, kGgmlBlock, y);
    case GgmlType::Q5_1:
      return dequantize_blocks<GgmlBlockQ5_1, dequantize_q5_1>(p, blocks, kGgmlBlock, y);
    case GgmlType::Q8_0:
      return dequantize_blocks<GgmlBlockQ8_0, dequantize_q8_0>(p, blocks, kGgmlBlock, y);
    case GgmlType::Q4_K:
      return dequantize_blocks<GgmlBlockQ4_K, dequantize_q4_k>(p, blocks, kGgmlSuperBlock, y);
    case GgmlType::Q5_K:
      return dequantize_blocks<GgmlBlockQ5_K, dequantize_q5_k>(p, blocks, kGgmlSuperBlock, y);
    case GgmlType::Q6_K:
      return dequantize_blocks<GgmlBlockQ6_K, dequantize_q6_k>(p, blocks, kGgmlSuperBlock, y);
    default:
      break;
  }
}

GgmlQ4Nibbles unpack_q4_0_block(const std::byte* block) {
  const auto b = load_block<GgmlBlockQ4_0>(block);
  GgmlQ4Nibbles out{};
  for (int j = 0; j < 16; ++j) {
    out.q[j] = b.qs[j] & 0x0F;
    out.q[j + 16] = b.qs[j] >> 4;
  }
  out.d = b.d;
  return out;
}

GgmlQ4Nibbles unpack_q4_1_block(const std::byte* block) {
  const auto b = load_block<GgmlBlockQ4_1>(block);
  GgmlQ4Nibbles out{};
  for (int j = 0; j < 16; ++j) {
    out.q[j] = b.qs[j] & 0x0F;
    out.q[j + 16] = b.qs[j] >> 4;
  }
  out.d = b.d;
  out.m = b.m;
  return out;
}

}  // namespace qllm
