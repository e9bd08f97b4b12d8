// W4A16 repacked layout: the address formula and repack/unpack (the reference GEMM: w4a16_ref.cpp).
#include "quant/w4a16_layout.h"

#include "qllm/error.h"
#include "quant/float_ops.h"
#include "quant/int4_math.h"

namespace qllm {

namespace {

// The bf16 (f16) value whose low mantissa bits hold a nibble: 0x4300 | n is 128 + n, 0x6400 | n is 1024 + n.
uint16_t magic_bits(DType activation) {
  return activation == DType::BF16 ? 0x4300 : 0x6400;
}

int64_t scale_index(const W4A16Layout& l, int64_t row, int64_t col) {
  const int64_t tile = row / kW4A16TileN, g = row % 8, half = (row % kW4A16TileN) / 8;
  return ((tile * l.groups_per_row() + col / l.group_k) * 8 + g) * 2 + half;
}

}  // namespace

// Unit (row / 16, col / 64) holds 32 lanes x 16 bytes. Lane (g, t) = (row % 8, (col % 8) / 2) holds, for
// k16 step s = (col % 64) / 16, one 32-bit word whose nibble p = reg + 4 * e is weight
//   reg 0: (row g,     col 2t + e)      reg 1: (row g + 8, col 2t + e)
//   reg 2: (row g,     col 2t + 8 + e)  reg 3: (row g + 8, col 2t + 8 + e)
// (rows and cols relative to the unit's 16 x 16 step), so (word >> 4 reg) & 0x000f000f is register `reg` of
// the MMA A fragment: low half element e = 0, high half e = 1.
void W4A16Weights::locate(const W4A16Layout& l, int64_t row, int64_t col, int64_t& byte, int& shift) {
  const int64_t unit = (row / kW4A16TileN) * (l.padded_k() / kW4A16TileK) + col / kW4A16TileK;
  const int64_t r = row % kW4A16TileN, c = col % kW4A16TileK;
  const int64_t step = c / 16, cc = c % 16;
  const int64_t lane = (r % 8) * 4 + (cc % 8) / 2;
  const int reg = static_cast<int>(r / 8 + 2 * (cc / 8));
  const int position = reg + 4 * static_cast<int>(cc % 2);
  byte = unit * kW4A16UnitBytes + lane * 16 + 4 * step + position / 2;
  shift = 4 * (position % 2);
}

uint8_t W4A16Weights::nibble(int64_t row, int64_t col) const {
  int64_t byte;
  int shift;
  locate(layout, row, col, byte, shift);
  return (qweight[static_cast<size_t>(byte)] >> shift) & 0x0f;
}

float W4A16Weights::scale(int64_t row, int64_t col) const {
  return fops::scale_bits_to_float(scales[static_cast<size_t>(scale_index(layout, row, col))],
                                   layout.activation == DType::BF16);
}

int W4A16Weights::zero(int64_t row, int64_t col) const {
  if (layout.min_offset) return 0;
  if (!layout.zero_point) return int4::kSymmetricZero;
  return zero_offsets[static_cast<size_t>(scale_index(layout, row, col))] - magic_bits(layout.activation);
}

float W4A16Weights::min(int64_t row, int64_t col) const {
  if (!layout.min_offset) return 0.0f;
  return fops::scale_bits_to_float(zero_offsets[static_cast<size_t>(scale_index(layout, row, col))],
                                   layout.activation == DType::BF16);
}

W4A16Layout w4a16_layout_for(const Int4Matrix& m, DType activation) {
  QLLM_CHECK(activation == DType::BF16 || activation == DType::F16,
             "W4A16 GEMM activations must be bf16 or f16, not {}", dtype_name(activation));
  QLLM_CHECK(!(m.scheme.min_offset && m.scheme.zero_point),
             "W4A16 GEMM [{}, {}]: a scheme has a zero point or a min offset, not both", m.rows, m.cols);
  QLLM_CHECK(m.rows > 0 && m.cols > 0 && m.cols % 2 == 0,
             "W4A16 GEMM needs a positive N and an even K; weight shape is [{}, {}]", m.rows, m.cols);
  W4A16Layout l;
  l.n = m.rows;
  l.k = m.cols;
  l.group_k = m.scheme.granularity == Granularity::Groupwise ? m.scheme.group_size : l.padded_k();
  QLLM_CHECK(l.group_k % 16 == 0,
             "W4A16 GEMM needs a group size divisible by 16, got {} (weight shape [{}, {}])", l.group_k,
             m.rows, m.cols);
  l.zero_point = m.scheme.zero_point;
  l.min_offset = m.scheme.min_offset;
  l.activation = activation;
  return l;
}

W4A16Weights repack_w4a16(const Int4Matrix& m, DType activation) {
  W4A16Weights w;
  w.layout = w4a16_layout_for(m, activation);
  const W4A16Layout& l = w.layout;
  const GroupLayout canonical = m.layout();
  const int64_t rows = l.padded_n(), cols = l.padded_k();
  w.qweight.assign(static_cast<size_t>(rows * cols / 2), 0);
  // A padding weight is an exact zero: its group's zero point as the nibble where the group is real (a
  // partial group's padding columns), the symmetric 8 in padding rows and in groups of padding alone
  // (which store scale 0 below). A min-offset group has no nibble of value 0 (u * s + m): its padding
  // columns take u = 0, the minimum, which only ever meets X's zero padding.
  auto nibble_at = [&](int64_t row, int64_t col) -> uint32_t {
    if (row >= l.n) return int4::kSymmetricZero;
    if (col < l.k) return m.nibble(row * l.k + col);
    // The group's first column is a real one: its canonical group (ROWWISE's group_k is padded_k, not K).
    const int64_t group_start = col / l.group_k * l.group_k;
    if (group_start >= l.k) return int4::kSymmetricZero;
    return l.min_offset ? 0u : static_cast<uint32_t>(m.zero(canonical.group_of(row, group_start)));
  };
  // Unit by unit, the inverse of locate(): lane (g, t), step s, nibble position p = reg + 4e holds
  // row g + 8 (reg % 2), column 16 s + 2t + e + 8 (reg / 2) of the unit.
  const int64_t blocks = cols / kW4A16TileK;
#pragma omp parallel for schedule(static)
  for (int64_t tile = 0; tile < rows / kW4A16TileN; ++tile) {
    for (int64_t block = 0; block < blocks; ++block) {
      uint8_t* unit = w.qweight.data() + (tile * blocks + block) * kW4A16UnitBytes;
      for (int lane = 0; lane < 32; ++lane) {
        const int64_t g = lane / 4, t = lane % 4;
        for (int step = 0; step < 4; ++step) {
          uint32_t word = 0;
          for (int p = 0; p < 8; ++p) {
            const int reg = p % 4, e = p / 4;
            const int64_t row = tile * kW4A16TileN + g + 8 * (reg % 2);
            const int64_t col = block * kW4A16TileK + 16 * step + 2 * t + e + 8 * (reg / 2);
            word |= nibble_at(row, col) << (4 * p);
          }
          for (int b = 0; b < 4; ++b) unit[lane * 16 + 4 * step + b] = static_cast<uint8_t>(word >> (8 * b));
        }
      }
    }
  }
  const size_t scale_count = static_cast<size_t>(rows * l.groups_per_row());
  const uint16_t padding_zero = static_cast<uint16_t>(magic_bits(activation) + int4::kSymmetricZero);
  w.scales.assign(scale_count, 0);  // padding rows and groups: scale 0 (and minimum +0)
  if (l.zero_point) w.zero_offsets.assign(scale_count, padding_zero);
  if (l.min_offset) w.zero_offsets.assign(scale_count, 0);
  const bool bf16 = activation == DType::BF16;
  for (int64_t row = 0; row < l.n; ++row) {
    for (int64_t group = 0; group < l.real_groups_per_row(); ++group) {
      const int64_t col = group * l.group_k;
      const int64_t canonical_group = canonical.group_of(row, col);
      const auto index = static_cast<size_t>(scale_index(l, row, col));
      w.scales[index] = fops::float_to_scale_bits(m.scale(canonical_group), bf16);
      if (l.zero_point)
        w.zero_offsets[index] = static_cast<uint16_t>(magic_bits(activation) + m.zero(canonical_group));
      // Minimums, like scales, in the activation dtype (exact when the dtypes match: GGUF's f16 with f16).
      if (l.min_offset) w.zero_offsets[index] = fops::float_to_scale_bits(m.min(canonical_group), bf16);
    }
  }
  return w;
}

Int4Matrix unpack_w4a16(const W4A16Weights& w) {
  const W4A16Layout& l = w.layout;
  Int4Matrix m;
  m.rows = l.n;
  m.cols = l.k;
  // One group per row (ROWWISE, GLOBAL, or a group size of at least K) unpacks as ROWWISE.
  m.scheme.granularity = l.real_groups_per_row() == 1 ? Granularity::Rowwise : Granularity::Groupwise;
  m.scheme.group_size = l.group_k;
  m.scheme.zero_point = l.zero_point;
  m.scheme.min_offset = l.min_offset;
  m.scheme.scale_dtype = l.activation;
  m.packed.assign(static_cast<size_t>(l.n * l.k / 2), 0);
  for (int64_t row = 0; row < l.n; ++row) {
    for (int64_t col = 0; col < l.k; ++col) {
      const int64_t flat = row * l.k + col;
      m.packed[static_cast<size_t>(flat / 2)] |= static_cast<uint8_t>(w.nibble(row, col) << (4 * (flat % 2)));
    }
  }
  for (int64_t row = 0; row < l.n; ++row) {
    for (int64_t group = 0; group < l.real_groups_per_row(); ++group) {
      const auto index = static_cast<size_t>(scale_index(l, row, group * l.group_k));
      m.scales.push_back(w.scales[index]);
      if (l.zero_point)
        m.zeros.push_back(static_cast<uint8_t>(w.zero_offsets[index] - magic_bits(l.activation)));
      if (l.min_offset) m.mins.push_back(w.zero_offsets[index]);
    }
  }
  return m;
}

}  // namespace qllm
