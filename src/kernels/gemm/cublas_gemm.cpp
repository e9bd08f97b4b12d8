#include "kernels/gemm/cublas_gemm.h"

#include "qllm/error.h"

namespace qllm {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

void check(cublasStatus_t status, const char* what) {
  QLLM_CHECK(status == CUBLAS_STATUS_SUCCESS, "cuBLASLt {} failed with status {}", what,
             static_cast<int>(status));
}

}  // namespace

CublasGemm::CublasGemm() : workspace_(kWorkspaceBytes, "cuBLASLt workspace") {
  check(cublasLtCreate(&handle_), "create");
}

CublasGemm::~CublasGemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.w);
    cublasLtMatrixLayoutDestroy(p.x);
    cublasLtMatrixLayoutDestroy(p.y);
    cublasLtMatmulDescDestroy(p.op);
  }
  cublasLtDestroy(handle_);
}

// Column-major view: Y^T [n, m] = W [n, k] (the row-major [n, k] buffer read transposed) * X^T [k, m].
const CublasGemm::Plan& CublasGemm::plan(int64_t m, int64_t n, int64_t k, DType dtype) {
  const auto key = std::make_tuple(m, n, k, dtype);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second;
  QLLM_CHECK(dtype == DType::BF16 || dtype == DType::F16, "cuBLAS baseline takes bf16 or f16, not {}",
             dtype_name(dtype));
  const cudaDataType_t type = dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  Plan p;
  check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
  const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)),
        "transa");
  check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)), "transb");
  check(cublasLtMatrixLayoutCreate(&p.w, type, k, n, k), "layout W");
  check(cublasLtMatrixLayoutCreate(&p.x, type, k, m, k), "layout X");
  check(cublasLtMatrixLayoutCreate(&p.y, type, n, m, n), "layout Y");

  cublasLtMatmulPreference_t preference = nullptr;
  check(cublasLtMatmulPreferenceCreate(&preference), "preference");
  size_t workspace = kWorkspaceBytes;
  check(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                             sizeof(workspace)),
        "workspace preference");
  // Split-K partial sums are reduced in fp32 or not at all: the in-place and output-type schemes round every
  // partial to the 16-bit output, an error the CPU reference does not have.
  uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  check(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions,
                                             sizeof(reductions)),
        "reduction scheme preference");
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  check(cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.w, p.x, p.y, p.y, preference, 1, &heuristic, &found),
        "heuristic");
  cublasLtMatmulPreferenceDestroy(preference);
  QLLM_CHECK(found > 0, "cuBLASLt found no algorithm for [{} x {}] @ [{} x {}]^T", m, k, n, k);
  p.algo = heuristic.algo;
  return plans_.emplace(key, p).first->second;
}

void CublasGemm::run(const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k, DType dtype,
                     cudaStream_t stream) {
  const Plan& p = plan(m, n, k, dtype);
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasLtMatmul(handle_, p.op, &alpha, w, p.w, x, p.x, &beta, y, p.y, y, p.y, &p.algo,
                       workspace_.data(), kWorkspaceBytes, stream),
        "matmul");
}

}  // namespace qllm
