// Attention over a PAGED KV pool on raw memory (no torch): the CPU kernel behind
// torch.ops.thinkc.paged_attention, also used by the standalone ctest.
//
// Pool layout (thinkc/infer/pool.py): each layer's K and V is [1, H, P, D] contiguous, physical page p
// owning slots [p * page_size, (p + 1) * page_size) of dim 2. Row i's logical key j lives at slot
// block_table[i * max_pages + j / page_size] * page_size + j % page_size.
//
// out[i, hq, w] = softmax_j(scale * q[i, hq, w] . K[i, hq / G, j] + mask[i, w, j]) @ V[i, hq / G, j] over
// the logical keys j in [0, kv_len), G = Hq / H (grouped-query attention). A mask entry <= the dtype's
// lowest finite value (torch.finfo(dtype).min, or -inf) marks key j invisible to query w: it is skipped
// entirely, its K / V slot is never read (garbage or NaN there is harmless) and a block-table entry is
// only read for pages holding at least one visible key. A query with no visible key outputs zeros
// (where SDPA gives NaN for a row of -inf, or a uniform average for a row of finfo.min).
//
// Work unit = (row, KV head, chunk of up to kQueryChunk query positions): the unit's G query heads x
// chunk positions share every K / V row it loads. Per unit, a flash-style online softmax runs over
// blocks of kKeyBlock logical keys (a block may span pages); all arithmetic is float32.
#pragma once

#include <cstdint>

namespace thinkc {

enum class PagedDtype : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

constexpr int64_t kQueryChunk = 16;  // query positions per work unit
constexpr int64_t kKeyBlock = 32;    // logical keys per online-softmax block

struct PagedAttentionArgs {
  const void* q = nullptr;            // [b, Hq, W, D] contiguous
  const void* k_pool = nullptr;       // [H, P, D] contiguous (the pool's leading 1 dropped)
  const void* v_pool = nullptr;       // same shape as k_pool
  const int32_t* block_table = nullptr;  // [b, max_pages] contiguous
  const void* mask = nullptr;         // additive, element [i, w, j] at i * mask_sb + w * mask_sw + j
  void* out = nullptr;                // [b, Hq, W, D] contiguous
  int64_t b = 0, Hq = 1, H = 1, W = 1, D = 1, P = 0;
  int64_t max_pages = 0, page_size = 1, kv_len = 0;
  int64_t mask_sb = 0, mask_sw = 0;   // in elements
  float scale = 1.0f;
  PagedDtype dtype = PagedDtype::kFloat32;  // of q, the pools, the mask and out
};

// "" when the sizes are consistent (H >= 1, Hq % H == 0, D >= 1, page_size >= 1, P % page_size == 0,
// kv_len <= max_pages * page_size, ...), else the reason. Reads no tensor data.
const char* paged_attention_check(const PagedAttentionArgs& a);

// Number of work units: b * H * ceil(W / kQueryChunk).
int64_t paged_attention_units(const PagedAttentionArgs& a);

// Runs units [begin, end) (any split of [0, units) over threads is fine: units write disjoint output).
// Returns -1, or row * max_pages + page_index of the first block-table entry met that holds a visible
// key but names no page of the pool (outside [0, P / page_size)); that unit's output is left unwritten.
int64_t paged_attention_run(const PagedAttentionArgs& a, int64_t begin, int64_t end);

// float <-> bfloat16 / float16 bit patterns, round to nearest even (exposed for the ctest).
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);
float f16_to_float(uint16_t h);
uint16_t float_to_f16(float f);

}  // namespace thinkc
