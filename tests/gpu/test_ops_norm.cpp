// Op-harness rows of RMSNorm (src/kernels/norm/rmsnorm.h): plain, fused with a residual add, fused without
// (first layer), against rmsnorm_ref. Bound: one ulp of the output type relative (the double sum of squares
// is reduced in another order, which can move inv_rms by an f32 ulp); the updated residual must be exact.
#include <fmt/format.h>

#include <cmath>

#include "kernels/norm/rmsnorm.h"
#include "tests/gpu/op_harness.h"
#include "tests/gpu/ops_test_util.h"

namespace qllm::testing {
namespace {

enum class Form { Plain, Fused, FusedNoDelta };
const char* form_name(Form f) {
  return f == Form::Plain ? "plain" : f == Form::Fused ? "fused" : "fused-nodelta";
}

OpResult run_rmsnorm(int64_t tokens, int64_t hidden, DType dtype, Form form, uint64_t seed) {
  Rng rng(seed);
  const auto n = static_cast<size_t>(tokens * hidden);
  const std::vector<uint16_t> x = random_bits16(n, rng, dtype, 2.0);
  std::vector<float> residual(n), weight(static_cast<size_t>(hidden));
  for (float& r : residual) r = static_cast<float>(3.0 * rng.normal());
  for (float& w : weight)
    w = bits16_to_float(float_to_bits16(static_cast<float>(1 + 0.2 * rng.normal()), dtype), dtype);

  RmsNormParams p{.tokens = tokens, .hidden = hidden, .eps = 1e-5, .dtype = dtype};
  std::vector<float> ref_residual = residual;
  std::vector<uint16_t> ref_out(n);
  RmsNormParams ref = p;
  ref.weight = weight.data();
  ref.out = ref_out.data();
  if (form == Form::Plain) {
    ref.x = x.data();
  } else {
    ref.residual = ref_residual.data();
    if (form == Form::Fused) ref.delta = x.data();
  }
  rmsnorm_ref(ref);

  TestStream stream;
  DeviceBuffer<uint16_t> d_x = to_device(x), d_out(n);
  DeviceBuffer<float> d_residual = to_device(residual), d_weight = to_device(weight);
  poison(d_out);
  p.weight = d_weight.data();
  p.out = d_out.data();
  if (form == Form::Plain) {
    p.x = d_x.data();
  } else {
    p.residual = d_residual.data();
    if (form == Form::Fused) p.delta = d_x.data();
  }
  launch_rmsnorm(p, stream.get());
  stream.sync();
  OpResult r =
      compare(bits16_to_floats(d_out.download(), dtype), bits16_to_floats(ref_out, dtype), Metric::MaxRel);
  if (form != Form::Plain) {
    const OpResult res = compare(d_residual.download(), ref_residual, Metric::MaxAbs);
    if (res.error > 0) r = {INFINITY, "residual differs: " + res.detail};
  }
  return r;
}

QLLM_OP_CASES(rmsnorm) {
  std::vector<OpCase> cases;
  uint64_t seed = 1;
  for (DType dtype : {DType::BF16, DType::F16}) {
    const double bound = dtype == DType::BF16 ? 0x1p-7 : 0x1p-10;  // one ulp relative
    for (int64_t hidden : {64, 72, 100, 512, 576, 2048, 4100}) {
      for (int64_t tokens : {1, 7, 64}) {
        for (Form form : {Form::Plain, Form::Fused, Form::FusedNoDelta}) {
          cases.push_back({"rmsnorm", fmt::format("tokens={} hidden={} {}", tokens, hidden, form_name(form)),
                           dtype_label(dtype), Metric::MaxRel, bound,
                           [=] { return run_rmsnorm(tokens, hidden, dtype, form, seed); }});
          ++seed;
        }
      }
    }
  }
  return cases;
}

}  // namespace
}  // namespace qllm::testing
