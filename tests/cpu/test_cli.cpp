// The qllm binary end to end: tables print, bad arguments exit non-zero with a message naming the problem.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace qllm {
namespace {

using testing::run_command;

const std::string kQllm = std::string(QLLM_BINARY_DIR) + "/bin/qllm";

TEST(Cli, QuantErrorPrintsTheTable) {
  const auto r =
      run_command(kQllm + " quant-error --rows 8 --cols 64 --group-sizes 16 32 --scale-search none");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| quantization_type | group_size |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| GLOBAL "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| GROUPWISE         |         32 |"), std::string::npos) << r.output;
}

TEST(Cli, QuantErrorJson) {
  const auto r = run_command(kQllm + " quant-error --rows 4 --cols 32 --group-sizes 16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto json = nlohmann::json::parse(r.output);
  ASSERT_EQ(json["table"].size(), 4u);
  EXPECT_EQ(json["table"][2]["group_size"], 16);
  EXPECT_GT(json["table"][2]["compression"].get<double>(), 3.0);
  EXPECT_EQ(json["table"][3]["quantization_type"], "INT8_VECTORWISE");
  EXPECT_NEAR(json["table"][3]["compression"].get<double>(), 2.0 * 32 / (32 + 4), 1e-12);
}

// A group size that does not divide K leaves a partial last group per row (64 = 48 + 16): its own row.
TEST(Cli, QuantErrorPartialGroups) {
  const auto r = run_command(kQllm + " quant-error --rows 8 --cols 64 --group-sizes 48 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto json = nlohmann::json::parse(r.output);
  ASSERT_EQ(json["table"].size(), 4u);
  EXPECT_EQ(json["table"][2]["group_size"], 48);
  // 8 rows x 2 groups of f16 scales: 512 / (256 + 32) bytes.
  EXPECT_NEAR(json["table"][2]["compression"].get<double>(), 2.0 * 8 * 64 / (8 * 32 + 8 * 2 * 2), 1e-12);
}

TEST(Cli, BadArgumentsFailWithAMessage) {
  auto r = run_command(kQllm + " quant-error --rows 8 --cols 64 --group-sizes 30");
  EXPECT_EQ(r.exit_code, 0) << r.output;  // groups 30, 30 and 4
  r = run_command(kQllm + " quant-error --rows 8 --cols 64 --group-sizes 15");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("15 is not a positive even number"), std::string::npos) << r.output;
  r = run_command(kQllm + " quant-error --rows 8 --cols 63");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("K = 63 must be even"), std::string::npos) << r.output;
  r = run_command(kQllm + " quant-error --scale-search bogus");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown scale search 'bogus'"), std::string::npos) << r.output;
  r = run_command(kQllm + " quant-error --dtype int3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown dtype 'int3'"), std::string::npos) << r.output;
  r = run_command(kQllm + " no-such-command");
  EXPECT_NE(r.exit_code, 0);
  for (const char* seed : {"-1", "1.5", "18446744073709551616"}) {
    r = run_command(kQllm + " quant-error --rows 8 --cols 64 --seed " + seed);
    EXPECT_EQ(r.exit_code, 2) << seed;
    EXPECT_NE(r.output.find("is not a seed (a whole number from 0 to 18446744073709551615)"),
              std::string::npos)
        << r.output;
  }
  r = run_command(kQllm + " quant-error --rows 8 --cols 64 --seed 18446744073709551615");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace qllm
