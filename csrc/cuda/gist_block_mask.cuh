// Gist BlockMask builder on the GPU (pure CUDA; no torch). Same algorithm and output as the CPU
// builder in cpu/gist_block_mask.h, for a batch of rows, without a host sync:
//   1. per row (one block): prefix counts of base-rule queries, document-run ends (CUB scans);
//   2. per key: its visible-query interval -> per-tile counts at the two end q-blocks + a
//      difference array over the q-blocks in between (atomics); per-segment key spans;
//   3. per flagged cache-token query: explicit +-1 over its segment span (atomics);
//   4. per (row, kv-block) column: resolve the difference array into the counts;
//   5. per (row, q-block), one warp: classify tiles and write the ordered index lists (ballots).
// The caller allocates a scratch buffer of gist_block_mask_workspace_bytes() bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cpu/gist_block_mask.h"

namespace thinkc {

struct GistBlockMaskCudaArgs {
  const int32_t* role;    // [B, L] device pointers, int32, contiguous
  const int32_t* seg;
  const int32_t* doc;
  const int32_t* expire;
  int64_t B, L, q_block, kv_block;
  GistMaskFlags flags;
  int32_t* kv_num_blocks;       // [B, nQ]
  int32_t* kv_indices;          // [B, nQ, nKV]
  int32_t* full_kv_num_blocks;  // [B, nQ]
  int32_t* full_kv_indices;     // [B, nQ, nKV]
  void* workspace;              // gist_block_mask_workspace_bytes(B, L, q_block, kv_block) bytes
};

size_t gist_block_mask_workspace_bytes(int64_t B, int64_t L, int64_t q_block, int64_t kv_block);

// Enqueues the kernels on `stream`; returns the launch status (no synchronisation).
cudaError_t gist_block_mask_cuda(const GistBlockMaskCudaArgs& args, cudaStream_t stream);

}  // namespace thinkc
