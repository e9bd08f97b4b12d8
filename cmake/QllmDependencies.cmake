# Third-party dependencies, all from the system (Debian packages installed by scripts/setup.sh).
# On the GPU machine, where nothing can be installed, scripts/gpu_check.sh points CMAKE_PREFIX_PATH at a
# bundle of the same Debian files (scripts/bundle_deps.sh); nothing is vendored into the repository.

find_package(fmt REQUIRED)                 # header-only target used: no shared library to ship
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(OpenMP COMPONENTS CXX)        # optional: the CPU reference runs single-threaded without it

# PCRE2 (8-bit, with JIT) for the tokenizer's pre-tokenizer regex. Linked statically when the static
# library exists so that binaries carry no runtime dependency on it.
find_path(PCRE2_INCLUDE_DIR pcre2.h REQUIRED)
find_library(PCRE2_LIBRARY NAMES libpcre2-8.a pcre2-8 REQUIRED)
add_library(qllm_pcre2 INTERFACE)
target_include_directories(qllm_pcre2 SYSTEM INTERFACE ${PCRE2_INCLUDE_DIR})
target_link_libraries(qllm_pcre2 INTERFACE ${PCRE2_LIBRARY})
target_compile_definitions(qllm_pcre2 INTERFACE PCRE2_CODE_UNIT_WIDTH=8)

if(QLLM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
