#include "kernels/runtime/tma.h"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "qllm/error.h"

namespace qllm {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_function() {
  static PFN_cuTensorMapEncodeTiled_v12000 function = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult result{};
    const cudaError_t status =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &result);
    QLLM_CHECK(status == cudaSuccess && result == cudaDriverEntryPointSuccess && fn != nullptr,
               "the CUDA driver does not provide cuTensorMapEncodeTiled (TMA needs driver 12.0 or newer)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return function;
}

CUtensorMap encode_2d(CUtensorMapDataType type, int element_bytes, CUtensorMapSwizzle swizzle,
                      const void* base, int64_t rows, int64_t cols, int box_rows, int box_cols) {
  QLLM_CHECK(reinterpret_cast<uintptr_t>(base) % 16 == 0 && (cols * element_bytes) % 16 == 0,
             "TMA: base must be 16-byte aligned and rows a multiple of 16 bytes ([{}, {}])", rows, cols);
  CUtensorMap map{};
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols * element_bytes)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult status =
      encode_function()(&map, type, 2, const_cast<void*>(base), dims, strides, box, element_strides,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  QLLM_CHECK(status == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed ({}) for [{}, {}] in boxes of [{}, {}]",
             static_cast<int>(status), rows, cols, box_rows, box_cols);
  return map;
}

}  // namespace

CUtensorMap make_tensor_map_2d(const void* base, int element_bytes, int64_t rows, int64_t cols, int box_rows,
                               int box_cols) {
  QLLM_CHECK(element_bytes == 1 || element_bytes == 2, "TMA: element size {} not supported", element_bytes);
  QLLM_CHECK(box_cols * element_bytes == 128, "TMA: a swizzled box row must be 128 bytes, not {}",
             box_cols * element_bytes);
  return encode_2d(element_bytes == 1 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_UINT16,
                   element_bytes, CU_TENSOR_MAP_SWIZZLE_128B, base, rows, cols, box_rows, box_cols);
}

CUtensorMap make_word_tensor_map_2d(const void* base, int64_t rows, int64_t cols, int box_rows,
                                    int box_cols) {
  QLLM_CHECK(box_cols % 4 == 0 && box_cols <= 256, "TMA: a box row of {} words is not supported", box_cols);
  return encode_2d(CU_TENSOR_MAP_DATA_TYPE_UINT32, 4, CU_TENSOR_MAP_SWIZZLE_NONE, base, rows, cols, box_rows,
                   box_cols);
}

}  // namespace qllm
