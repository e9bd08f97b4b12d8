#include "core/file_io.h"

#include <fstream>
#include <sstream>

#include "qllm/error.h"

namespace qllm {

std::string read_text_file(const std::filesystem::path& file) {
  QLLM_CHECK(!std::filesystem::is_directory(file), "{}: is a directory, not a file", file.string());
  std::ifstream in(file, std::ios::binary);
  QLLM_CHECK(in.good(), "{}: cannot open file", file.string());
  std::ostringstream contents;
  contents << in.rdbuf();
  QLLM_CHECK(!in.bad(), "{}: read error", file.string());
  return std::move(contents).str();
}

nlohmann::json read_json_file(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", file.string(), e.what());
  }
}

}  // namespace qllm
