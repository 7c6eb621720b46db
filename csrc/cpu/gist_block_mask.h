// Gist attention BlockMask builder (pure C++, raw pointers; no torch).
//
// From the per-token metadata of a batch of rows (role / seg / doc / expire, int32 [B, L]) it writes
// FlexAttention's BlockMask tensors exactly as torch's create_block_mask(gist_mask_mod) would:
//   kv_num_blocks [B, nQ], kv_indices [B, nQ, nKV]            partial tiles
//   full_kv_num_blocks [B, nQ], full_kv_indices [B, nQ, nKV]  full tiles
// (a row lists its tiles in ascending order, then the remaining columns in ascending order, as
// torch's stable descending argsort does). A tile is full iff all Q_BLOCK*KV_BLOCK pairs are visible
// (so an edge tile cut by L never is), partial iff some but not all are.
//
// Algorithm, O(L + nQ*nKV) memory, never L x L:
//   * Base rule: key k is visible to the queries of its own document run in [k, expire[k]): one
//     interval per key. Per-tile visible-pair counts = difference array over q-blocks per kv-block
//     (q-blocks fully inside an interval) + explicit partial counts at the interval's two end blocks,
//     using prefix counts of the queries that follow the base rule.
//   * Cache-token queries changed by a flag are few and local: with see_current their row is a
//     subset of their own segment (counted explicitly, the queries are left out of the prefix
//     counts); with only bi_directional/diagonal their row is the base row except on the sibling
//     cache tokens, so a +-1 correction over those is added.
// Preconditions (checked): each doc id >= 0 occupies one contiguous run of the row; with a flag on,
// seg ids are < L (they index a per-row table).
#pragma once

#include <cstdint>
#include <string>

#if defined(__CUDACC__)
#define THINKC_HD __host__ __device__ __forceinline__
#else
#define THINKC_HD inline
#endif

namespace thinkc {

// Mirrors thinkc.gist.rule.Role.CACHE.
constexpr int32_t kGistRoleCache = 5;

struct GistMaskFlags {
  bool see_current = false;
  bool bi_directional = false;
  bool diagonal = false;
  THINKC_HD bool any() const { return see_current || bi_directional || diagonal; }
};

// The base rule (all flags off): same non-pad document, causal, not yet expired.
THINKC_HD bool gist_base_visible(int64_t q, int64_t k, int32_t doc_q, int32_t doc_k, int32_t expire_k) {
  return doc_q == doc_k && doc_k >= 0 && k <= q && q < static_cast<int64_t>(expire_k);
}

// The full rule for one (q, k) pair: thinkc.gist.rule.visible, scalar form.
THINKC_HD bool gist_visible(int64_t q, int64_t k, int32_t role_q, int32_t seg_q, int32_t doc_q, int32_t role_k,
                            int32_t seg_k, int32_t doc_k, int32_t expire_k, GistMaskFlags flags) {
  const bool same_doc = doc_q == doc_k && doc_k >= 0;
  bool vis = same_doc && k <= q && q < static_cast<int64_t>(expire_k);
  if (!flags.any()) return vis;
  const bool q_cache = role_q == kGistRoleCache;
  const bool same_seg = seg_q == seg_k && seg_k >= 0;
  if (flags.see_current) vis = vis && (!q_cache || same_seg);
  const bool sibling = q_cache && role_k == kGistRoleCache && same_seg && same_doc;
  if (flags.diagonal) {
    if (sibling) vis = (q == k);
  } else if (flags.bi_directional) {
    vis = vis || sibling;
  }
  return vis;
}

// Queries left out of the interval counting and added explicitly (see above).
THINKC_HD bool gist_query_is_special(int32_t role_q, GistMaskFlags flags) {
  return flags.see_current && role_q == kGistRoleCache;
}

THINKC_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One row (all pointers already offset to the row). Outputs: num [nQ], indices [nQ * nKV] for
// partial and full tiles. Returns "" on success, else what is wrong with the input.
std::string gist_block_mask_row(const int32_t* role, const int32_t* seg, const int32_t* doc, const int32_t* expire,
                                int64_t L, int64_t q_block, int64_t kv_block, GistMaskFlags flags,
                                int32_t* kv_num_blocks, int32_t* kv_indices, int32_t* full_kv_num_blocks,
                                int32_t* full_kv_indices);

// A batch of B rows, one after the other (row b starts at b * L, its outputs at b * nQ / b * nQ * nKV).
std::string gist_block_mask_cpu(const int32_t* role, const int32_t* seg, const int32_t* doc, const int32_t* expire,
                                int64_t B, int64_t L, int64_t q_block, int64_t kv_block, GistMaskFlags flags,
                                int32_t* kv_num_blocks, int32_t* kv_indices, int32_t* full_kv_num_blocks,
                                int32_t* full_kv_indices);

}  // namespace thinkc
