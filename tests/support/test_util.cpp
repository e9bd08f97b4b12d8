#include "tests/support/test_util.h"

#include <filesystem>

namespace qllm::testing {

std::string shared_dir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("QLLM_SHARED"); env != nullptr && fs::is_directory(env)) return env;
  const fs::path beside = fs::path(QLLM_SOURCE_DIR).parent_path() / "shared";
  return fs::is_directory(beside) ? beside.string() : std::string();
}

}  // namespace qllm::testing
