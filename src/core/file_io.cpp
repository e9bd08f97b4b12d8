#include "core/file_io.h"

#include <fstream>

#include "core/json.h"
#include "qllm/error.h"

namespace qllm {

std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  QLLM_CHECK(fs::exists(status), "{}: no such file", file.string());
  QLLM_CHECK(!fs::is_directory(status), "{}: is a directory, not a file", file.string());
  QLLM_CHECK(fs::is_regular_file(status) || fs::is_fifo(status),
             "{}: is not a regular file (a device or socket cannot be read as text)", file.string());
  if (fs::is_regular_file(status)) {
    const uintmax_t size = fs::file_size(file, ec);
    QLLM_CHECK(!ec && size <= max_bytes, "{}: {} bytes, larger than the {} byte limit for text files",
               file.string(), size, max_bytes);
  }
  std::ifstream in(file, std::ios::binary);
  QLLM_CHECK(in.good(), "{}: cannot open file", file.string());
  // Read in chunks with the limit checked as we go: a pipe has no size to check up front.
  std::string contents;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    QLLM_CHECK(contents.size() + static_cast<uint64_t>(in.gcount()) <= max_bytes,
               "{}: larger than the {} byte limit for text files", file.string(), max_bytes);
    contents.append(buffer, static_cast<size_t>(in.gcount()));
  }
  QLLM_CHECK(!in.bad(), "{}: read error", file.string());
  return contents;
}

nlohmann::json read_json_file(const std::filesystem::path& file) {
  return parse_json(read_text_file(file), file.string());
}

}  // namespace qllm
