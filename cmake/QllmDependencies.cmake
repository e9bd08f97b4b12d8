# Third-party dependencies, all from the system (Debian packages installed by scripts/setup.sh).
# On the GPU machine, where nothing can be installed, scripts/gpu_check.sh points CMAKE_PREFIX_PATH at a
# bundle of the same Debian files (scripts/bundle_deps.sh); nothing is vendored into the repository.

find_package(fmt REQUIRED)                 # the compiled library: header-only fmt costs ~3 s of codegen per file
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

# cpp-httplib (Debian libcpp-httplib-dev) for `qllm serve`. Debian ships it as a compiled library
# (libcpp-httplib.so) whose header must see the macros it was built with where they change a class's layout:
# CPPHTTPLIB_OPENSSL_SUPPORT adds a member to httplib::Request (and needs OpenSSL's headers, libssl-dev).
# Its zlib and brotli macros only add #includes, so they are left out. Required unless QLLM_SERVER=OFF
# (scripts/gpu_check.sh turns it off when the carried .deps bundle has no httplib).
option(QLLM_SERVER "Build `qllm serve` (needs cpp-httplib)" ON)
if(QLLM_SERVER)
  find_path(HTTPLIB_INCLUDE_DIR httplib.h REQUIRED)
  find_library(HTTPLIB_LIBRARY NAMES cpp-httplib REQUIRED)
  find_path(OPENSSL_SSL_INCLUDE_DIR openssl/ssl.h REQUIRED)
  add_library(qllm_httplib INTERFACE)
  target_include_directories(qllm_httplib SYSTEM INTERFACE ${HTTPLIB_INCLUDE_DIR} ${OPENSSL_SSL_INCLUDE_DIR})
  target_link_libraries(qllm_httplib INTERFACE ${HTTPLIB_LIBRARY})
  target_compile_definitions(qllm_httplib INTERFACE CPPHTTPLIB_OPENSSL_SUPPORT)
  # DT_RPATH rather than RUNPATH: it also finds the libraries libcpp-httplib itself needs (OpenSSL, brotli)
  # in a bundle beside it (scripts/bundle_deps.sh), on a machine that lacks them.
  target_link_options(qllm_httplib INTERFACE -Wl,--disable-new-dtags)
endif()

if(QLLM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
