// Op-harness rows of the attention family (tests/gpu/op_harness.h): rope_kv and paged attention (prefill,
// decode with its split-K combine, a CUDA graph replayed with new lengths) against their CPU references
// (rope_kv_ref.cpp, paged_attention_ref.cpp), over the models' head shapes, page sizes 16 and 64, batches of
// sequences of different lengths (1, 7, 63, 64, 65, 300, 2000 keys), bf16 and f16. Outputs are poisoned
// (NaN) first. Inputs are N(0, 1) rounded to the dtype, pages in a shuffled order with spare NaN pages.
//
// Bounds (MaxRel, denominators floored at 0.25, so small outputs are held to an absolute error):
//  - rope_kv: one ulp of T (2^-7 bf16, 2^-10 f16): both sides do the same f32 operations, cos/sin of the same
//    f32 angle in double; only a last-bit difference of the two double sincos can move a result by an ulp.
//    v is copied: any difference fails. Pool slots not named by slot_mapping must keep their bytes.
//  - decode: one ulp of T (+1%): probabilities and sums stay f32 (error ~1e-5 relative), the output is
//    rounded to T once on both sides.
//  - prefill: 2^-5 bf16, 2^-7 f16: the probabilities are rounded to T for the P V product on tensor cores
//    (unit roundoff 2^-8 bf16, 2^-11 f16, each weighted by |v| ~ 1), plus the one ulp of the output rounding.
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "kernels/attention/attention_cuda.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/attention/rope_kv.h"
#include "tests/gpu/op_harness.h"
#include "tests/support/paged_batch.h"
#include "tests/support/test_util.h"

namespace qllm::testing {
namespace {

struct HeadShape {
  const char* name;
  int num_q_heads, num_kv_heads, head_dim;
};
constexpr HeadShape kShapes[] = {
    {"smollm2", 9, 3, 64},  // GQA ratio 3
    {"llama1b", 32, 8, 64},
    {"proxy", 8, 2, 64},
    {"d128", 32, 8, 128},  // Llama-3-8B's heads
};
constexpr DType kDtypes[] = {DType::BF16, DType::F16};
constexpr int kPageSizes[] = {16, 64};

const std::vector<std::pair<int64_t, int64_t>> kDecodeBatch = {{1, 1},  {1, 7},   {1, 63},  {1, 64},
                                                               {1, 65}, {1, 300}, {1, 2000}};
// Whole prompts and chunks after a cached prefix (q_len < kv_len).
const std::vector<std::pair<int64_t, int64_t>> kPrefillBatch = {
    {1, 1}, {7, 7}, {63, 63}, {64, 64}, {65, 65}, {300, 300}, {65, 2000}, {7, 300}, {1, 2000}};

// A blocking stream: it waits for the uploads and poisoning (cudaMemcpy, cudaMemset on the legacy default
// stream) issued before its launches; the constructor also waits for every earlier device operation.
class Stream {
 public:
  Stream() {
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
    QLLM_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void sync() const { QLLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

template <typename T>
DeviceBuffer<T> to_device(const std::vector<T>& host, const char* what) {
  DeviceBuffer<T> buffer(std::max<size_t>(host.size(), 1), what);
  buffer.upload(host);
  return buffer;
}

double ulp_bound(DType dtype) {
  return dtype == DType::BF16 ? 0x1p-7 : 0x1p-10;
}
constexpr double kFloor = 0.25;

// A batch's buffers on the device and the params over them.
struct DeviceBatch {
  DeviceBuffer<uint8_t> q, out, k_pool, v_pool;
  DeviceBuffer<int32_t> table, q_start, kv_len;
  PagedAttentionParams params;

  explicit DeviceBatch(const PagedBatch& b)
      : q(to_device(b.q_bytes, "q")),
        out(b.q_bytes.size(), "out"),
        k_pool(to_device(b.k_pool, "k pool")),
        v_pool(to_device(b.v_pool, "v pool")),
        table(to_device(b.block_table, "block table")),
        q_start(to_device(b.seq_q_start, "seq_q_start")),
        kv_len(to_device(b.seq_kv_len, "seq_kv_len")) {
    poison(out);
    params = b.params(q.data(), out.data(), k_pool.data(), v_pool.data(), table.data(), q_start.data(),
                      kv_len.data());
  }
  // New device values of a batch with the same shapes (a later step of a captured graph).
  void upload(const PagedBatch& b) {
    q.upload(b.q_bytes);
    k_pool.upload(b.k_pool);
    v_pool.upload(b.v_pool);
    table.upload(b.block_table);
    q_start.upload(b.seq_q_start);
    kv_len.upload(b.seq_kv_len);
    poison(out);
  }
};

std::vector<float> reference_output(const PagedBatch& b) {
  std::vector<uint8_t> out(b.q_bytes.size(), 0xff);
  paged_attention_reference(b.host_params(out));
  return decode(out, b.spec.dtype);
}

OpResult compare_output(const DeviceBatch& d, const PagedBatch& b) {
  std::vector<uint8_t> got_bytes(b.q_bytes.size());
  QLLM_CUDA_CHECK(cudaMemcpy(got_bytes.data(), d.out.data(), got_bytes.size(), cudaMemcpyDeviceToHost));
  const std::vector<float> got = decode(got_bytes, b.spec.dtype);
  return compare(got, reference_output(b), Metric::MaxRel, kFloor);
}

OpResult run_attention(const PagedBatchSpec& spec, AttentionPath path) {
  const PagedBatch b = make_paged_batch(spec);
  DeviceBatch d(b);
  PagedAttention attention(spec.num_q_heads, spec.num_kv_heads, spec.head_dim);
  attention.reserve(d.params.num_seqs, d.params.num_tokens, d.params.max_kv_len);
  Stream stream;
  attention.run(d.params, stream.get(), path);
  stream.sync();
  OpResult r = compare_output(d, b);
  const AttentionPath taken = attention.path_for(d.params, path);
  r.detail +=
      fmt::format(" [{} path, {} decode splits]", taken == AttentionPath::Decode ? "decode" : "prefill",
                  taken == AttentionPath::Decode ? attention.decode_splits_for(d.params) : 0);
  return r;
}

// Captures one run in a CUDA graph for the bounds of `spec`, then replays it on two batches of other
// lengths (same shapes, token count and bounds, new device values): the kernels must read the lengths, positions and
// block tables from device memory and size nothing from them.
OpResult run_attention_graph(PagedBatchSpec spec, std::vector<std::pair<int64_t, int64_t>> later_a,
                             std::vector<std::pair<int64_t, int64_t>> later_b) {
  const PagedBatch first = make_paged_batch(spec);
  DeviceBatch d(first);
  PagedAttention attention(spec.num_q_heads, spec.num_kv_heads, spec.head_dim);
  attention.reserve(d.params.num_seqs, d.params.num_tokens, d.params.max_kv_len);
  Stream stream;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  QLLM_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  attention.run(d.params, stream.get());
  QLLM_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  QLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  OpResult worst;
  for (const auto& seqs : {later_a, later_b}) {
    spec.seqs = seqs;
    spec.seed += 1;
    const PagedBatch b = make_paged_batch(spec);
    QLLM_CHECK(b.num_tokens == first.num_tokens && b.num_pages == first.num_pages &&
                   b.max_pages_per_seq == first.max_pages_per_seq && b.max_kv_len == first.max_kv_len,
               "graph test: the later batch changes the captured shapes");
    d.upload(b);
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
    QLLM_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
    stream.sync();
    const OpResult r = compare_output(d, b);
    if (!(r.error <= worst.error)) worst = r;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return worst;
}

void add_attention_rows(std::vector<OpCase>& cases) {
  for (const HeadShape& shape : kShapes) {
    for (int page_size : kPageSizes) {
      for (DType dtype : kDtypes) {
        const std::string dt(dtype_name(dtype));
        const std::string where = fmt::format("{} {}/{} D{} page{}", shape.name, shape.num_q_heads,
                                              shape.num_kv_heads, shape.head_dim, page_size);
        auto spec = [=](std::vector<std::pair<int64_t, int64_t>> seqs) {
          return PagedBatchSpec{shape.num_q_heads, shape.num_kv_heads, shape.head_dim, page_size, dtype, seqs,
                                fresh_seed()};
        };
        const double decode_bound = 1.01 * ulp_bound(dtype);
        const double prefill_bound = dtype == DType::BF16 ? 0x1p-5 : 0x1p-7;
        cases.push_back({"paged_attention_decode", where + " kv=1,7,63,64,65,300,2000", dt, Metric::MaxRel,
                         decode_bound,
                         [=] { return run_attention(spec(kDecodeBatch), AttentionPath::Auto); }});
        cases.push_back({"paged_attention_prefill",
                         where + " (q,kv)=(1,1)..(300,300),(65,2000),(7,300),(1,2000)", dt, Metric::MaxRel,
                         prefill_bound,
                         [=] { return run_attention(spec(kPrefillBatch), AttentionPath::Auto); }});
        if (page_size != 16) continue;
        cases.push_back({"paged_attention_decode", where + " one sequence kv=2000 (many splits)", dt,
                         Metric::MaxRel, decode_bound, [=] {
                           return run_attention(spec({{1, 2000}}), AttentionPath::Auto);
                         }});
        cases.push_back({"paged_attention_decode", where + " kv=300,5 + a padding slot, bound 4096", dt,
                         Metric::MaxRel, decode_bound, [=] {
                           PagedBatchSpec s = spec({{1, 300}, {0, 9}, {1, 5}});
                           s.kv_len_bound = 4096;
                           return run_attention(s, AttentionPath::Auto);
                         }});
        cases.push_back({"paged_attention_prefill", where + " q_len 1 rows through the prefill kernel", dt,
                         Metric::MaxRel, prefill_bound,
                         [=] { return run_attention(spec(kDecodeBatch), AttentionPath::Prefill); }});
        cases.push_back({"paged_attention_prefill",
                         where + " (q,kv)=(5,70),(0,3),(40,40), bounds q 100 kv 512", dt, Metric::MaxRel,
                         prefill_bound, [=] {
                           PagedBatchSpec s = spec({{5, 70}, {0, 3}, {40, 40}});
                           s.q_len_bound = 45;
                           s.kv_len_bound = 512;
                           return run_attention(s, AttentionPath::Auto);
                         }});
        cases.push_back(
            {"paged_attention_graph", where + " decode captured at kv<=3000, replayed", dt, Metric::MaxRel,
             decode_bound, [=] {
               PagedBatchSpec s = spec({{1, 100}, {1, 2500}, {1, 7}});
               s.kv_len_bound = 3000;
               s.min_pages = 3 * 3000 / page_size + 8;
               return run_attention_graph(s, {{1, 2999}, {1, 1}, {1, 64}}, {{1, 65}, {1, 1}, {1, 1500}});
             }});
        cases.push_back({"paged_attention_graph", where + " prefill captured at 40 tokens, replayed", dt,
                         Metric::MaxRel, prefill_bound, [=] {
                           PagedBatchSpec s = spec({{20, 20}, {20, 300}});
                           s.q_len_bound = 40;
                           s.kv_len_bound = 512;
                           s.min_pages = 2 * 512 / page_size + 8;
                           return run_attention_graph(s, {{40, 500}, {0, 0}}, {{1, 1}, {39, 39}});
                         }});
      }
    }
  }
}

// ---- rope_kv ----

struct RopeCase {
  HeadShape shape;
  int page_size;
  DType dtype;
  int64_t tokens;
  uint64_t seed;
};

OpResult run_rope_kv(const RopeCase& c) {
  Rng rng(c.seed);
  const int Hq = c.shape.num_q_heads, Hkv = c.shape.num_kv_heads, D = c.shape.head_dim;
  const int64_t num_pages = (c.tokens + c.page_size - 1) / c.page_size + 2;
  const int64_t pool_slots = num_pages * c.page_size;
  std::vector<float> qkv(static_cast<size_t>(c.tokens * (Hq + 2 * Hkv) * D));
  for (float& x : qkv) x = static_cast<float>(rng.normal());
  std::vector<float> inv_freq(static_cast<size_t>(D / 2));
  for (int j = 0; j < D / 2; ++j)
    inv_freq[static_cast<size_t>(j)] = static_cast<float>(std::pow(500000.0, -2.0 * j / D));
  // Positions across a long context (first, second, powers of two, random), slots a shuffled subset of the
  // pool, every eighth token a padding row (-1).
  std::vector<int32_t> positions(static_cast<size_t>(c.tokens)), slots(positions.size());
  std::vector<int32_t> free_slots(static_cast<size_t>(pool_slots));
  for (int64_t i = 0; i < pool_slots; ++i) free_slots[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  for (size_t i = free_slots.size(); i > 1; --i) std::swap(free_slots[i - 1], free_slots[rng.below(i)]);
  for (int64_t t = 0; t < c.tokens; ++t) {
    const int32_t fixed[] = {0, 1, 2047, 4096, 131071};
    positions[static_cast<size_t>(t)] = t < 5 ? fixed[t] : static_cast<int32_t>(rng.below(131072));
    slots[static_cast<size_t>(t)] = t % 8 == 7 ? -1 : free_slots[static_cast<size_t>(t)];
  }
  const std::vector<uint8_t> qkv_bytes = encode(qkv, c.dtype);
  const size_t pool_bytes = static_cast<size_t>(pool_slots * Hkv * D) * dtype_size(c.dtype);
  const std::vector<uint8_t> pool_pattern(pool_bytes, 0x5a);  // finite in bf16 and f16, never a result
  std::vector<uint8_t> q_ref(static_cast<size_t>(c.tokens * Hq * D) * dtype_size(c.dtype), 0xff);
  std::vector<uint8_t> k_ref = pool_pattern, v_ref = pool_pattern;

  RopeKvParams p;
  p.dtype = c.dtype;
  p.num_tokens = c.tokens;
  p.num_q_heads = Hq;
  p.num_kv_heads = Hkv;
  p.head_dim = D;
  p.page_size = c.page_size;
  p.num_pages = num_pages;
  RopeKvParams host = p;
  host.qkv = qkv_bytes.data();
  host.q_out = q_ref.data();
  host.k_pool = k_ref.data();
  host.v_pool = v_ref.data();
  host.inv_freq = inv_freq.data();
  host.positions = positions.data();
  host.slot_mapping = slots.data();
  rope_kv_reference(host);

  auto d_qkv = to_device(qkv_bytes, "qkv");
  DeviceBuffer<uint8_t> d_q(q_ref.size(), "q_out");
  poison(d_q);
  auto d_k = to_device(pool_pattern, "k pool"), d_v = to_device(pool_pattern, "v pool");
  auto d_freq = to_device(inv_freq, "inv_freq");
  auto d_pos = to_device(positions, "positions"), d_slots = to_device(slots, "slots");
  p.qkv = d_qkv.data();
  p.q_out = d_q.data();
  p.k_pool = d_k.data();
  p.v_pool = d_v.data();
  p.inv_freq = d_freq.data();
  p.positions = d_pos.data();
  p.slot_mapping = d_slots.data();
  Stream stream;
  launch_rope_kv(p, stream.get());
  stream.sync();

  const OpResult q = compare(decode(d_q.download(), c.dtype), decode(q_ref, c.dtype), Metric::MaxRel, 1e-3);
  const OpResult k = compare(decode(d_k.download(), c.dtype), decode(k_ref, c.dtype), Metric::MaxRel, 1e-3);
  const std::vector<uint8_t> v_got = d_v.download();
  OpResult r = q.error >= k.error ? q : k;
  r.detail = (q.error >= k.error ? "q: " : "k: ") + r.detail;
  if (v_got != v_ref) {
    r.error = std::numeric_limits<double>::infinity();
    r.detail = "v pool differs from the reference (v is copied bit for bit)";
  }
  return r;
}

void add_rope_rows(std::vector<OpCase>& cases) {
  for (const HeadShape& shape : kShapes) {
    for (int page_size : kPageSizes) {
      for (DType dtype : kDtypes) {
        for (int64_t tokens : {1, 7, 300}) {
          if (page_size == 64 && tokens != 300) continue;
          const RopeCase c{shape, page_size, dtype, tokens, fresh_seed()};
          cases.push_back({"rope_kv",
                           fmt::format("{} {}/{} D{} page{} tokens={}", shape.name, shape.num_q_heads,
                                       shape.num_kv_heads, shape.head_dim, page_size, tokens),
                           std::string(dtype_name(dtype)), Metric::MaxRel, ulp_bound(dtype),
                           [=] { return run_rope_kv(c); }});
        }
      }
    }
  }
}

}  // namespace

QLLM_OP_CASES(attention) {
  std::vector<OpCase> cases;
  add_rope_rows(cases);
  add_attention_rows(cases);
  return cases;
}

}  // namespace qllm::testing
