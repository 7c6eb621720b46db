// In-place paged KV compaction kernels (see compact_kv_paged.cuh for the scheme and why it is
// overlap-safe).
#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "cuda/compact_kv_paged.cuh"

namespace thinkc {
namespace {

constexpr int kPlanThreads = 256;
constexpr int kMoveThreads = 256;
constexpr int kUnroll = 4;                  // vectors per thread per chunk (staged in registers)
constexpr int kMaxBuffersPerLaunch = 64;    // pointers passed by value: 512 bytes of kernel params
constexpr int32_t kNoMove = 0x7fffffff;
constexpr int64_t kMax32 = int64_t{1} << 31;

struct BufferPtrs {
  char* p[kMaxBuffersPerLaunch];
};

// Sizes the kernels share (by value). page_shift >= 0 when page_size is a power of two.
struct Geometry {
  int64_t B, H, P, max_pages, cap;  // cap = max_pages * page_size: the longest row a block table maps
  int32_t page_size, page_shift, n_pages;
};

// Workspace (int32): map [B, cap] (out token -> physical source slot), then old [B], new [B],
// fixed [B] (fixed = the kept prefix that stays in place; everything after it moves strictly left).
struct Workspace {
  int32_t *map, *old_len, *new_len, *fixed;
};

Workspace carve(void* raw, int64_t B, int64_t cap) {
  int32_t* ws = static_cast<int32_t*>(raw);
  return {ws, ws + B * cap, ws + B * cap + B, ws + B * cap + 2 * B};
}

// Physical slot of logical token j of the row whose block-table row is `pages` (j's page is valid).
__device__ __forceinline__ uint32_t slot_of(const int32_t* __restrict__ pages, uint32_t j, const Geometry& g) {
  const uint32_t ps = static_cast<uint32_t>(g.page_size);
  const uint32_t page = g.page_shift >= 0 ? j >> g.page_shift : j / ps;
  return static_cast<uint32_t>(__ldg(pages + page)) * ps + (j - page * ps);
}

// True (on every thread) when row b's ranges, length or used pages break the contract.
__device__ bool row_invalid(const Geometry& g, const int32_t* __restrict__ pages, const int32_t* __restrict__ ranges,
                            int64_t R, const int32_t* __restrict__ offsets, int64_t r0, int64_t r1, int32_t old) {
  // The uniform offsets / length test first, so no thread reads out of bounds.
  const bool offsets_ok = offsets[0] == 0 && r0 >= 0 && r1 >= r0 && r1 <= R && old >= 0 && old <= g.cap;
  bool bad = !offsets_ok;
  if (offsets_ok) {
    for (int64_t i = r0 + threadIdx.x; i < r1; i += kPlanThreads) {
      const int32_t s = ranges[2 * i], e = ranges[2 * i + 1];
      bad |= s < 0 || e < s || e > old;
      if (i > r0) bad |= ranges[2 * i - 1] > s;
    }
    const int64_t used = (static_cast<int64_t>(old) + g.page_size - 1) / g.page_size;  // <= max_pages
    for (int64_t i = threadIdx.x; i < used; i += kPlanThreads) bad |= pages[i] < 0 || pages[i] >= g.n_pages;
  }
  return __syncthreads_or(bad) != 0;
}

__global__ void plan_kernel(Geometry g, const int32_t* __restrict__ block_table, const int32_t* __restrict__ ranges,
                            int64_t R, const int32_t* __restrict__ offsets, int32_t* __restrict__ lengths,
                            Workspace ws) {
  using Scan = cub::BlockScan<int32_t, kPlanThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int32_t dst_start[kPlanThreads];
  __shared__ int32_t carry, first_move;
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x;
  const int32_t old = lengths[b];
  const int64_t r0 = offsets[b], r1 = offsets[b + 1];
  const int32_t* pages = block_table + b * g.max_pages;
  if (row_invalid(g, pages, ranges, R, offsets, r0, r1, old)) {
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
  int32_t* row_map = ws.map + b * g.cap;
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
      for (int32_t k = lane; k < e - s; k += 32)
        row_map[d + k] = static_cast<int32_t>(slot_of(pages, static_cast<uint32_t>(s + k), g));
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

// Vector v of a row's logical sequence -> token: a shift when vectors-per-slot is a power of two.
template <bool kPow2>
__device__ __forceinline__ uint32_t token_of(uint32_t v, uint32_t vpt, uint32_t shift) {
  return kPow2 ? v >> shift : v / vpt;
}

template <typename V, bool kPow2>
__global__ void __launch_bounds__(kMoveThreads)
    move_kernel(BufferPtrs bufs, Geometry g, const int32_t* __restrict__ block_table, uint32_t vpt, uint32_t shift,
                Workspace ws) {
  const int64_t unit = blockIdx.x;  // (buffer, row, head)
  const int64_t t = unit / (g.B * g.H), bh = unit % (g.B * g.H), b = bh / g.H, h = bh % g.H;
  const int32_t new_len = ws.new_len[b];
  if (new_len < 0) return;
  V* head = reinterpret_cast<V*>(bufs.p[t]) + h * g.P * static_cast<int64_t>(vpt);
  const int32_t* src_of = ws.map + b * g.cap;
  const int32_t* pages = block_table + b * g.max_pages;
  const uint32_t end = static_cast<uint32_t>(new_len) * vpt;  // the launcher checks cap * vpt < 2^31
  const uint32_t old_end = static_cast<uint32_t>(ws.old_len[b]) * vpt;
  constexpr uint32_t kChunk = static_cast<uint32_t>(kMoveThreads) * kUnroll;

  for (uint32_t base = static_cast<uint32_t>(ws.fixed[b]) * vpt; base < end; base += kChunk) {
    V staged[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t v = base + u * kMoveThreads + threadIdx.x;
      if (v < end) {
        const uint32_t o = token_of<kPow2>(v, vpt, shift), part = v - o * vpt;
        staged[u] = head[static_cast<size_t>(__ldg(src_of + o)) * vpt + part];
      }
    }
    __syncthreads();  // every read of this chunk is done before any write of it
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t v = base + u * kMoveThreads + threadIdx.x;
      if (v < end) {
        const uint32_t o = token_of<kPow2>(v, vpt, shift), part = v - o * vpt;
        head[static_cast<size_t>(slot_of(pages, o, g)) * vpt + part] = staged[u];
      }
    }
    __syncthreads();
  }
  // Freed logical tail: only written, after all reads (the last sync above).
  const V zero{};
  for (uint32_t v = end + threadIdx.x; v < old_end; v += kMoveThreads) {
    const uint32_t o = token_of<kPow2>(v, vpt, shift), part = v - o * vpt;
    head[static_cast<size_t>(slot_of(pages, o, g)) * vpt + part] = zero;
  }
}

template <typename V>
cudaError_t launch_moves(const CompactKvPagedCudaArgs& a, const Geometry& g, const Workspace& ws,
                         cudaStream_t stream) {
  const int64_t vpt = a.row_bytes / static_cast<int64_t>(sizeof(V));
  uint32_t shift = 0;
  while ((int64_t{1} << shift) < vpt) ++shift;
  const bool pow2 = (int64_t{1} << shift) == vpt;
  for (int64_t first = 0; first < a.num_buffers; first += kMaxBuffersPerLaunch) {
    const int64_t n = std::min<int64_t>(kMaxBuffersPerLaunch, a.num_buffers - first);
    BufferPtrs ptrs{};
    for (int64_t i = 0; i < n; ++i) ptrs.p[i] = static_cast<char*>(a.buffers[first + i]);
    const unsigned grid = static_cast<unsigned>(n * a.B * a.H);
    const uint32_t v32 = static_cast<uint32_t>(vpt);
    if (pow2)
      move_kernel<V, true><<<grid, kMoveThreads, 0, stream>>>(ptrs, g, a.block_table, v32, shift, ws);
    else
      move_kernel<V, false><<<grid, kMoveThreads, 0, stream>>>(ptrs, g, a.block_table, v32, shift, ws);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

// Widest vector (bytes) that divides the slot row and every buffer's base address.
int64_t vector_width(const CompactKvPagedCudaArgs& a) {
  int64_t width = 16;
  while (width > 1) {
    bool ok = a.row_bytes % width == 0;
    for (int64_t i = 0; ok && i < a.num_buffers; ++i) ok = reinterpret_cast<uintptr_t>(a.buffers[i]) % width == 0;
    if (ok) break;
    width /= 2;
  }
  return width;
}

}  // namespace

size_t compact_kv_paged_workspace_bytes(int64_t B, int64_t max_pages, int64_t page_size) {
  return sizeof(int32_t) * static_cast<size_t>(B * max_pages * page_size + 3 * B);
}

cudaError_t compact_kv_paged_cuda(const CompactKvPagedCudaArgs& a, cudaStream_t stream) {
  if (a.page_size < 1 || a.P % a.page_size != 0 || a.max_pages < 0) return cudaErrorInvalidValue;
  const bool moves = a.H > 0 && a.row_bytes > 0 && a.num_buffers > 0;
  const int64_t width = moves ? vector_width(a) : 1;
  const int64_t cap = a.max_pages * a.page_size, vpt = moves ? a.row_bytes / width : 1;
  // Every check before any launch: a row must never get its new length without its moves.
  if (a.P >= kMax32 || cap * vpt >= kMax32 || kMaxBuffersPerLaunch * a.B * a.H >= kMax32) return cudaErrorInvalidValue;
  if (a.B == 0) return cudaSuccess;
  int32_t page_shift = 0;
  while ((int64_t{1} << page_shift) < a.page_size) ++page_shift;
  if ((int64_t{1} << page_shift) != a.page_size) page_shift = -1;
  const Geometry g{a.B, a.H, a.P, a.max_pages, cap, static_cast<int32_t>(a.page_size), page_shift,
                   static_cast<int32_t>(a.P / a.page_size)};
  const Workspace ws = carve(a.workspace, a.B, cap);
  plan_kernel<<<static_cast<unsigned>(a.B), kPlanThreads, 0, stream>>>(g, a.block_table, a.ranges, a.num_ranges,
                                                                        a.offsets, a.lengths, ws);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || !moves || cap == 0) return err;
  switch (width) {
    case 16: return launch_moves<uint4>(a, g, ws, stream);
    case 8: return launch_moves<uint2>(a, g, ws, stream);
    case 4: return launch_moves<uint32_t>(a, g, ws, stream);
    case 2: return launch_moves<uint16_t>(a, g, ws, stream);
    default: return launch_moves<uint8_t>(a, g, ws, stream);
  }
}

}  // namespace thinkc
