# Warnings and floating-point rules shared by every qllm target.
add_library(qllm_options INTERFACE)
target_compile_options(qllm_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-unknown-pragmas>
  # Option structs are filled with designated initializers; the members left out keep their defaults.
  $<$<COMPILE_LANGUAGE:CXX>:-Wno-missing-field-initializers>
  # The CPU reference must round exactly like the GPU kernels: no fused multiply-add contraction.
  $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>
  # nvcc: IEEE division and square root, explicit fma only where the kernel asks for it.
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall>
  # nvcc cannot evaluate fmt's consteval format-string checks; .cpp files still check every format string.
  $<$<COMPILE_LANGUAGE:CUDA>:-DFMT_CONSTEVAL=>)
# AddressSanitizer + UndefinedBehaviorSanitizer for the CPU code (the `sanitize` preset; CI runs the CPU tests
# in such a build so that memory errors and undefined behaviour fail the build instead of shipping).
if(QLLM_SANITIZE)
  set(_qllm_sanitize_flags -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_compile_options(qllm_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_qllm_sanitize_flags}>)
  target_link_options(qllm_options INTERFACE ${_qllm_sanitize_flags})
endif()
target_include_directories(qllm_options INTERFACE
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
if(QLLM_CUDA)
  target_compile_definitions(qllm_options INTERFACE QLLM_HAVE_CUDA=1)
endif()

# Adds a static qllm library from the listed sources; CUDA sources are dropped in CPU-only builds.
function(qllm_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;CUDA_SOURCES;DEPS" ${ARGN})
  set(srcs ${ARG_SOURCES})
  if(QLLM_CUDA)
    list(APPEND srcs ${ARG_CUDA_SOURCES})
  endif()
  add_library(${name} STATIC ${srcs})
  target_link_libraries(${name} PUBLIC qllm_options ${ARG_DEPS})
  if(QLLM_CUDA AND ARG_CUDA_SOURCES)
    set_target_properties(${name} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
    target_link_libraries(${name} PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt)
  endif()
endfunction()
