// Each subcommand lives in its own file and registers itself on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace qllm::cli {

void add_quant_error(CLI::App& app);

}  // namespace qllm::cli
