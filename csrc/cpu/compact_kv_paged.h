// In-place compaction of a PAGED KV cache on raw memory (no torch): the CPU kernel behind
// torch.ops.thinkc.compact_kv_paged, also used by the standalone ctest.
//
// Layout (torch's experimental PagedAttention layout): a buffer is [1, H, P, D] contiguous with
// P = n_pages * page_size; physical page p owns slots [p * page_size, (p + 1) * page_size). One slot
// is D elements = row_bytes bytes. block_table [B, max_pages] maps row b's logical token j to the
// physical slot block_table[b][j / page_size] * page_size + j % page_size. Entries past the pages
// a row uses for tokens [0, lengths[b]) are arbitrary and never read.
//
// Ranges / offsets / lengths are the same as compact_kv's, in logical token indices: kept tokens
// slide left in logical order, logical slots [new_len, old_len) are zeroed, logical tokens at or
// beyond old_len are not touched.
#pragma once

#include <cstdint>
#include <string>

namespace thinkc {

// Physical slot of logical token j of the row whose block-table row is `pages`.
inline int64_t paged_slot(const int32_t* pages, int64_t page_size, int64_t j) {
  return static_cast<int64_t>(pages[j / page_size]) * page_size + j % page_size;
}

// compact_kv_check's rules with capacity max_pages * page_size, plus: page_size >= 1, every page
// a row uses for tokens [0, lengths[b]) is in [0, n_pages), and no page is used twice (by the same
// row or by two rows). Returns "" when valid, else a message naming the first bad row / range / page.
std::string compact_kv_paged_check(const int32_t* ranges, const int32_t* offsets, const int32_t* lengths, int64_t B,
                                   int64_t R, const int32_t* block_table, int64_t max_pages, int64_t page_size,
                                   int64_t n_pages);

// Compacts one head of one row in place: `head` points at the head's P * row_bytes bytes, `pages`
// at the row's block-table row. Works in increasing logical order, one memmove per run that stays
// inside one source page and one destination page: a destination index never exceeds its source
// index, so no run overwrites a slot a later run still has to read (and memmove handles the overlap
// of a run with itself). Then the freed logical tail [new_len, old_len) is zeroed page by page.
void compact_kv_paged_head(char* head, int64_t row_bytes, const int32_t* pages, int64_t page_size,
                           const int32_t* ranges, int64_t n_ranges, int64_t old_len);

}  // namespace thinkc
