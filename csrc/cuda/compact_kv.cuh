// In-place KV compaction on the GPU: pure CUDA (no torch headers), host launcher on a given stream.
// Same semantics as cpu/compact_kv.h, for many same-shape caches (all layers' K and V) at once.
//
// Two kernels, no host sync, capturable in a CUDA graph:
//  1. plan (one block per row): validates the row's ranges on the device, expands them into a
//     per-row map out-token -> source token (block scan of range lengths), records old/new
//     lengths in the workspace and writes the new length into `lengths`. An invalid row gets
//     new length -1 in the workspace and is left untouched (lengths too).
//  2. move (one block per (cache, row, head), all caches in one launch): walks the row's output
//     tokens in chunks; each chunk is read into registers, the block syncs, then writes. As
//     destinations only move left (out <= src), no chunk overwrites a byte a later chunk still
//     has to read, and staging + sync makes the in-chunk overlap safe. Then the freed tail
//     [new, old) is zeroed. Copies use the widest vector (16 bytes when head_dim*elem_size and
//     the pointers allow it). Tokens that do not move (the kept prefix) are skipped.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace thinkc {

struct CompactKvCudaArgs {
  void* const* caches = nullptr;  // host array of num_caches device pointers, each [B, H, C, D]
  int64_t num_caches = 0;
  int64_t B = 0, H = 0, C = 0;
  int64_t row_bytes = 0;              // D * element size
  const int32_t* ranges = nullptr;    // device [num_ranges, 2]
  int64_t num_ranges = 0;
  const int32_t* offsets = nullptr;   // device [B + 1]
  int32_t* lengths = nullptr;         // device [B], updated in place
  void* workspace = nullptr;          // device, compact_kv_workspace_bytes(B, C)
};

size_t compact_kv_workspace_bytes(int64_t B, int64_t C);

cudaError_t compact_kv_cuda(const CompactKvCudaArgs& args, cudaStream_t stream);

}  // namespace thinkc
