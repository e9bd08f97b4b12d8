// Hopper (sm_90a) building blocks for the warp-specialized GEMM kernels: mbarriers, TMA tile loads, wgmma
// shared-memory descriptors and fences. Include only from .cu files compiled for sm_90a.
#pragma once

#include <cuda.h>

#include <cstdint>

// Set while compiling device code for sm_90a, the only target with wgmma and TMA: the kernel bodies sit
// inside
// `#if QLLM_WGMMA_ENABLED` and compile empty for every other architecture of the build.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define QLLM_WGMMA_ENABLED 1
#endif

namespace qllm::kernels::sm90 {

// The first 1024-byte boundary in dynamic shared memory: 128-byte-swizzled tiles (TMA, wgmma descriptors)
// need it.
__device__ __forceinline__ uint8_t* align_1024(uint8_t* p) {
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + 1023) & ~uintptr_t{1023});
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Shared-memory loads by address (volatile: they stay after the barrier waits that guard them).
__device__ __forceinline__ void ld_shared_v4(uint32_t address, uint32_t (&r)[4]) {
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ uint32_t ld_shared_u32(uint32_t address) {
  uint32_t r;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(r) : "r"(address));
  return r;
}

// Stores four 8x8 matrices of 16-bit values held in mma fragment layout (lane l: row l / 4, columns
// 2 (l % 4), + 1 of each), transposed: lane l gives the address of row l % 8 of matrix l / 8, which receives
// the matrix's column l % 8.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t address, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(address),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

// ---- mbarrier ---------------------------------------------------------------------------------------------
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(arrivals));
}
// Makes the initialized barriers visible to the async proxy (TMA) before anyone uses them.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}" ::"r"(smem_addr(bar))
               : "memory");
}
// Arrives and announces `bytes` that asynchronous copies will deliver to this barrier's current phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}" ::"r"(
                   smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
// Waits until the phase with parity `parity` has completed (a fresh barrier's "previous" phase, parity 1,
// counts as completed).
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait_loop:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_loop;\n}" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}

// ---- TMA -------------------------------------------------------------------------------------------------
// Loads the box at (inner, outer) of a 2D tensor map into shared memory; completion is counted in bytes on
// `bar`.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int inner, int outer,
                                            uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(smem_addr(bar))
      : "memory");
}
__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// ---- wgmma -----------------------------------------------------------------------------------------------
// Descriptor of a K-major tile with 128-byte swizzle (rows of 128 bytes in 1024-byte atoms of 8 rows), as
// TMA writes it with CU_TENSOR_MAP_SWIZZLE_128B. Advancing along K within the row adds bytes to the start.
__device__ __forceinline__ uint64_t sw128_descriptor(const void* smem) {
  uint64_t desc = (static_cast<uint64_t>(smem_addr(smem)) & 0x3ffff) >> 4;
  desc |= uint64_t{16 >> 4} << 16;    // leading byte offset: unused for this layout
  desc |= uint64_t{1024 >> 4} << 32;  // stride byte offset: next 8-row atom
  desc |= uint64_t{1} << 62;          // SWIZZLE_128B
  return desc;
}
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(kPending) : "memory");
}
// Pins registers that an asynchronous wgmma reads or writes: the compiler must neither move nor reuse them
// across this point.
template <int N>
__device__ __forceinline__ void keep(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <typename T, int N>
__device__ __forceinline__ void keep(T (&r)[N]) {
  static_assert(sizeof(T) == 4, "keep: 32-bit registers only");
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Hands registers between the warpgroups of a warp-specialized kernel: a producer warpgroup gives some back
// (dec), the consumers take them (inc). Every warp of the warpgroup must execute it.
template <int kRegisters>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kRegisters));
}

// ---- thread-block clusters --------------------------------------------------------------------------------
// Every thread of the cluster (exited ones excepted) arrives and waits; release/acquire orders shared memory.
// Written out because cooperative_groups' cluster.sync() adds a divergent slow path (a call) that made the
// int8 kernel spill its accumulators.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.aligned;\nbarrier.cluster.wait.aligned;" ::: "memory");
}
// The shared::cluster address of `local` (this CTA's shared memory) in the CTA of cluster rank `rank`.
__device__ __forceinline__ uint32_t cluster_peer_address(const void* local, uint32_t rank) {
  uint32_t remote;
  asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(smem_addr(local)), "r"(rank));
  return remote;
}
__device__ __forceinline__ int32_t load_cluster_s32(uint32_t address) {
  int32_t value;
  asm volatile("ld.shared::cluster.s32 %0, [%1];" : "=r"(value) : "r"(address) : "memory");
  return value;
}

// Barrier among `threads` threads (a multiple of 32) on hardware barrier `id` (1..15; 0 is __syncthreads).
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
// Arrives on named barrier `id` without waiting (its earlier memory writes are then visible to the threads
// that complete it with named_barrier); every thread of the arriving warp must execute it.
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace qllm::kernels::sm90
