// Per-group parameter choice of the CPU INT4 quantizers (round to nearest and GPTQ): the range of a group
// and, with a scale search, the clipping percent of least error. Both quantizers pick a group's scale and
// zero point with exactly these functions, so GPTQ on an identity Hessian reproduces round to nearest bit
// for bit and its groups follow every convention of docs/FORMATS.md.
#pragma once

#include <span>

#include "qllm/quant.h"
#include "quant/int4_math.h"

namespace qllm::int4 {

// Min and max of a (non-empty) group.
GroupStats group_stats(std::span<const float> group);

// The clipping percent of `scheme.search` for the group (100 when the search is None): coarse pass, then a
// fine pass around its winner; ties keep the earlier candidate (the CUDA kernels evaluate in the same order).
int search_percent(std::span<const float> group, GroupStats stats, const Int4Scheme& scheme);

// The stored scale and zero point of the group: its range, the searched percent, the scale dtype.
inline GroupParams choose_group_params(std::span<const float> group, const Int4Scheme& scheme) {
  const GroupStats stats = group_stats(group);
  return group_params(stats, search_percent(group, stats, scheme), scheme.zero_point,
                      scheme.scale_dtype == DType::BF16);
}

}  // namespace qllm::int4
