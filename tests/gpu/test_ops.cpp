// Runs every row of the op harness (tests/gpu/op_harness.h): one test per (op, shape, dtype), each
// comparing the CUDA kernel with its CPU reference under the row's stated bound.
#include <gtest/gtest.h>

#include <cctype>

#include "tests/gpu/op_harness.h"
#include "tests/support/test_util.h"

namespace qllm::testing {
namespace {

class Op : public ::testing::TestWithParam<OpCase> {};

TEST_P(Op, MatchesItsReference) {
  QLLM_SKIP_WITHOUT_GPU();
  const OpCase& c = GetParam();
  const OpResult r = c.run();
  EXPECT_LE(r.error, c.bound) << c.name() << ": " << metric_name(c.metric) << " " << r.error << " > bound "
                              << c.bound << "; " << r.detail;
}

std::string test_name(const ::testing::TestParamInfo<OpCase>& info) {
  std::string name = info.param.name() + "_" + std::to_string(info.index);
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Op);
INSTANTIATE_TEST_SUITE_P(Harness, Op, ::testing::ValuesIn(all_op_cases()), test_name);

}  // namespace
}  // namespace qllm::testing
