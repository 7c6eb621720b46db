// In-place KV-cache compaction on raw memory (no torch): the CPU kernel behind
// torch.ops.thinkc.compact_kv, also used by the standalone ctest.
//
// A cache is [B, H, C, D] contiguous; one "token row" is D elements = row_bytes bytes. Row b keeps
// the token ranges ranges[offsets[b] .. offsets[b+1]) (each [start, end), sorted, non-overlapping,
// inside [0, lengths[b])). Kept tokens slide left in order; [new_len, old_len) is zeroed; tokens at
// or beyond old_len are not touched.
#pragma once

#include <cstdint>
#include <string>

namespace thinkc {

// Checks offsets/ranges/lengths for B rows (R ranges, capacity C). Returns "" when valid, else a
// message naming the first bad row / range.
std::string compact_kv_check(const int32_t* ranges, const int32_t* offsets, const int32_t* lengths, int64_t B,
                             int64_t R, int64_t capacity);

// Kept total of row b (sum of its range lengths); assumes the input passed compact_kv_check.
int64_t compact_kv_new_length(const int32_t* ranges, const int32_t* offsets, int64_t b);

// Compacts one head's token sequence in place: `head` points at C * row_bytes bytes. Ranges are
// processed in order with memmove: the destination never passes the next range's start, so no
// unread byte is overwritten.
void compact_kv_head(char* head, int64_t row_bytes, const int32_t* ranges, int64_t n_ranges, int64_t old_len);

}  // namespace thinkc
