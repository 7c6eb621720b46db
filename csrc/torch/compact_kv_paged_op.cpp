// torch.ops.thinkc.compact_kv_paged: in-place compaction of every layer's K and V buffer of a paged
// KV pool ([1, H, n_pages * page_size, D] each, rows mapped through block_table [B, max_pages]).
// CPU kernel: cpu/compact_kv_paged.cpp (memmove runs per (buffer, row, head), in parallel); CUDA
// kernel: cuda/compact_kv_paged.cu (no host sync; the CUDA path validates ranges, lengths and page
// numbers on the device and leaves an invalid row untouched, and does not look for pages used
// twice, so the Python wrapper's check=True is what raises for bad input there).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cpu/compact_kv.h"
#include "cpu/compact_kv_paged.h"
#ifdef THINKC_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/compact_kv_paged.cuh"
#endif

namespace {

// Shape/dtype/device checks shared by both devices (metadata only: never reads tensor data).
void check_inputs(at::TensorList buffers, const at::Tensor& block_table, int64_t page_size, const at::Tensor& ranges,
                  const at::Tensor& offsets, const at::Tensor& lengths) {
  TORCH_CHECK_VALUE(!buffers.empty(), "compact_kv_paged: buffers is empty");
  const at::Tensor& first = buffers[0];
  TORCH_CHECK_VALUE(first.dim() == 4 && first.size(0) == 1, "compact_kv_paged: buffers must be [1, H, P, D], got ",
                    first.sizes());
  for (size_t i = 0; i < buffers.size(); ++i) {
    const at::Tensor& c = buffers[i];
    TORCH_CHECK_VALUE(c.sizes() == first.sizes(), "compact_kv_paged: buffer ", i, " has shape ", c.sizes(),
                      ", buffer 0 ", first.sizes());
    TORCH_CHECK_VALUE(c.scalar_type() == first.scalar_type(), "compact_kv_paged: buffers must share one dtype");
    TORCH_CHECK_VALUE(c.device() == first.device(), "compact_kv_paged: buffers must be on one device");
    TORCH_CHECK_VALUE(c.is_contiguous(), "compact_kv_paged: buffer ", i, " is not contiguous");
  }
  TORCH_CHECK_VALUE(page_size >= 1, "compact_kv_paged: page_size must be >= 1, got ", page_size);
  TORCH_CHECK_VALUE(first.size(2) % page_size == 0, "compact_kv_paged: buffer slots P=", first.size(2),
                    " are not a whole number of pages of page_size=", page_size);
  auto check_i32 = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.scalar_type() == at::kInt, "compact_kv_paged: ", name, " must be int32, got ",
                      t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == first.device(), "compact_kv_paged: ", name, " must be on the buffers' device");
    TORCH_CHECK_VALUE(t.is_contiguous(), "compact_kv_paged: ", name, " must be contiguous");
  };
  check_i32(block_table, "block_table");
  check_i32(ranges, "ranges");
  check_i32(offsets, "range_offsets");
  check_i32(lengths, "lengths");
  TORCH_CHECK_VALUE(block_table.dim() == 2, "compact_kv_paged: block_table must be [B, max_pages], got ",
                    block_table.sizes());
  const int64_t B = block_table.size(0);
  TORCH_CHECK_VALUE(ranges.dim() == 2 && ranges.size(1) == 2, "compact_kv_paged: ranges must be [R, 2], got ",
                    ranges.sizes());
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) == B + 1,
                    "compact_kv_paged: range_offsets must be [B+1] = [", B + 1, "], got ", offsets.sizes());
  TORCH_CHECK_VALUE(lengths.dim() == 1 && lengths.size(0) == B, "compact_kv_paged: lengths must be [B] = [", B,
                    "], got ", lengths.sizes());
}

void compact_paged_cpu(at::TensorList buffers, const at::Tensor& block_table, int64_t page_size,
                       const at::Tensor& ranges, const at::Tensor& offsets, const at::Tensor& lengths) {
  check_inputs(buffers, block_table, page_size, ranges, offsets, lengths);
  const int64_t B = block_table.size(0), max_pages = block_table.size(1);
  const int64_t H = buffers[0].size(1), P = buffers[0].size(2);
  const int64_t row_bytes = buffers[0].size(3) * buffers[0].element_size();
  const int32_t* r = ranges.data_ptr<int32_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  const int32_t* bt = block_table.data_ptr<int32_t>();
  int32_t* len = lengths.data_ptr<int32_t>();
  const std::string err =
      thinkc::compact_kv_paged_check(r, off, len, B, ranges.size(0), bt, max_pages, page_size, P / page_size);
  TORCH_CHECK_VALUE(err.empty(), "compact_kv_paged: ", err);

  std::vector<char*> bases;
  for (const at::Tensor& c : buffers) bases.push_back(static_cast<char*>(c.data_ptr()));
  const int64_t T = static_cast<int64_t>(bases.size()), units = T * B * H;
  const int64_t head_bytes = P * row_bytes;
  // One unit = one (buffer, row, head): heads are disjoint memory and rows never share pages.
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t t = u / (B * H), b = (u % (B * H)) / H, h = u % H;
      thinkc::compact_kv_paged_head(bases[t] + h * head_bytes, row_bytes, bt + b * max_pages, page_size,
                                    r + 2 * off[b], off[b + 1] - off[b], len[b]);
    }
  });
  for (int64_t b = 0; b < B; ++b) len[b] = static_cast<int32_t>(thinkc::compact_kv_new_length(r, off, b));
}

#ifdef THINKC_WITH_CUDA
void compact_paged_cuda(at::TensorList buffers, const at::Tensor& block_table, int64_t page_size,
                        const at::Tensor& ranges, const at::Tensor& offsets, const at::Tensor& lengths) {
  check_inputs(buffers, block_table, page_size, ranges, offsets, lengths);
  c10::cuda::CUDAGuard guard(buffers[0].device());
  thinkc::CompactKvPagedCudaArgs args;
  args.B = block_table.size(0);
  args.max_pages = block_table.size(1);
  args.page_size = page_size;
  args.H = buffers[0].size(1);
  args.P = buffers[0].size(2);
  args.row_bytes = buffers[0].size(3) * buffers[0].element_size();
  at::Tensor workspace = at::empty(
      {static_cast<int64_t>(thinkc::compact_kv_paged_workspace_bytes(args.B, args.max_pages, page_size))},
      lengths.options().dtype(at::kByte));
  std::vector<void*> ptrs;
  for (const at::Tensor& c : buffers) ptrs.push_back(c.data_ptr());
  args.buffers = ptrs.data();
  args.num_buffers = static_cast<int64_t>(ptrs.size());
  args.block_table = block_table.data_ptr<int32_t>();
  args.ranges = ranges.data_ptr<int32_t>();
  args.num_ranges = ranges.size(0);
  args.offsets = offsets.data_ptr<int32_t>();
  args.lengths = lengths.data_ptr<int32_t>();
  args.workspace = workspace.data_ptr();
  cudaError_t err = thinkc::compact_kv_paged_cuda(args, at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "compact_kv_paged CUDA launch failed: ", cudaGetErrorString(err));
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(thinkc, m) {
  m.def(
      "compact_kv_paged(Tensor(a!)[] buffers, Tensor block_table, int page_size, Tensor ranges, "
      "Tensor range_offsets, Tensor(b!) lengths) -> ()");
}

TORCH_LIBRARY_IMPL(thinkc, CPU, m) { m.impl("compact_kv_paged", &compact_paged_cpu); }

#ifdef THINKC_WITH_CUDA
TORCH_LIBRARY_IMPL(thinkc, CUDA, m) { m.impl("compact_kv_paged", &compact_paged_cuda); }
#endif
