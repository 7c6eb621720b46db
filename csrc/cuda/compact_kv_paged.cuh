// In-place compaction of a paged KV pool on the GPU: pure CUDA (no torch headers), host launcher on
// a given stream. Same semantics as cpu/compact_kv_paged.h, for many same-shape buffers (all layers'
// K and V, each [1, H, P, D] with P = n_pages * page_size) at once.
//
// Why a parallel in-place copy is safe: inside one row the logical -> physical slot map is one-to-one
// (a row never uses a page twice, rows never share pages), so the write of output token k lands on
// the physical slot of logical token k, which is the source of the kept token j with src(j) = k, if
// any; src(j) >= j, so j <= k. A write therefore only ever destroys the source of a token at or
// before itself in logical order -- the same ordering as the contiguous layout, and the same scheme
// as cuda/compact_kv.cu works:
//  1. plan (one block per row): validates the row on the device (ranges, length <= max_pages *
//     page_size, the page numbers it uses in [0, n_pages)), expands the ranges into a per-row map
//     out-token k -> PHYSICAL source slot, records old/new lengths and the unmoved kept prefix in
//     the workspace and writes the new length into `lengths`. An invalid row gets new length -1 in
//     the workspace and is left untouched (lengths too). Pages used twice are not detected here.
//  2. move (one block per (buffer, row, head)): walks the row's output tokens in increasing chunks;
//     a chunk is read into registers, the block syncs, then writes to the physical slot of each
//     output token (from the block table). A chunk only destroys sources of tokens in it or in
//     earlier chunks (all read before), and staging + sync makes the in-chunk overlap safe. Then the
//     freed logical tail [new, old) is zeroed slot by slot through the block table. Copies use the
//     widest vector (16 bytes when D * elem_size and the base pointers allow it).
// Workspace: 4 * (B * max_pages * page_size + 3 * B) bytes (the map is sized for the longest row).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace thinkc {

struct CompactKvPagedCudaArgs {
  void* const* buffers = nullptr;     // host array of num_buffers device pointers, each [1, H, P, D]
  int64_t num_buffers = 0;
  int64_t B = 0, H = 0, P = 0;        // rows, heads, physical slots (n_pages * page_size)
  int64_t max_pages = 0, page_size = 0;
  int64_t row_bytes = 0;              // D * element size
  const int32_t* block_table = nullptr;  // device [B, max_pages]
  const int32_t* ranges = nullptr;    // device [num_ranges, 2], logical token indices
  int64_t num_ranges = 0;
  const int32_t* offsets = nullptr;   // device [B + 1]
  int32_t* lengths = nullptr;         // device [B], updated in place
  void* workspace = nullptr;          // device, compact_kv_paged_workspace_bytes(B, max_pages, page_size)
};

size_t compact_kv_paged_workspace_bytes(int64_t B, int64_t max_pages, int64_t page_size);

// cudaErrorInvalidValue when page_size < 1, P is not a multiple of page_size, or a head / a row's
// capacity is too large for the kernels' 32-bit slot indices (P or capacity * vectors-per-slot >= 2^31).
cudaError_t compact_kv_paged_cuda(const CompactKvPagedCudaArgs& args, cudaStream_t stream);

}  // namespace thinkc
