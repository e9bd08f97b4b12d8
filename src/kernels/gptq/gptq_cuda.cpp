#include "kernels/gptq/gptq_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/gptq/gptq_launch.h"
#include "qllm/error.h"

namespace qllm {

namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  QLLM_CHECK(status == CUBLAS_STATUS_SUCCESS, "GPTQ: {} failed (cuBLAS status {})", what,
             static_cast<int>(status));
}

void check_cusolver(cusolverStatus_t status, const char* what) {
  QLLM_CHECK(status == CUSOLVER_STATUS_SUCCESS, "GPTQ: {} failed (cuSOLVER status {})", what,
             static_cast<int>(status));
}

// cuSOLVER handle and workspace for one factorization.
class Solver {
 public:
  explicit Solver(cudaStream_t stream) {
    check_cusolver(cusolverDnCreate(&handle_), "cusolverDnCreate");
    check_cusolver(cusolverDnSetStream(handle_, stream), "cusolverDnSetStream");
  }
  ~Solver() { cusolverDnDestroy(handle_); }
  Solver(const Solver&) = delete;
  Solver& operator=(const Solver&) = delete;

  // In place on the column-major lower triangle of a[n, n]: its Cholesky factor (potrf) or, after that, the
  // inverse of the matrix it factors (potri).
  void potrf(double* a, int n, const char* what) {
    int lwork = 0;
    check_cusolver(cusolverDnDpotrf_bufferSize(handle_, CUBLAS_FILL_MODE_LOWER, n, a, n, &lwork),
                   "potrf_bufferSize");
    run(lwork, what, [&](double* work, int* info) {
      return cusolverDnDpotrf(handle_, CUBLAS_FILL_MODE_LOWER, n, a, n, work, lwork, info);
    });
  }
  void potri(double* a, int n) {
    int lwork = 0;
    check_cusolver(cusolverDnDpotri_bufferSize(handle_, CUBLAS_FILL_MODE_LOWER, n, a, n, &lwork),
                   "potri_bufferSize");
    run(lwork, "the inverse (potri)", [&](double* work, int* info) {
      return cusolverDnDpotri(handle_, CUBLAS_FILL_MODE_LOWER, n, a, n, work, lwork, info);
    });
  }

 private:
  template <typename Call>
  void run(int lwork, const char* what, Call&& call) {
    DeviceBuffer<double> work(static_cast<size_t>(std::max(lwork, 1)), "GPTQ cuSOLVER workspace");
    DeviceBuffer<int> info(1, "GPTQ cuSOLVER info");
    check_cusolver(call(work.data(), info.data()), what);
    const int status = info.download()[0];  // synchronous copy: waits for the factorization
    QLLM_CHECK(status == 0,
               "GPTQ: {} failed: the dampened Hessian is not positive definite (cuSOLVER info {}); raise the "
               "dampening or the calibration samples",
               what, status);
  }
  cusolverDnHandle_t handle_ = nullptr;
};

}  // namespace

HessianCuda::HessianCuda(int64_t dim, cublasHandle_t handle) : dim_(dim), handle_(handle) {
  QLLM_CHECK(dim > 0, "GPTQ: a Hessian needs a positive dimension, got {}", dim);
  sum_ = DeviceBuffer<float>(static_cast<size_t>(dim * dim), "GPTQ Hessian");
  sum_.fill_bytes(0);
  if (!handle_) {
    check_cublas(cublasCreate(&handle_), "cublasCreate");
    own_handle_ = true;
  }
}

HessianCuda::~HessianCuda() {
  if (own_handle_) cublasDestroy(handle_);
}

void HessianCuda::add(const float* x, int64_t rows, cudaStream_t stream) {
  if (rows == 0) return;
  // x row-major [rows, dim] is column-major [dim, rows]: syrk's A A^T is then sum over rows of x x^T.
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
  const float one = 1.0f;
  check_cublas(cublasSsyrk(handle_, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(dim_),
                           static_cast<int>(rows), &one, x, static_cast<int>(dim_), &one, sum_.data(),
                           static_cast<int>(dim_)),
               "cublasSsyrk (Hessian)");
  samples_ += rows;
}

std::vector<float> HessianCuda::hessian(cudaStream_t stream) const {
  QLLM_CHECK(samples_ > 0, "GPTQ: the Hessian of a {}-input layer has seen no calibration inputs", dim_);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<float> sum = sum_.download();
  const double scale = 2.0 / static_cast<double>(samples_);
  std::vector<float> h(sum.size());
  for (int64_t j = 0; j < dim_; ++j) {
    for (int64_t i = j; i < dim_; ++i) {
      h[i * dim_ + j] = h[j * dim_ + i] = static_cast<float>(scale * sum[i + j * dim_]);
    }
  }
  return h;
}

MatmulF32Cuda::MatmulF32Cuda() {
  check_cublas(cublasCreate(&handle_), "cublasCreate");
}

MatmulF32Cuda::~MatmulF32Cuda() {
  if (handle_) cublasDestroy(handle_);
}

void MatmulF32Cuda::run(const float* x, int64_t tokens, const float* w, int64_t rows, int64_t cols,
                        float* out, cudaStream_t stream) {
  QLLM_CHECK(
      tokens >= 0 && rows > 0 && cols > 0 && tokens <= INT32_MAX && rows <= INT32_MAX && cols <= INT32_MAX,
      "GPTQ: a [{}, {}] x [{}, {}]^T product is outside cuBLAS's int range", tokens, cols, rows, cols);
  if (tokens == 0) return;
  // Column-major view: w is W^T [cols, rows], x is X^T [cols, tokens], out is OUT^T [rows, tokens] = W X^T.
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
  const float one = 1.0f, zero = 0.0f;
  check_cublas(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows),
                           static_cast<int>(tokens), static_cast<int>(cols), &one, w, static_cast<int>(cols),
                           x, static_cast<int>(cols), &zero, out, static_cast<int>(rows)),
               "cublasSgemm (calibration forward)");
}

void CausalAttentionF32Cuda::run(const float* q, const float* k, const float* v, float* out,
                                 std::span<const int64_t> window_start, int64_t heads, int64_t kv_heads,
                                 int64_t head_dim, cudaStream_t stream) {
  QLLM_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && head_dim > 0 && window_start.size() >= 1,
             "calibration attention: {} heads over {} key/value heads of {} values", heads, kv_heads,
             head_dim);
  const int64_t group = heads / kv_heads, q_dim = heads * head_dim, kv_dim = kv_heads * head_dim;
  int64_t longest = 0;
  for (size_t w = 0; w + 1 < window_start.size(); ++w) {
    longest = std::max(longest, window_start[w + 1] - window_start[w]);
  }
  QLLM_CHECK(longest <= INT32_MAX / std::max<int64_t>(heads, 1) && q_dim <= INT32_MAX,
             "calibration attention: windows of {} tokens are too long", longest);
  if (longest == 0) return;
  if (scores_.size() < static_cast<size_t>(heads * longest * longest)) {
    scores_ =
        DeviceBuffer<float>(static_cast<size_t>(heads * longest * longest), "calibration attention scores");
  }
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const float one = 1.0f, zero = 0.0f;
  const int hd = static_cast<int>(head_dim);
  for (size_t w = 0; w + 1 < window_start.size(); ++w) {
    const int64_t first = window_start[w];
    const int len = static_cast<int>(window_start[w + 1] - first);
    if (len == 0) continue;
    const float* qw = q + first * q_dim;
    const float* kw = k + first * kv_dim;
    const float* vw = v + first * kv_dim;
    float* ow = out + first * q_dim;
    const int64_t square = static_cast<int64_t>(len) * len;
    // Head h = c * group + j reads key/value head c. For each j, one strided batch over c. Column-major views:
    // K_c is [hd, len] (ld kv_dim), Q_h is [hd, len] (ld q_dim); S_h^T [len(keys), len(queries)] = K_c^T Q_h
    // is S_h row-major (a row per query).
    for (int64_t j = 0; j < group; ++j) {
      check_cublas(cublasSgemmStridedBatched(
                       handle_, CUBLAS_OP_T, CUBLAS_OP_N, len, len, hd, &scale, kw, static_cast<int>(kv_dim),
                       head_dim, qw + j * head_dim, static_cast<int>(q_dim), group * head_dim, &zero,
                       scores_.data() + j * square, len, group * square, static_cast<int>(kv_heads)),
                   "cublasSgemmStridedBatched (attention scores)");
    }
    kernels::launch_causal_softmax(scores_.data(), heads, len, stream);
    QLLM_CUDA_CHECK(cudaGetLastError());
    // O_h^T [hd, len] = V_c^T [hd, len(keys)] . P_h^T [len(keys), len(queries)] (P_h row-major is P_h^T).
    for (int64_t j = 0; j < group; ++j) {
      check_cublas(cublasSgemmStridedBatched(
                       handle_, CUBLAS_OP_N, CUBLAS_OP_N, hd, len, len, &one, vw, static_cast<int>(kv_dim),
                       head_dim, scores_.data() + j * square, len, group * square, &zero, ow + j * head_dim,
                       static_cast<int>(q_dim), group * head_dim, static_cast<int>(kv_heads)),
                   "cublasSgemmStridedBatched (attention output)");
    }
  }
}

DeviceBuffer<float> gptq_inverse_factor_cuda(const GptqPrepared& prepared, cudaStream_t stream) {
  const int n = static_cast<int>(prepared.dim);
  QLLM_CHECK(prepared.dim > 0 && prepared.hessian.size() == static_cast<size_t>(prepared.dim * prepared.dim),
             "GPTQ: an unprepared Hessian");
  // Symmetric, so row-major is column-major. H = L L^T; H^-1 from L (potri); H^-1 = L' L'^T; U = L'^T.
  DeviceBuffer<double> a = to_device<double>(prepared.hessian, "GPTQ Hessian (double)");
  Solver solver(stream);
  solver.potrf(a.data(), n, "the Cholesky factor of H (potrf)");
  solver.potri(a.data(), n);
  solver.potrf(a.data(), n, "the Cholesky factor of H^-1 (potrf)");
  DeviceBuffer<float> u(static_cast<size_t>(prepared.dim * prepared.dim), "GPTQ inverse factor");
  kernels::launch_gptq_factor_to_upper(a.data(), u.data(), prepared.dim, stream);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return u;
}

Int4Matrix gptq_quantize_cuda(std::span<const float> w, int64_t rows, int64_t cols,
                              const GptqPrepared& prepared, const float* u, const Int4Scheme& scheme,
                              int64_t block_size, cudaStream_t stream,
                              std::span<const int4::GroupParams> groups) {
  const GroupLayout layout =
      gptq_check_inputs(w, rows, cols, prepared, static_cast<size_t>(cols * cols), scheme, block_size);
  const std::vector<float> start = gptq_start_weights(w, rows, cols, prepared);
  std::vector<int4::GroupParams> params =
      gptq_loop_params(start, layout, scheme, gptq_act_order(prepared), groups);
  const int64_t dynamic_group = params.empty() ? layout.group_elems : 0;
  if (params.empty()) params.resize(static_cast<size_t>(layout.num_groups));
  std::vector<float> work(start.size());  // in quantization order
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) work[r * cols + i] = start[r * cols + prepared.order[i]];
  }
  // Batches never change the result (gptq_ref.h), so the kernel's limit is free to take.
  const int64_t block = std::min(block_size, kernels::kGptqMaxBlock);

  DeviceBuffer<float> d_work = to_device<float>(work, "GPTQ weights");
  DeviceBuffer<int64_t> d_order = to_device<int64_t>(prepared.order, "GPTQ column order");
  DeviceBuffer<uint8_t> d_nibbles(static_cast<size_t>(rows * cols), "GPTQ nibbles");
  DeviceBuffer<int4::GroupParams> d_params = to_device<int4::GroupParams>(params, "GPTQ group parameters");
  DeviceBuffer<float> d_err(static_cast<size_t>(rows * block), "GPTQ batch errors");
  kernels::GptqLoopArgs a;
  a.work = d_work.data();
  a.u = u;
  a.order = d_order.data();
  a.nibbles = d_nibbles.data();
  a.params = d_params.data();
  a.err = d_err.data();
  a.rows = rows;
  a.cols = cols;
  a.block = block;
  a.group_elems = layout.group_elems;
  a.groups_per_row = layout.groups_per_row;
  a.dynamic_group = dynamic_group;
  a.zero_point = scheme.zero_point;
  a.bf16_scale = scheme.scale_dtype == DType::BF16;
  a.search = scheme.search;
  for (int64_t i1 = 0; i1 < cols;) {
    const int64_t i2 = gptq_batch_end(i1, cols, block, dynamic_group);
    kernels::launch_gptq_batch(a, i1, i2, stream);
    if (i2 < cols) kernels::launch_gptq_update(a, i1, i2, stream);
    i1 = i2;
  }
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));

  const std::vector<uint8_t> nibbles = d_nibbles.download();
  params = d_params.download();
  Int4Matrix out;
  out.rows = rows;
  out.cols = cols;
  out.scheme = scheme;
  out.packed.assign(static_cast<size_t>(rows * cols / 2), 0);
  for (int64_t flat = 0; flat < rows * cols; ++flat) {
    out.packed[flat / 2] |= static_cast<uint8_t>((flat & 1) ? nibbles[flat] << 4 : nibbles[flat]);
  }
  gptq_store_params(out, layout, params);
  return out;
}

void GptqSolverCuda::factor(std::span<const float> hessian, int64_t dim, const GptqOptions& options) {
  prepared_ = gptq_prepare(hessian, dim, options);
  factor_ = gptq_inverse_factor_cuda(prepared_, nullptr);
  block_size_ = options.block_size;
}

Int4Matrix GptqSolverCuda::quantize(std::span<const float> w, int64_t rows, int64_t cols,
                                    const Int4Scheme& scheme, std::span<const int4::GroupParams> groups) {
  QLLM_CHECK(factor_.data() != nullptr, "GPTQ: quantize() before factor()");
  return gptq_quantize_cuda(w, rows, cols, prepared_, factor_.data(), scheme, block_size_, nullptr, groups);
}

}  // namespace qllm
