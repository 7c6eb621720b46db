// Gist BlockMask builder, CUDA kernels + host launcher (see gist_block_mask.cuh).
#include "cuda/gist_block_mask.cuh"

#include <cub/block/block_scan.cuh>

#include <climits>

namespace thinkc {
namespace {

constexpr int kScanThreads = 512;
constexpr int kItems = 8;  // tokens per thread in the row scans
constexpr int kThreads = 256;

struct MinOp {
  __device__ __forceinline__ int32_t operator()(int32_t a, int32_t b) const { return b < a ? b : a; }
};

// Scratch layout (all int32): normal_prefix [B, L+1], run_end [B, L], seg_lo [B, L], seg_hi [B, L],
// counts [B, nQ, nKV], diff [B, nQ, nKV].
struct Scratch {
  int32_t *normal_prefix, *run_end, *seg_lo, *seg_hi, *counts, *diff;
};

Scratch carve(void* ws, int64_t B, int64_t L, int64_t tiles) {
  int32_t* p = static_cast<int32_t*>(ws);
  Scratch s;
  s.normal_prefix = p;
  p += B * (L + 1);
  s.run_end = p;
  p += B * L;
  s.seg_lo = p;
  p += B * L;
  s.seg_hi = p;
  p += B * L;
  s.counts = p;
  p += B * tiles;
  s.diff = p;
  return s;
}

// 1. One block per row: normal_prefix (forward sum scan), run_end (backward min scan), span init.
// Each thread scans kItems consecutive tokens locally; the block scan combines the threads.
__global__ void row_scan_kernel(const int32_t* __restrict__ role, const int32_t* __restrict__ doc, int64_t L,
                                GistMaskFlags flags, Scratch s) {
  using Scan = cub::BlockScan<int32_t, kScanThreads>;
  __shared__ typename Scan::TempStorage tmp;
  constexpr int64_t kChunk = static_cast<int64_t>(kScanThreads) * kItems;
  const int64_t b = blockIdx.x;
  const int32_t* role_b = role + b * L;
  const int32_t* doc_b = doc + b * L;
  int32_t* prefix = s.normal_prefix + b * (L + 1);
  int32_t* run_end = s.run_end + b * L;

  if (threadIdx.x == 0) prefix[0] = 0;
  int32_t carry = 0;
  for (int64_t base = 0; base < L; base += kChunk) {
    const int64_t i0 = base + static_cast<int64_t>(threadIdx.x) * kItems;
    int32_t local[kItems];
    int32_t sum = 0;
    for (int t = 0; t < kItems; ++t) {
      const int64_t i = i0 + t;
      sum += (i < L && !gist_query_is_special(role_b[i], flags)) ? 1 : 0;
      local[t] = sum;
    }
    int32_t before, total;
    Scan(tmp).ExclusiveSum(sum, before, total);
    for (int t = 0; t < kItems; ++t)
      if (i0 + t < L) prefix[i0 + t + 1] = carry + before + local[t];
    carry += total;
    __syncthreads();
  }
  // Backward: run_end[i] = min over j >= i of (j + 1 if the run ends at j). Thread order runs from
  // the end of the row, so an inclusive min scan over threads covers all later tokens.
  int32_t run_carry = INT_MAX;
  for (int64_t base = 0; base < L; base += kChunk) {
    const int64_t hi = L - 1 - (base + static_cast<int64_t>(threadIdx.x) * kItems);  // this thread: hi, hi-1, ...
    int32_t local[kItems];
    int32_t m = INT_MAX;
    for (int t = 0; t < kItems; ++t) {
      const int64_t i = hi - t;
      if (i >= 0 && (i == L - 1 || doc_b[i + 1] != doc_b[i])) m = static_cast<int32_t>(i + 1);
      local[t] = m;  // ends found so far among hi..i; the smallest is the latest found
    }
    int32_t later, total;
    Scan(tmp).ExclusiveScan(m, later, INT_MAX, MinOp(), total);
    if (threadIdx.x == 0) later = INT_MAX;
    for (int t = 0; t < kItems; ++t)
      if (hi - t >= 0) run_end[hi - t] = min(min(local[t], later), run_carry);
    run_carry = min(run_carry, total);
    __syncthreads();
  }
  for (int64_t i = threadIdx.x; i < L; i += kScanThreads) {
    s.seg_lo[b * L + i] = INT_MAX;
    s.seg_hi[b * L + i] = -1;
  }
}

// 2. One thread per key: interval counting and segment spans.
__global__ void key_interval_kernel(const int32_t* __restrict__ role, const int32_t* __restrict__ seg,
                                    const int32_t* __restrict__ doc, const int32_t* __restrict__ expire, int64_t B,
                                    int64_t L, int64_t q_block, int64_t kv_block, int64_t n_kv, int64_t tiles,
                                    GistMaskFlags flags, Scratch s) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= B * L) return;
  const int64_t b = g / L, k = g % L;
  const int32_t seg_k = seg[g];
  if (flags.any() && seg_k >= 0 && seg_k < L && (flags.see_current || role[g] == kGistRoleCache)) {
    atomicMin(s.seg_lo + b * L + seg_k, static_cast<int32_t>(k));
    atomicMax(s.seg_hi + b * L + seg_k, static_cast<int32_t>(k));
  }
  if (doc[g] < 0) return;  // padding keys are never visible
  const int32_t* prefix = s.normal_prefix + b * (L + 1);
  const int64_t a = k, e = min(static_cast<int64_t>(expire[g]), static_cast<int64_t>(s.run_end[g]));
  if (e <= a) return;
  const int64_t kb = k / kv_block, qa = a / q_block, qe = (e - 1) / q_block;
  int32_t* counts = s.counts + b * tiles;
  if (qa == qe) {
    atomicAdd(counts + qa * n_kv + kb, prefix[e] - prefix[a]);
    return;
  }
  atomicAdd(counts + qa * n_kv + kb, prefix[(qa + 1) * q_block] - prefix[a]);
  atomicAdd(counts + qe * n_kv + kb, prefix[e] - prefix[qe * q_block]);
  if (qe > qa + 1) {
    int32_t* diff = s.diff + b * tiles;
    atomicAdd(diff + (qa + 1) * n_kv + kb, 1);
    atomicAdd(diff + qe * n_kv + kb, -1);
  }
}

// 3. One thread per cache-token query (flags on): explicit row (see_current) or sibling correction.
__global__ void cache_query_kernel(const int32_t* __restrict__ role, const int32_t* __restrict__ seg,
                                   const int32_t* __restrict__ doc, const int32_t* __restrict__ expire, int64_t B,
                                   int64_t L, int64_t q_block, int64_t kv_block, int64_t n_kv, int64_t tiles,
                                   GistMaskFlags flags, Scratch s) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= B * L) return;
  const int32_t role_q = role[g], seg_q = seg[g], doc_q = doc[g];
  if (role_q != kGistRoleCache || seg_q < 0 || seg_q >= L || doc_q < 0) return;
  const int64_t b = g / L, q = g % L;
  const int32_t* role_b = role + b * L;
  const int32_t* seg_b = seg + b * L;
  const int32_t* doc_b = doc + b * L;
  const int32_t* expire_b = expire + b * L;
  int32_t* row = s.counts + b * tiles + (q / q_block) * n_kv;
  const int32_t lo = s.seg_lo[b * L + seg_q], hi = s.seg_hi[b * L + seg_q];
  // accumulate per kv-block, one atomic per block touched; no division inside the loop
  int64_t kb = lo / kv_block, next_block = (kb + 1) * kv_block;
  int32_t acc = 0;
  for (int64_t k = lo; k <= hi; ++k) {
    if (k == next_block) {
      if (acc != 0) atomicAdd(row + kb, acc);
      ++kb;
      next_block += kv_block;
      acc = 0;
    }
    const int32_t now = gist_visible(q, k, role_q, seg_q, doc_q, role_b[k], seg_b[k], doc_b[k], expire_b[k], flags);
    const int32_t base = flags.see_current ? 0 : gist_base_visible(q, k, doc_q, doc_b[k], expire_b[k]);
    acc += now - base;
  }
  if (acc != 0) atomicAdd(row + kb, acc);
}

// 4. One thread per (row, kv-block) column: add (#keys covering the q-block) x (#normal queries).
__global__ void resolve_diff_kernel(int64_t B, int64_t L, int64_t q_block, int64_t n_q, int64_t n_kv, int64_t tiles,
                                    Scratch s) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= B * n_kv) return;
  const int64_t b = g / n_kv, j = g % n_kv;
  const int32_t* prefix = s.normal_prefix + b * (L + 1);
  int32_t* counts = s.counts + b * tiles;
  const int32_t* diff = s.diff + b * tiles;
  int32_t covering = 0;
  for (int64_t i = 0; i < n_q; ++i) {
    covering += diff[i * n_kv + j];
    if (covering != 0) {
      const int64_t stop = min((i + 1) * q_block, L);
      counts[i * n_kv + j] += covering * (prefix[stop] - prefix[i * q_block]);
    }
  }
}

// 5. One warp per (row, q-block): tiles picked by `pick` first (ascending), then the rest (ascending).
template <typename Pick>
__device__ __forceinline__ int32_t warp_write_ordered(const int32_t* counts, int64_t n_kv, Pick pick,
                                                      int32_t* indices) {
  const unsigned lane = threadIdx.x & 31u;
  const unsigned below = (1u << lane) - 1u;
  int32_t n_pick = 0;
  for (int64_t j0 = 0; j0 < n_kv; j0 += 32) {
    const int64_t j = j0 + lane;
    n_pick += __popc(__ballot_sync(0xffffffffu, j < n_kv && pick(counts[j])));
  }
  int32_t at_pick = 0, at_rest = n_pick;
  for (int64_t j0 = 0; j0 < n_kv; j0 += 32) {
    const int64_t j = j0 + lane;
    const bool valid = j < n_kv;
    const bool hit = valid && pick(counts[j]);
    const unsigned hits = __ballot_sync(0xffffffffu, hit);
    const unsigned rest = __ballot_sync(0xffffffffu, valid && !hit);
    if (hit) indices[at_pick + __popc(hits & below)] = static_cast<int32_t>(j);
    else if (valid) indices[at_rest + __popc(rest & below)] = static_cast<int32_t>(j);
    at_pick += __popc(hits);
    at_rest += __popc(rest);
  }
  return n_pick;
}

struct PickPartial {
  int32_t full;
  __device__ __forceinline__ bool operator()(int32_t c) const { return c > 0 && c < full; }
};
struct PickFull {
  int32_t full;
  __device__ __forceinline__ bool operator()(int32_t c) const { return c == full; }
};

__global__ void emit_kernel(int64_t B, int64_t n_q, int64_t n_kv, int64_t tiles, int32_t full, Scratch s,
                            int32_t* kv_num_blocks, int32_t* kv_indices, int32_t* full_kv_num_blocks,
                            int32_t* full_kv_indices) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  if (warp >= B * n_q) return;  // whole warps exit together (blockDim is a multiple of 32)
  const int64_t b = warp / n_q, i = warp % n_q;
  const int32_t* counts = s.counts + b * tiles + i * n_kv;
  const int32_t n_partial = warp_write_ordered(counts, n_kv, PickPartial{full}, kv_indices + warp * n_kv);
  const int32_t n_full = warp_write_ordered(counts, n_kv, PickFull{full}, full_kv_indices + warp * n_kv);
  if ((threadIdx.x & 31u) == 0) {
    kv_num_blocks[warp] = n_partial;
    full_kv_num_blocks[warp] = n_full;
  }
}

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

size_t gist_block_mask_workspace_bytes(int64_t B, int64_t L, int64_t q_block, int64_t kv_block) {
  const int64_t tiles = ceil_div(L, q_block) * ceil_div(L, kv_block);
  return sizeof(int32_t) * static_cast<size_t>(B * (L + 1) + 3 * B * L + 2 * B * tiles);
}

cudaError_t gist_block_mask_cuda(const GistBlockMaskCudaArgs& a, cudaStream_t stream) {
  if (a.q_block <= 0 || a.kv_block <= 0) return cudaErrorInvalidValue;
  if (a.B == 0 || a.L == 0) return cudaSuccess;
  const int64_t n_q = ceil_div(a.L, a.q_block), n_kv = ceil_div(a.L, a.kv_block), tiles = n_q * n_kv;
  Scratch s = carve(a.workspace, a.B, a.L, tiles);
  cudaError_t err = cudaMemsetAsync(s.counts, 0, sizeof(int32_t) * 2 * a.B * tiles, stream);  // counts + diff
  if (err != cudaSuccess) return err;

  row_scan_kernel<<<static_cast<unsigned>(a.B), kScanThreads, 0, stream>>>(a.role, a.doc, a.L, a.flags, s);
  key_interval_kernel<<<blocks_for(a.B * a.L, kThreads), kThreads, 0, stream>>>(
      a.role, a.seg, a.doc, a.expire, a.B, a.L, a.q_block, a.kv_block, n_kv, tiles, a.flags, s);
  if (a.flags.any())
    cache_query_kernel<<<blocks_for(a.B * a.L, kThreads), kThreads, 0, stream>>>(
        a.role, a.seg, a.doc, a.expire, a.B, a.L, a.q_block, a.kv_block, n_kv, tiles, a.flags, s);
  resolve_diff_kernel<<<blocks_for(a.B * n_kv, kThreads), kThreads, 0, stream>>>(a.B, a.L, a.q_block, n_q, n_kv,
                                                                                 tiles, s);
  emit_kernel<<<blocks_for(a.B * n_q * 32, kThreads), kThreads, 0, stream>>>(
      a.B, n_q, n_kv, tiles, static_cast<int32_t>(a.q_block * a.kv_block), s, a.kv_num_blocks, a.kv_indices,
      a.full_kv_num_blocks, a.full_kv_indices);
  return cudaGetLastError();
}

}  // namespace thinkc
