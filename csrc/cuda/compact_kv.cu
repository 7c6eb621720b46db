// In-place KV compaction kernels (see compact_kv.cuh for the scheme and why it is overlap-safe).
#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "cuda/compact_kv.cuh"

namespace thinkc {
namespace {

constexpr int kPlanThreads = 256;
constexpr int kMoveThreads = 256;
constexpr int kUnroll = 4;                 // vectors per thread per chunk (staged in registers)
constexpr int kMaxCachesPerLaunch = 64;    // pointers passed by value: 512 bytes of kernel params
constexpr int32_t kNoMove = 0x7fffffff;

struct CachePtrs {
  char* p[kMaxCachesPerLaunch];
};

// Workspace (int32): map [B, C] (out token -> source token), then old [B], new [B], fixed [B]
// (fixed = the kept prefix that stays in place; everything after it moves strictly left).
struct Workspace {
  int32_t *map, *old_len, *new_len, *fixed;
};

Workspace carve(void* raw, int64_t B, int64_t C) {
  int32_t* ws = static_cast<int32_t*>(raw);
  return {ws, ws + B * C, ws + B * C + B, ws + B * C + 2 * B};
}

__global__ void plan_kernel(const int32_t* __restrict__ ranges, int64_t R, const int32_t* __restrict__ offsets,
                            int32_t* __restrict__ lengths, int64_t C, Workspace ws) {
  using Scan = cub::BlockScan<int32_t, kPlanThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int32_t dst_start[kPlanThreads];
  __shared__ int32_t carry, first_move;
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x;
  const int32_t old = lengths[b];
  const int64_t r0 = offsets[b], r1 = offsets[b + 1];

  // Validation, the same rules as the CPU check; uniform offsets test first so no thread reads out of bounds.
  const bool offsets_ok = offsets[0] == 0 && r0 >= 0 && r1 >= r0 && r1 <= R && old >= 0 && old <= C;
  bool bad = !offsets_ok;
  if (offsets_ok) {
    for (int64_t i = r0 + tid; i < r1; i += kPlanThreads) {
      const int32_t s = ranges[2 * i], e = ranges[2 * i + 1];
      bad |= s < 0 || e < s || e > old;
      if (i > r0) bad |= ranges[2 * i - 1] > s;
    }
  }
  if (__syncthreads_or(bad)) {
    if (tid == 0) {
      ws.old_len[b] = old;
      ws.new_len[b] = -1;  // the move kernel skips this row
      ws.fixed[b] = 0;
    }
    return;
  }

  if (tid == 0) {
    carry = 0;
    first_move = kNoMove;
  }
  __syncthreads();
  int32_t* row_map = ws.map + b * C;
  const int warp = tid / 32, lane = tid % 32, warps = kPlanThreads / 32;
  for (int64_t t0 = r0; t0 < r1; t0 += kPlanThreads) {
    const int64_t i = t0 + tid;
    const int32_t len = i < r1 ? ranges[2 * i + 1] - ranges[2 * i] : 0;
    int32_t excl, tile_total;
    Scan(scan_storage).ExclusiveSum(len, excl, tile_total);
    const int32_t dst = carry + excl;
    dst_start[tid] = dst;
    if (i < r1 && len > 0 && dst != ranges[2 * i]) atomicMin(&first_move, dst);
    __syncthreads();
    // One warp per range: coalesced map writes for long ranges, cheap for short ones.
    const int n_tile = r1 - t0 < kPlanThreads ? static_cast<int>(r1 - t0) : kPlanThreads;
    for (int j = warp; j < n_tile; j += warps) {
      const int32_t s = ranges[2 * (t0 + j)], e = ranges[2 * (t0 + j) + 1], d = dst_start[j];
      for (int32_t k = lane; k < e - s; k += 32) row_map[d + k] = s + k;
    }
    __syncthreads();
    if (tid == 0) carry += tile_total;
    __syncthreads();
  }
  if (tid == 0) {
    ws.old_len[b] = old;
    ws.new_len[b] = carry;
    ws.fixed[b] = min(first_move, carry);
    lengths[b] = carry;
  }
}

// Out vector v of a head -> (token, part): a shift when vectors-per-token is a power of two (the usual
// head_dim * elem_size / 16), else a 32-bit division; 64-bit division would cost more than the copy.
template <bool kPow2>
__device__ __forceinline__ uint32_t token_of(uint32_t v, uint32_t vpt, uint32_t shift) {
  return kPow2 ? v >> shift : v / vpt;
}

template <typename V, bool kPow2>
__global__ void __launch_bounds__(kMoveThreads) move_kernel(CachePtrs caches, int64_t B, int64_t H, int64_t C,
                                                            uint32_t vpt, uint32_t shift, Workspace ws) {
  const int64_t unit = blockIdx.x;  // (cache, row, head)
  const int64_t t = unit / (B * H), bh = unit % (B * H), b = bh / H;
  const int32_t new_len = ws.new_len[b];
  if (new_len < 0) return;
  V* head = reinterpret_cast<V*>(caches.p[t]) + bh * C * vpt;
  const int32_t* row_map = ws.map + b * C;
  const uint32_t end = static_cast<uint32_t>(new_len) * vpt;  // the launcher checks C * vpt < 2^31
  const uint32_t old_end = static_cast<uint32_t>(ws.old_len[b]) * vpt;
  constexpr uint32_t kChunk = static_cast<uint32_t>(kMoveThreads) * kUnroll;

  for (uint32_t base = static_cast<uint32_t>(ws.fixed[b]) * vpt; base < end; base += kChunk) {
    V staged[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t v = base + u * kMoveThreads + threadIdx.x;
      if (v < end) {
        const uint32_t o = token_of<kPow2>(v, vpt, shift), part = v - o * vpt;
        staged[u] = head[static_cast<uint32_t>(__ldg(row_map + o)) * vpt + part];
      }
    }
    __syncthreads();  // every read of this chunk is done before any write of it
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t v = base + u * kMoveThreads + threadIdx.x;
      if (v < end) head[v] = staged[u];
    }
    __syncthreads();
  }
  // Freed tail: only written, after all reads (the last sync above).
  const V zero{};
  for (uint32_t v = end + threadIdx.x; v < old_end; v += kMoveThreads) head[v] = zero;
}

template <typename V>
cudaError_t launch_moves(const CompactKvCudaArgs& a, const Workspace& ws, cudaStream_t stream) {
  const int64_t vpt = a.row_bytes / static_cast<int64_t>(sizeof(V));
  if (a.C * vpt >= (int64_t{1} << 31)) return cudaErrorInvalidValue;  // one head over 2^31 vectors
  uint32_t shift = 0;
  while ((int64_t{1} << shift) < vpt) ++shift;
  const bool pow2 = (int64_t{1} << shift) == vpt;
  for (int64_t first = 0; first < a.num_caches; first += kMaxCachesPerLaunch) {
    const int64_t n = std::min<int64_t>(kMaxCachesPerLaunch, a.num_caches - first);
    CachePtrs ptrs{};
    for (int64_t i = 0; i < n; ++i) ptrs.p[i] = static_cast<char*>(a.caches[first + i]);
    const unsigned grid = static_cast<unsigned>(n * a.B * a.H);
    if (pow2)
      move_kernel<V, true><<<grid, kMoveThreads, 0, stream>>>(ptrs, a.B, a.H, a.C, static_cast<uint32_t>(vpt), shift, ws);
    else
      move_kernel<V, false><<<grid, kMoveThreads, 0, stream>>>(ptrs, a.B, a.H, a.C, static_cast<uint32_t>(vpt), shift, ws);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

size_t compact_kv_workspace_bytes(int64_t B, int64_t C) { return sizeof(int32_t) * static_cast<size_t>(B * C + 3 * B); }

cudaError_t compact_kv_cuda(const CompactKvCudaArgs& a, cudaStream_t stream) {
  if (a.B == 0) return cudaSuccess;
  const Workspace ws = carve(a.workspace, a.B, a.C);
  plan_kernel<<<static_cast<unsigned>(a.B), kPlanThreads, 0, stream>>>(a.ranges, a.num_ranges, a.offsets, a.lengths,
                                                                        a.C, ws);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || a.H == 0 || a.C == 0 || a.row_bytes == 0 || a.num_caches == 0) return err;
  // Widest vector that divides the token row and every cache's base address.
  int64_t width = 16;
  while (width > 1) {
    bool ok = a.row_bytes % width == 0;
    for (int64_t i = 0; ok && i < a.num_caches; ++i) ok = reinterpret_cast<uintptr_t>(a.caches[i]) % width == 0;
    if (ok) break;
    width /= 2;
  }
  switch (width) {
    case 16: return launch_moves<uint4>(a, ws, stream);
    case 8: return launch_moves<uint2>(a, ws, stream);
    case 4: return launch_moves<uint32_t>(a, ws, stream);
    case 2: return launch_moves<uint16_t>(a, ws, stream);
    default: return launch_moves<uint8_t>(a, ws, stream);
  }
}

}  // namespace thinkc
