#include "core/checked_math.h"

#include <unistd.h>

namespace qllm {

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

void check_fits_in_memory(uint64_t bytes, std::string_view what) {
  const uint64_t available = physical_memory_bytes();
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  QLLM_CHECK(available == 0 || bytes <= available,
             "{} needs {:.1f} GiB, more than this machine's {:.1f} GiB of memory", what,
             static_cast<double>(bytes) / kGiB, static_cast<double>(available) / kGiB);
}

}  // namespace qllm
