# The libraries' dependency order (README "Layout"), enforced at configure time: a file under src/<layer>/
# may include only the headers of the layers listed for it (its own included). An include that runs back up
# (e.g. quant including model/) stops the configure step with the file and the line, so it cannot land.
# Links follow the same order (each library's DEPS in its CMakeLists.txt).
set(QLLM_LAYERS
  "core=qllm core"
  "quant=qllm core quant"
  "kernels=qllm core quant kernels"
  "jinja=qllm core jinja"
  "tokenizer=qllm core jinja tokenizer"
  "model=qllm core quant kernels model"
  "engine=qllm core quant kernels model jinja tokenizer engine"
  "server=qllm core quant kernels model jinja tokenizer engine server")

function(qllm_check_layering)
  set(violations "")
  foreach(entry IN LISTS QLLM_LAYERS)
    string(REGEX MATCH "^[a-z_]+" layer "${entry}")
    string(REGEX REPLACE "^[a-z_]+=" "" allowed "${entry}")
    set(allowed_text "${allowed}")
    separate_arguments(allowed UNIX_COMMAND "${allowed}")
    file(GLOB_RECURSE files CONFIGURE_DEPENDS
      "${PROJECT_SOURCE_DIR}/src/${layer}/*.h" "${PROJECT_SOURCE_DIR}/src/${layer}/*.cpp"
      "${PROJECT_SOURCE_DIR}/src/${layer}/*.cu" "${PROJECT_SOURCE_DIR}/src/${layer}/*.cuh")
    foreach(file IN LISTS files)
      file(STRINGS "${file}" includes REGEX "^#include \"[a-z_]+/")
      foreach(line IN LISTS includes)
        string(REGEX REPLACE "^#include \"([a-z_]+)/.*" "\\1" target "${line}")
        if(NOT target IN_LIST allowed)
          file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${file}")
          list(APPEND violations "  ${rel}: ${line} (src/${layer} may include: ${allowed_text})")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(violations)
    list(JOIN violations "\n" text)
    message(FATAL_ERROR "include running against the layer order core <- quant <- kernels <- model <- engine:\n${text}")
  endif()
endfunction()

qllm_check_layering()
